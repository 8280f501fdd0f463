"""AmqpPublisher against the machine's real RabbitMQ: what a bound queue receives, in which order,
with which properties; every way a batch can fail to be confirmed (a declaration the broker
refuses, a nack, a return, confirms that never come, a cut connection, no broker, a broker
restarting mid-burst), and that the next publish after each one connects again."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import aio_pika
import pytest
from pamqp.common import FieldValue

from app.relay.amqp import AmqpPublisher, Message, PublishFailed
from tests.fixtures.emulator import free_port
from tests.fixtures.rabbitmq import (
    StallingProxy,
    broker_address,
    collecting,
    delete_exchange,
    drain,
    durable_queue,
    exchange_kind,
    queued,
    require_broker,
    restart_broker,
    unique_name,
)

CREATED = datetime(2026, 12, 3, 10, 30, 15, tzinfo=UTC)


@pytest.fixture(scope="module")
def amqp_url() -> str:
    return require_broker()


@pytest.fixture
def exchange(amqp_url: str) -> Iterator[str]:
    """An exchange of this test's own, deleted after it."""
    name = unique_name()
    yield name
    asyncio.run(delete_exchange(amqp_url, name))


def event(n: int, type_: str = "order.paid", object_id: str = "ord_1") -> Message:
    return Message(
        id=f"evt_{n:07d}",
        type=type_,
        object_id=object_id,
        created=CREATED,
        body=b'{"id":"evt_%07d","type":"%s"}' % (n, type_.encode()),
    )


def batch(start: int, size: int) -> list[Message]:
    return [event(n) for n in range(start, start + size)]


class TestPublish:
    def test_routing_keys_and_properties_as_a_bound_queue_receives_them(
        self, amqp_url: str, exchange: str
    ) -> None:
        sent = [
            event(1, "order.created", "ord_a"),
            event(2, "subscription.active", "sub_b"),
            event(3, "order.paid", "ord_a"),
        ]

        async def run() -> tuple[list[aio_pika.abc.AbstractIncomingMessage], list[str]]:
            publisher = AmqpPublisher(amqp_url, exchange=exchange)
            async with (
                collecting(amqp_url, exchange, "order.*") as orders,
                collecting(amqp_url, exchange, "#") as everything,
            ):
                await publisher.publish(sent)
                await orders.wait_for(2)
                all_ids = [m.message_id or "" for m in await everything.wait_for(3)]
                await asyncio.sleep(0.2)  # nothing more comes to `order.*`
                got = list(orders.messages)
            await publisher.close()
            return got, all_ids

        orders, all_ids = asyncio.run(run())
        assert all_ids == ["evt_0000001", "evt_0000002", "evt_0000003"]
        assert [(m.routing_key, m.message_id) for m in orders] == [
            ("order.created", "evt_0000001"),
            ("order.paid", "evt_0000003"),
        ]
        first = orders[0]
        assert first.type == "order.created"
        assert first.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
        assert first.content_type == "application/json"
        assert first.timestamp == CREATED
        assert first.headers == {"object_id": "ord_a"}
        assert first.body == sent[0].body
        assert first.exchange == exchange

    def test_a_naive_created_is_taken_as_utc(self, amqp_url: str, exchange: str) -> None:
        naive = Message(
            "evt_naive", "order.paid", "ord_1", datetime(2026, 12, 3, 10, 30, 15), b"{}"
        )

        async def run() -> datetime | None:
            publisher = AmqpPublisher(amqp_url, exchange=exchange)
            async with collecting(amqp_url, exchange) as queue:
                await publisher.publish([naive])
                (got,) = await queue.wait_for(1)
            await publisher.close()
            return got.timestamp

        assert asyncio.run(run()) == CREATED

    def test_a_batch_of_1000_arrives_in_the_order_given(self, amqp_url: str, exchange: str) -> None:
        sent = [event(n, ("order.created", "order.paid")[n % 2]) for n in range(1000)]

        async def run() -> list[str]:
            publisher = AmqpPublisher(amqp_url, exchange=exchange)
            async with collecting(amqp_url, exchange) as queue:
                await publisher.publish(sent)
                ids = [m.message_id or "" for m in await queue.wait_for(1000)]
            await publisher.close()
            return ids

        assert asyncio.run(run()) == [m.id for m in sent]

    def test_the_exchange_is_declared_a_durable_topic(self, amqp_url: str, exchange: str) -> None:
        assert exchange_kind(exchange) is None

        async def run() -> None:
            publisher = AmqpPublisher(amqp_url, exchange=exchange)
            await publisher.publish([event(1)])
            await publisher.close()

        asyncio.run(run())
        assert exchange_kind(exchange) == ("topic", True)

    def test_an_empty_batch_does_not_connect(self, amqp_url: str, exchange: str) -> None:
        asyncio.run(AmqpPublisher(amqp_url, exchange=exchange).publish([]))
        assert exchange_kind(exchange) is None

    def test_publish_without_any_queue_bound_is_confirmed(
        self, amqp_url: str, exchange: str
    ) -> None:
        """Not mandatory by default: an event nobody subscribes to is dropped by the broker, and
        does not hold up the outbox."""

        async def run() -> None:
            publisher = AmqpPublisher(amqp_url, exchange=exchange)
            await publisher.publish(batch(0, 10))
            await publisher.close()

        asyncio.run(run())


