"""Events to RabbitMQ: a durable topic exchange (routing key = event type), persistent messages,
and publisher confirms. A batch counts as published only once the broker has acknowledged every
one of its messages; anything else raises `PublishFailed` and the caller publishes it again."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlsplit

import aio_pika
from aio_pika.abc import AbstractConnection, AbstractExchange
from aiormq.exceptions import AMQPError, ChannelInvalidStateError, DeliveryError, PublishError
from pamqp.commands import Basic

log = logging.getLogger("app.relay.amqp")

# What a broker, the network or the client may raise along the way: the batch's outcome is unknown.
_BROKER_ERRORS = (AMQPError, ChannelInvalidStateError, OSError, TimeoutError)


@dataclass(frozen=True)
class Message:
    id: str  # the event's id: the AMQP message_id
    type: str  # the routing key and the AMQP `type`
    object_id: str  # header `object_id`
    created: datetime  # the AMQP timestamp (naive means UTC)
    body: bytes  # the event's JSON


class PublishFailed(Exception):
    """The broker did not confirm the whole batch: any of its messages may or may not have
    reached a queue, so the whole batch is to be published again."""


class AmqpPublisher:
    """One connection and one confirming channel, opened on the first `publish` and dropped
    after any failure; the next call connects again."""

    def __init__(
        self,
        url: str,
        *,
        exchange: str = "payments.events",
        confirm_timeout: float = 10.0,
        mandatory: bool = False,
    ) -> None:
        """`confirm_timeout` bounds the connection and the confirms of one batch. `mandatory`
        makes a message no queue is bound for a failure (the broker returns it) instead of
        being dropped by the broker."""
        self._url = url
        parts = urlsplit(url)
        default_port = 5671 if parts.scheme == "amqps" else 5672
        self._host = f"{parts.hostname or 'localhost'}:{parts.port or default_port}"
        self._exchange_name = exchange
        self._confirm_timeout = confirm_timeout
        self._mandatory = mandatory
        self._connection: AbstractConnection | None = None
        self._exchange: AbstractExchange | None = None
        self._has_failed = False
        self._lock = asyncio.Lock()

    async def publish(self, messages: Sequence[Message]) -> None:
        """Return once the broker has confirmed every message, published in the order given on
        one channel; raise `PublishFailed` otherwise."""
        if not messages:
            return
        async with self._lock:
            try:
                exchange = await self._connected()
                await self._publish_confirmed(exchange, messages)
            except _BROKER_ERRORS as exc:
                reason = _reason(exc, self._confirm_timeout)
                log.warning(
                    "events.amqp.publish_failed: %s",
                    reason,
                    extra={"amqp_host": self._host, "messages": len(messages)},
                )
                await self._drop()
                raise PublishFailed(
                    f"{len(messages)} message(s) to {self._host} not confirmed: {reason}"
                ) from exc
            except BaseException:
                await self._drop()
                raise

    async def close(self) -> None:
        async with self._lock:
            await self._drop()
            self._has_failed = False

    async def _connected(self) -> AbstractExchange:
        if self._connection is not None and self._connection.is_closed:
            # Closed while idle (the broker restarted, the network went): start over.
            await self._drop()
        if self._exchange is not None:
            return self._exchange
        log.info(
            "events.amqp.reconnect" if self._has_failed else "events.amqp.connect",
            extra={"amqp_host": self._host, "exchange": self._exchange_name},
        )
        self._connection = await aio_pika.connect(self._url, timeout=self._confirm_timeout)
        channel = await self._connection.channel(publisher_confirms=True, on_return_raises=True)
        self._exchange = await channel.declare_exchange(
            self._exchange_name,
            aio_pika.ExchangeType.TOPIC,
            durable=True,
            timeout=self._confirm_timeout,
        )
        self._has_failed = False
        return self._exchange

    async def _publish_confirmed(
        self, exchange: AbstractExchange, messages: Sequence[Message]
    ) -> None:
        # Every publish is issued before any confirm is awaited; the channel writes them in the
        # order the tasks start, which is the order given.
        tasks = [
            asyncio.ensure_future(
                exchange.publish(_amqp_message(message), message.type, mandatory=self._mandatory)
            )
            for message in messages
        ]
        done, pending = await asyncio.wait(
            tasks, timeout=self._confirm_timeout, return_when=asyncio.FIRST_EXCEPTION
        )
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending)
        errors = [task.exception() for task in tasks if not task.cancelled()]
        error = next((e for e in errors if e is not None), None)
        if error is not None:
            raise error
        if pending:
            raise TimeoutError(f"not confirmed within {self._confirm_timeout:g}s")
        for task in done:
            if not isinstance(task.result(), Basic.Ack):
                raise AMQPError("the broker's confirmation was not an ack")

    async def _drop(self) -> None:
        connection, self._connection, self._exchange = self._connection, None, None
        if connection is None:
            return
        self._has_failed = True
        if not connection.is_closed:
            try:
                await asyncio.wait_for(connection.close(), timeout=self._confirm_timeout)
            except (*_BROKER_ERRORS, RuntimeError):
                pass  # already going: nothing more to release


def _amqp_message(message: Message) -> aio_pika.Message:
    created = message.created
    if created.tzinfo is None:
        created = created.replace(tzinfo=UTC)
    return aio_pika.Message(
        message.body,
        content_type="application/json",
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        message_id=message.id,
        type=message.type,
        timestamp=created,
        headers={"object_id": message.object_id},
    )


def _reason(exc: BaseException, timeout: float) -> str:
    """What went wrong, without the message bodies some of these exceptions carry in their
    arguments (their `str` leaves them out)."""
    if isinstance(exc, PublishError):
        return f"returned by the broker (no queue bound for its routing key): {exc}"
    if isinstance(exc, DeliveryError):
        return f"refused by the broker: {exc}"
    if isinstance(exc, TimeoutError):
        return f"not confirmed within {timeout:g}s"
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"[:300]
