"""The relay's loops: hand events on as they commit, send deliveries as they fall due, prune
what retention allows. It runs inside each service process (`EVENTS_RELAY=in-process`, the
default) or as `python -m app relay`; any number of them share the work through the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from datetime import timedelta

import aiohttp
from sqlalchemy import delete, exists, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.config import Settings
from app.models import Event, EventDelivery
from app.models.base import utcnow
from app.observability import Metrics
from app.relay import deliveries
from app.relay.amqp import AmqpPublisher, PublishFailed
from app.relay.outbox import hand_on, waiting

log = logging.getLogger("app.relay")

BATCH = 500
# Deliveries in flight per relay: a slow endpoint holds one slot each, not the relay.
CONCURRENCY = 50
# How often the delivery loop looks for retries falling due; new deliveries wake it at once.
RETRY_POLL_SECONDS = 1.0
PRUNE_EVERY_SECONDS = 60.0
PRUNE_BATCH = 1000
# After a failure (database or broker down), wait this long before the next pass.
BACKOFF_SECONDS = 1.0


class _Failures:
    """How one of the relay's loops reports failing passes: the first with its traceback
    (unless the failure explains itself, as the broker's refusal does), the next ones as a line
    each, and the pass that works again. A database that is down would otherwise print a
    traceback every second."""

    def __init__(self, what: str, *, traceback: bool = True) -> None:
        self.what = what
        self.traceback = traceback
        self.failing = 0

    def failed(self) -> None:
        self.failing += 1
        if self.failing == 1 and self.traceback:
            log.exception("relay: %s failed", self.what)
            return
        error = sys.exception()
        first_line = next(iter(str(error).splitlines()), "")
        again = f" again ({self.failing} in a row)" if self.failing > 1 else ""
        log.warning(
            "relay: %s failed%s: %s: %s", self.what, again, type(error).__name__, first_line
        )

    def passed(self) -> None:
        if self.failing:
            log.warning("relay: %s works again after %d failures", self.what, self.failing)
            self.failing = 0


class Relay:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        settings: Settings,
        metrics: Metrics | None = None,
    ) -> None:
        self.sessions = sessions
        self.settings = settings
        self.metrics = metrics
        url = settings.events_amqp_url
        self.publisher = (
            AmqpPublisher(url.get_secret_value(), exchange=settings.events_amqp_exchange)
            if url is not None
            else None
        )
        self.http: aiohttp.ClientSession | None = None
        self._stopping = asyncio.Event()
        # Wakes the delivery loop: events were handed on, a delivery ended, or the relay stops.
        self._wake = asyncio.Event()
        self._attempted: list[tuple[deliveries.Claimed, deliveries.Outcome]] = []
        self._to_record = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self.http = deliveries.http_session(self.settings, CONCURRENCY)
        self._tasks = [
            asyncio.create_task(self._hand_on_loop(), name="relay-hand-on"),
            asyncio.create_task(self._deliver_loop(), name="relay-deliver"),
            asyncio.create_task(self._record_loop(), name="relay-record"),
            asyncio.create_task(self._prune_loop(), name="relay-prune"),
        ]

    async def run(self) -> None:
        """Run until `stop()`."""
        self.start()
        await self._stopping.wait()
        await self.close()

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()

    async def close(self) -> None:
        """Stop the loops; deliveries in flight are abandoned (their leases expire)."""
        self.stop()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        if self.http is not None:
            await self.http.close()
        if self.publisher is not None:
            await self.publisher.close()

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    async def _hand_on_loop(self) -> None:
        failures = _Failures("handing events on")
        broker = _Failures("handing events on to RabbitMQ (the batch goes again)", traceback=False)
        while not self._stopping.is_set():
            try:
                events = []
                if await waiting(self.sessions):
                    events = await hand_on(self.sessions, self.publisher, limit=BATCH)
            except PublishFailed:
                broker.failed()
                await self._pause(BACKOFF_SECONDS)
                continue
            except Exception:
                failures.failed()
                await self._pause(BACKOFF_SECONDS)
                continue
            failures.passed()
            if events:
                broker.passed()
                self._wake.set()
                if self.metrics is not None:
                    self.metrics.events_handed_on.inc(len(events))
            if len(events) < BATCH:
                await self._pause(self.settings.events_relay_poll_seconds)

    async def _deliver_loop(self) -> None:
        failures = _Failures("claiming deliveries")
        in_flight: set[asyncio.Task[None]] = set()

        def ended(task: asyncio.Task[None]) -> None:
            in_flight.discard(task)
            self._wake.set()

        while not self._stopping.is_set():
            claimed: list[deliveries.Claimed] = []
            self._wake.clear()  # before claiming: what is handed on after it wakes the wait
            free = CONCURRENCY - len(in_flight)
            # One claim per half of the slots, not one per delivery that ends.
            if free >= CONCURRENCY // 2 or not in_flight:
                try:
                    claimed = await deliveries.claim(self.sessions, self.settings, free)
                except Exception:
                    failures.failed()
                    await self._pause(BACKOFF_SECONDS)
                    continue
                failures.passed()
            for delivery in claimed:
                task = asyncio.create_task(self._attempt(delivery))
                in_flight.add(task)
                task.add_done_callback(ended)
            if not claimed or len(in_flight) > CONCURRENCY // 2:
                # Until events are handed on, a delivery ends, the relay stops, or a retry may
                # have fallen due.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), RETRY_POLL_SECONDS)
        for task in in_flight:
            task.cancel()

    async def _attempt(self, delivery: deliveries.Claimed) -> None:
        assert self.http is not None  # started
        outcome = await deliveries.send(self.http, self.settings, delivery)
        self._attempted.append((delivery, outcome))
        self._to_record.set()

    async def _record_loop(self) -> None:
        """Writes what was attempted, as many as have ended, in one transaction: until written,
        a delivery stays leased (another relay sends it again only once its lease ends)."""
        failures = _Failures("recording attempts (their deliveries go again once leases end)")
        while not self._stopping.is_set():
            await self._to_record.wait()
            self._to_record.clear()
            attempted, self._attempted = self._attempted, []
            try:
                statuses = await deliveries.record(self.sessions, self.settings, attempted)
            except Exception:
                failures.failed()
                await self._pause(BACKOFF_SECONDS)
                continue
            failures.passed()
            if self.metrics is not None:
                for (delivery, _), status in zip(attempted, statuses, strict=True):
                    if status != "gone":
                        result = "retry" if status == "pending" else status
                        self.metrics.deliveries.labels(delivery.endpoint_id, result).inc()

    async def _prune_loop(self) -> None:
        failures = _Failures("pruning")
        while not self._stopping.is_set():
            try:
                await prune(self.sessions, self.settings)
            except Exception:
                failures.failed()
            else:
                failures.passed()
            await self._pause(PRUNE_EVERY_SECONDS)


async def prune(sessions: async_sessionmaker[AsyncSession], settings: Settings) -> int:
    """Delete published events older than the retention whose deliveries are all settled (their
    deliveries and attempts go with them); how many. By `created` (indexed): an event is
    published within moments of it."""
    cutoff = utcnow() - timedelta(days=settings.events_retention_days)
    pending = exists().where(EventDelivery.event_id == Event.id, EventDelivery.status == "pending")
    total = 0
    while True:
        async with sessions() as session, session.begin():
            ids = list(
                await session.scalars(
                    select(Event.id)
                    .where(Event.created < cutoff, Event.published_at.is_not(None), ~pending)
                    .limit(PRUNE_BATCH)
                )
            )
            if ids:
                await session.execute(delete(Event).where(Event.id.in_(ids)))
        total += len(ids)
        if len(ids) < PRUNE_BATCH:
            return total