class TestFailures:
    def test_an_exchange_of_another_type_fails_and_the_next_publish_after_fixing_reconnects(
        self, amqp_url: str, exchange: str, caplog: pytest.LogCaptureFixture
    ) -> None:
        caplog.set_level(logging.INFO, logger="app.relay.amqp")

        async def run() -> tuple[PublishFailed, list[str]]:
            async with await aio_pika.connect(amqp_url) as connection:
                channel = await connection.channel()
                await channel.declare_exchange(exchange, aio_pika.ExchangeType.FANOUT)
            publisher = AmqpPublisher(amqp_url, exchange=exchange)
            with pytest.raises(PublishFailed) as failed:
                await publisher.publish([event(1)])
            await delete_exchange(amqp_url, exchange)
            async with collecting(amqp_url, exchange) as queue:
                await publisher.publish([event(2)])
                ids = [m.message_id or "" for m in await queue.wait_for(1)]
            await publisher.close()
            return failed.value, ids

        error, ids = asyncio.run(run())
        assert ids == ["evt_0000002"]
        assert "PRECONDITION_FAILED" in str(error)
        assert isinstance(error.__cause__, aio_pika.exceptions.ChannelPreconditionFailed)
        host = "{}:{}".format(*broker_address(amqp_url))
        assert host in str(error)
        assert amqp_url not in str(error)
        assert "guest" not in str(error)
        logged = [
            (r.getMessage(), getattr(r, "amqp_host", None))
            for r in caplog.records
            if r.name == "app.relay.amqp"
        ]
        assert [m.split(":")[0] for m, _ in logged] == [
            "events.amqp.connect",
            "events.amqp.publish_failed",
            "events.amqp.reconnect",
        ]
        assert {h for _, h in logged} == {host}
        assert "guest" not in caplog.text

    def test_a_nack_fails_the_batch(self, amqp_url: str, exchange: str) -> None:
        """A queue that refuses what does not fit makes the broker nack those messages."""
        full: dict[str, FieldValue] = {"x-max-length": 1, "x-overflow": "reject-publish"}

        async def run() -> tuple[PublishFailed, int, list[str]]:
            publisher = AmqpPublisher(amqp_url, exchange=exchange)
            async with durable_queue(amqp_url, exchange, arguments=full) as queue:
                with pytest.raises(PublishFailed) as failed:
                    await publisher.publish(batch(0, 3))
                kept = len(await drain(amqp_url, queue))
                await publisher.publish([event(10)])
                after = [m.message_id or "" for m in await drain(amqp_url, queue)]
            await publisher.close()
            return failed.value, kept, after

        error, kept, after = asyncio.run(run())
        assert "refused by the broker" in str(error)
        assert "Nack" in str(error)
        assert kept == 1
        assert after == ["evt_0000010"]

    def test_a_return_fails_the_batch_when_mandatory(self, amqp_url: str, exchange: str) -> None:
        async def run() -> tuple[PublishFailed, list[str]]:
            publisher = AmqpPublisher(amqp_url, exchange=exchange, mandatory=True)
            with pytest.raises(PublishFailed) as failed:
                await publisher.publish([event(1)])
            async with collecting(amqp_url, exchange, "order.#") as queue:
                await publisher.publish([event(2)])
                ids = [m.message_id or "" for m in await queue.wait_for(1)]
            await publisher.close()
            return failed.value, ids

        error, ids = asyncio.run(run())
        assert "returned by the broker" in str(error)
        assert "NO_ROUTE" in str(error)
        assert ids == ["evt_0000002"]

    def test_confirms_that_never_come_time_out_and_the_next_publish_reconnects(
        self, amqp_url: str, exchange: str
    ) -> None:
        async def run() -> tuple[PublishFailed, float, list[str]]:
            proxy = StallingProxy(broker_address(amqp_url))
            await proxy.start()
            publisher = AmqpPublisher(proxy.url, exchange=exchange, confirm_timeout=1.0)
            async with collecting(amqp_url, exchange) as queue:
                await publisher.publish([event(1)])
                proxy.stall()
                started = time.monotonic()
                with pytest.raises(PublishFailed) as failed:
                    await publisher.publish(batch(2, 50))
                took = time.monotonic() - started
                proxy.resume()
                await publisher.publish([event(100)])
                ids = [m.message_id or "" for m in await queue.wait_for(52)]
            await publisher.close()
            await proxy.close()
            return failed.value, took, ids

        error, took, ids = asyncio.run(run())
        assert "not confirmed within 1s" in str(error)
        assert isinstance(error.__cause__, TimeoutError)
        # The confirm deadline, then at most the same again to give up on closing the stalled
        # connection.
        assert 1.0 <= took < 3.0
        # The stalled batch reached the broker all the same: at least once, never "exactly".
        assert ids == ["evt_0000001", *[m.id for m in batch(2, 50)], "evt_0000100"]

    def test_a_connection_cut_mid_batch_fails_it_and_the_next_publish_reconnects(
        self, amqp_url: str, exchange: str
    ) -> None:
        async def run() -> tuple[PublishFailed, float, list[str]]:
            proxy = StallingProxy(broker_address(amqp_url))
            await proxy.start()
            publisher = AmqpPublisher(proxy.url, exchange=exchange, confirm_timeout=30.0)
            async with collecting(amqp_url, exchange) as queue:
                await publisher.publish([event(1)])
                proxy.stall()
                started = time.monotonic()
                publishing = asyncio.ensure_future(publisher.publish(batch(2, 500)))
                await queue.wait_for(2)  # the broker has some of the batch, confirms held back
                proxy.cut()
                with pytest.raises(PublishFailed) as failed:
                    await publishing
                took = time.monotonic() - started
                proxy.resume()
                await publisher.publish([event(1000)])
                await queue.wait_for_id("evt_0001000")
                ids = [m.message_id or "" for m in queue.messages]
            await publisher.close()
            await proxy.close()
            return failed.value, took, ids

        error, took, ids = asyncio.run(run())
        assert took < 10.0  # the cut fails the batch at once, not at its confirm deadline
        assert isinstance(error.__cause__, (ConnectionError, aio_pika.exceptions.AMQPError))
        # Of the failed batch, what the broker had read before the cut, in order; then the next.
        arrived = ids[1:-1]
        assert arrived == [m.id for m in batch(2, len(arrived))]
        assert ids[0] == "evt_0000001"
        assert ids[-1] == "evt_0001000"

    def test_no_broker_fails_without_the_credentials(self) -> None:
        url = f"amqp://payments:s3cret-pass@127.0.0.1:{free_port()}/"

        async def run() -> PublishFailed:
            publisher = AmqpPublisher(url, confirm_timeout=2.0)
            with pytest.raises(PublishFailed) as failed:
                await publisher.publish([event(1)])
            with pytest.raises(PublishFailed):
                await publisher.publish([event(1)])
            await publisher.close()
            return failed.value

        error = asyncio.run(run())
        assert "127.0.0.1" in str(error)
        assert "s3cret-pass" not in str(error)
        assert isinstance(error.__cause__, ConnectionError)


class TestBrokerRestart:
    def test_the_broker_restarting_mid_burst_loses_no_confirmed_message(
        self, amqp_url: str, exchange: str
    ) -> None:
        size = 200

        async def run() -> tuple[list[str], int, int, list[str]]:
            publisher = AmqpPublisher(amqp_url, exchange=exchange, confirm_timeout=5.0)
            confirmed: list[str] = []
            failures = after_restart = 0
            async with durable_queue(amqp_url, exchange) as queue:
                n = 0
                restart: asyncio.Future[None] | None = None
                deadline = time.monotonic() + 120
                while restart is None or not restart.done() or after_restart < 3:
                    if time.monotonic() > deadline:
                        pytest.fail("publishing did not recover within 120 s of the restart")
                    messages = batch(n, size)
                    n += size
                    try:
                        await publisher.publish(messages)
                    except PublishFailed:
                        failures += 1
                        await asyncio.sleep(0.1)  # the relay's pause before it tries again
                        continue
                    confirmed += [m.id for m in messages]
                    if restart is None and len(confirmed) >= 5 * size:
                        restart = asyncio.ensure_future(asyncio.to_thread(restart_broker, amqp_url))
                    elif restart is not None and restart.done():
                        after_restart += 1
                    await asyncio.sleep(0.01)
                assert restart is not None
                await restart
                await publisher.close()
                received = [m.message_id or "" for m in await drain(amqp_url, queue)]
            return confirmed, failures, n, received

        confirmed, failures, sent, received = asyncio.run(run())
        print(  # noqa: T201
            f"\nrestart mid-burst: {sent} sent in batches of {size}, {len(confirmed)} confirmed, "
            f"{failures} batches failed, {len(received)} in the queue "
            f"({len(received) - len(confirmed)} of failed batches)"
        )
        assert failures >= 1, "no batch failed: the restart did not happen mid-burst"
        missing = set(confirmed) - set(received)
        assert not missing, f"{len(missing)} confirmed messages lost, e.g. {sorted(missing)[:3]}"


def test_throughput_of_20000_messages_in_batches_of_500(amqp_url: str, exchange: str) -> None:
    """Information, not a limit: the rate with confirms into a durable queue, printed."""
    total, size = 20_000, 500

    async def run() -> tuple[float, int]:
        publisher = AmqpPublisher(amqp_url, exchange=exchange)
        async with durable_queue(amqp_url, exchange) as queue:
            await publisher.publish([event(-1)])  # connected before the clock starts
            started = time.perf_counter()
            for start in range(0, total, size):
                await publisher.publish(batch(start, size))
            took = time.perf_counter() - started
            await publisher.close()
            count = await queued(amqp_url, queue)
        return took, count

    took, count = asyncio.run(run())
    print(  # noqa: T201
        f"\nAmqpPublisher: {total} messages in batches of {size}, confirmed, persistent, into a "
        f"durable queue: {took:.2f} s, {total / took:,.0f} messages/s"
    )
    assert count == total + 1
