"""Events out: from the outbox to RabbitMQ (with publisher confirms) and to a subscriber's
webhook endpoint, through `python -m app relay` on Postgres (one process; `--relays N` for
HTTP).

For each destination:

1. Throughput: `--events` events (default 20,000) committed in one transaction while the relay
   idles; the time until the last one counts as handed on (RabbitMQ: confirmed; HTTP: every
   delivery answered 2xx). The anchors, in the same run, do the same work with no database at
   all: for RabbitMQ, the same messages published in batches of 500 by the same publisher
   (app/relay/amqp.py); for HTTP, the same signed POSTs sent by the relay's own `send`, as many
   in flight as one relay keeps.
2. Latency: `--paced` events (default 2,000) committed one per transaction at `--rate` a second
   (default 200); for each, the time from its commit to its arrival at the consumer (a queue
   bound to the exchange) or at the endpoint. p50, p90 and p99.

The endpoint is bench/receiver_fast.py (uvicorn, answers 200 at once). RabbitMQ's queue is
durable and the messages persistent: confirms come after the broker has written them.

Run with `make bench-events` (`python -m bench.events_out`); needs Postgres and RabbitMQ.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aio_pika
import httpx
from aio_pika.abc import AbstractIncomingMessage
from sqlalchemy import Engine, create_engine, text

from app.config import Settings
from app.db import create_engine as create_async_engine
from app.db import create_sessionmaker
from app.relay import deliveries
from app.relay.amqp import AmqpPublisher, Message
from app.relay.runner import CONCURRENCY
from bench.reconcile import sync_url
from bench.scale import migrate
from bench.service import recreate, service_env, stop, wait_for_port
from tests.fixtures.emulator import free_port

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATABASE = "postgresql+asyncpg://postgres@127.0.0.1:5432/bench_events_out"
DEFAULT_AMQP = "amqp://guest:guest@127.0.0.1:5672/"
BATCH = 500


def event_rows(count: int, objects: int = 1000) -> list[dict[str, Any]]:
    start = datetime.now(UTC)
    rows = []
    for i in range(count):
        object_id = f"ord_bench_{i % objects:06d}"
        shown = {"object": "order", "id": object_id, "status": "paid", "amount": 2000, "seq": i}
        rows.append(
            {
                "id": f"evt_{uuid.uuid4().hex[:20]}",
                "type": "order.paid",
                "created": start + timedelta(microseconds=i),
                "object_id": object_id,
                "object": json.dumps(shown),
            }
        )
    return rows


INSERT = text(
    "INSERT INTO events (id, type, created, object_type, object_id, object, cause) "
    "VALUES (:id, :type, :created, 'order', :object_id, CAST(:object AS jsonb), 'bench')"
)


def unpublished(engine: Engine) -> int:
    with engine.connect() as connection:
        return int(
            connection.scalar(text("SELECT count(*) FROM events WHERE published_at IS NULL")) or 0
        )


def pending_deliveries(engine: Engine) -> int:
    with engine.connect() as connection:
        return int(
            connection.scalar(
                text("SELECT count(*) FROM event_deliveries WHERE status <> 'succeeded'")
            )
            or 0
        )


def wait_for(check: Callable[[], bool], timeout: float = 600.0, every: float = 0.02) -> float:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError("timed out")
        time.sleep(every)
    return time.perf_counter()


def cpu_seconds(process: subprocess.Popen[bytes] | int) -> float:
    """User and system CPU time the process (or pid) has used so far (Linux /proc); 0 once it
    is gone."""
    pid = process if isinstance(process, int) else process.pid
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return 0.0
    fields = stat.rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_relay(database_url: str, **env: str) -> subprocess.Popen[bytes]:
    inherited = {k: v for k, v in os.environ.items() if not k.startswith(("STRIPE_", "EVENTS_"))}
    return subprocess.Popen(
        [sys.executable, "-m", "app", "relay"],
        cwd=ROOT,
        # At the default level, INFO, as deployed: it logs failed attempts, not successes.
        env={**inherited, "DATABASE_URL": database_url, "LOG_LEVEL": "INFO", **env},
    )


def paced(engine: Engine, count: int, rate: float) -> dict[str, float]:
    """Commit `count` events one per transaction at `rate` a second; each one's commit time."""
    committed: dict[str, float] = {}
    interval = 1.0 / rate
    next_at = time.perf_counter()
    for row in event_rows(count):
        with engine.begin() as connection:
            connection.execute(INSERT, row)
        committed[row["id"]] = time.time()
        next_at += interval
        time.sleep(max(0.0, next_at - time.perf_counter()))
    return committed


def percentiles(latencies: list[float]) -> str:
    ms = sorted(x * 1000 for x in latencies)
    cuts = statistics.quantiles(ms, n=100)
    return (
        f"p50 {cuts[49]:.1f} ms, p90 {cuts[89]:.1f} ms, p99 {cuts[98]:.1f} ms, max {ms[-1]:.1f} ms"
    )


class Consumer:
    """A durable queue bound to the exchange; each message id's arrival time."""

    def __init__(self, url: str, exchange: str) -> None:
        self.url, self.exchange = url, exchange
        self.arrived: dict[str, float] = {}
        self.queue = f"bench.events.{uuid.uuid4().hex[:8]}"

    async def run(self, stop_when: asyncio.Event) -> None:
        async with await aio_pika.connect(self.url) as connection:
            channel = await connection.channel()
            await channel.set_qos(prefetch_count=2000)
            exchange = await channel.declare_exchange(self.exchange, "topic", durable=True)
            queue = await channel.declare_queue(self.queue, durable=True)
            await queue.bind(exchange, "#")

            async def on_message(message: AbstractIncomingMessage) -> None:
                self.arrived.setdefault(message.message_id or "", time.time())

            await queue.consume(on_message, no_ack=True)
            await stop_when.wait()
            await queue.delete(if_unused=False, if_empty=False)
            await channel.exchange_delete(self.exchange)


async def bare_publish(url: str, rows: list[dict[str, Any]]) -> float:
    """The anchor: the same messages through the same publisher, no database; events/s."""
    exchange = f"bench.bare.{uuid.uuid4().hex[:8]}"
    async with await aio_pika.connect(url) as connection:
        channel = await connection.channel()
        declared = await channel.declare_exchange(exchange, "topic", durable=True)
        queue = await channel.declare_queue(f"{exchange}.q", durable=True)
        await queue.bind(declared, "#")
        publisher = AmqpPublisher(url, exchange=exchange)
        messages = [
            Message(r["id"], r["type"], r["object_id"], r["created"], r["object"].encode())
            for r in rows
        ]
        started = time.perf_counter()
        for i in range(0, len(messages), BATCH):
            await publisher.publish(messages[i : i + BATCH])
        took = time.perf_counter() - started
        await publisher.close()
        await queue.delete(if_unused=False, if_empty=False)
        await channel.exchange_delete(exchange)
    return len(messages) / took


def amqp_leg(database_url: str, engine: Engine, amqp_url: str, events: int, count: int,
             rate: float) -> None:  # fmt: skip
    exchange = f"bench.events.{uuid.uuid4().hex[:8]}"
    consumer = Consumer(amqp_url, exchange)
    done = asyncio.Event()
    loop = asyncio.new_event_loop()
    task = loop.create_task(consumer.run(done))
    loop.run_until_complete(asyncio.sleep(0.5))
    thread_loop = _LoopThread(loop)
    relay = start_relay(database_url, EVENTS_AMQP_URL=amqp_url, EVENTS_AMQP_EXCHANGE=exchange)
    try:
        time.sleep(1.0)
        rows = event_rows(events)
        with engine.begin() as connection:
            connection.execute(INSERT, rows)
        started = time.perf_counter()
        finished = wait_for(lambda: unpublished(engine) == 0)
        rate_relay = events / (finished - started)
        wait_for(lambda: len(consumer.arrived) >= events, timeout=60)
        committed = paced(engine, count, rate)
        wait_for(lambda: all(i in consumer.arrived for i in committed), timeout=60)
    finally:
        stop(relay)
        thread_loop.stop(done)
        loop.run_until_complete(task)
    bare = asyncio.run(bare_publish(amqp_url, rows))
    latencies = [consumer.arrived[i] - at for i, at in committed.items()]
    print(f"RabbitMQ, {events:,} events committed at once: {rate_relay:,.0f} events/s handed on")
    print(f"  anchor, the same publisher with no database: {bare:,.0f} events/s")
    print(f"  relay/anchor: {rate_relay / bare:.2f}")
    print(f"RabbitMQ, {count:,} events at {rate:g}/s, commit to consumer: {percentiles(latencies)}")


class _LoopThread:
    """Runs an event loop in a thread while the bench's own code blocks."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.thread = threading.Thread(target=loop.run_forever, daemon=True)
        self.thread.start()

    def stop(self, done: asyncio.Event) -> None:
        self.loop.call_soon_threadsafe(done.set)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join()


async def bare_post(url: str, rows: list[dict[str, Any]]) -> float:
    """The anchor: the same signed POSTs, sent by the relay's own `send` with as many in flight
    as the relay keeps, and no database; deliveries/s."""
    settings = Settings()
    now = datetime.now(UTC)
    claimed = [
        deliveries.Claimed(r["id"], r["id"], "we_bench", url, ["whsec_bench"],
                           r["object"].encode(), 0, now, r["object_id"], r["created"])
        for r in rows
    ]  # fmt: skip
    queue = iter(claimed)
    async with deliveries.http_session(settings, CONCURRENCY) as http:

        async def worker() -> None:
            for delivery in queue:
                outcome = await deliveries.send(http, settings, delivery)
                if not outcome.succeeded:
                    raise RuntimeError(f"the receiver answered {outcome}")

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
        return len(claimed) / (time.perf_counter() - started)


def http_leg(database_url: str, engine: Engine, events: int, count: int, rate: float,
             relays: int) -> None:  # fmt: skip
    port = free_port()
    receiver = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "bench.receiver_fast:app", "--port", str(port),
         "--log-level", "warning", "--no-access-log"],
        cwd=ROOT,
    )  # fmt: skip
    try:
        wait_for_port(port, receiver, "receiver")
    except BaseException:
        stop(receiver)
        raise
    base = f"http://127.0.0.1:{port}"
    with engine.begin() as connection:
        connection.execute(text("DELETE FROM events"))
        connection.execute(
            text(
                "INSERT INTO webhook_endpoints (id, url, enabled_events, status, secret, "
                "metadata, created) VALUES ('we_bench', :url, '[\"*\"]', 'enabled', "
                "'whsec_bench', '{}', now())"
            ),
            {"url": f"{base}/hook"},
        )
    started_relays = [start_relay(database_url) for _ in range(relays)]
    try:
        time.sleep(1.0)
        rows = event_rows(events)
        cpu_before = sum(cpu_seconds(relay) for relay in started_relays)
        with engine.begin() as connection:
            connection.execute(INSERT, rows)
        started = time.perf_counter()
        finished = wait_for(
            lambda: unpublished(engine) == 0 and pending_deliveries(engine) == 0, every=0.05
        )
        rate_http = events / (finished - started)
        cpu = sum(cpu_seconds(relay) for relay in started_relays) - cpu_before
        committed = paced(engine, count, rate)
        wait_for(lambda: pending_deliveries(engine) == 0 and unpublished(engine) == 0)
        arrived: dict[str, float] = httpx.get(f"{base}/_received", timeout=30).json()
        for relay in started_relays:
            stop(relay)
        bare = asyncio.run(bare_post(f"{base}/hook", rows))
    finally:
        for relay in started_relays:
            stop(relay)
        stop(receiver)
    latencies = [arrived[i] - at for i, at in committed.items()]
    print(
        f"HTTP, {events:,} events committed at once, {relays} relay(s): "
        f"{rate_http:,.0f} deliveries/s (2xx), relay CPU {cpu / events * 1e6:,.0f} µs each"
    )
    print(f"  anchor, the same signed POSTs with no database: {bare:,.0f} deliveries/s")
    print(f"  relay/anchor: {rate_http / bare:.2f}")
    print(f"HTTP, {count:,} events at {rate:g}/s, commit to endpoint: {percentiles(latencies)}")


def idle_leg(database_url: str, engine: Engine, seconds: float) -> None:
    """What the relay costs a service process that has nothing to send: one uvicorn worker
    with no requests, `EVENTS_RELAY=off` then `in-process`; the CPU the worker and its Postgres
    backends use over `seconds`."""
    for mode in ("off", "in-process"):
        port = free_port()
        env = {**service_env(database_url, "http://127.0.0.1:9"), "EVENTS_RELAY": mode}
        worker = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "app.main:app", "--port", str(port),
             "--log-level", "warning"],
            cwd=ROOT, env=env,
        )  # fmt: skip
        try:
            wait_for_port(port, worker, "the service")
            time.sleep(3.0)
            with engine.connect() as connection:
                backends = list(
                    connection.scalars(
                        text(
                            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                            "AND pid <> pg_backend_pid()"
                        )
                    )
                )
            before = cpu_seconds(worker), sum(cpu_seconds(pid) for pid in backends)
            time.sleep(seconds)
            after = cpu_seconds(worker), sum(cpu_seconds(pid) for pid in backends)
        finally:
            stop(worker)
        service_ms, postgres_ms = (
            (end - start) / seconds * 1000 for start, end in zip(before, after, strict=True)
        )
        print(
            f"idle service, EVENTS_RELAY={mode}: the worker {service_ms:.1f} ms of CPU a second, "
            f"its Postgres backends {postgres_ms:.1f} ms"
        )


HELD_BACK_SQL = [
    # Every event to an endpoint that is down: each object's oldest delivery failed once and
    # waits for its retry in an hour; the later ones wait behind it.
    "INSERT INTO event_deliveries (id, event_id, endpoint_id, object_id, event_created, status, "
    "attempts, next_attempt_at, created) SELECT 'dd_' || substr(id, 5), id, 'we_down', "
    "object_id, created, 'pending', 0, now() - interval '1 minute', now() FROM events",
    "UPDATE event_deliveries SET attempts = 1, next_attempt_at = now() + interval '1 hour' "
    "WHERE id IN (SELECT DISTINCT ON (object_id) id FROM event_deliveries "
    "WHERE endpoint_id = 'we_down' ORDER BY object_id, event_created)",
    # A healthy endpoint's 500 newest deliveries, due now.
    "INSERT INTO event_deliveries (id, event_id, endpoint_id, object_id, event_created, status, "
    "attempts, next_attempt_at, created) SELECT 'du_' || substr(id, 5), id, 'we_up', "
    "object_id || '_up', created, 'pending', 0, now(), now() FROM events "
    "ORDER BY created DESC LIMIT 500",
    "ANALYZE event_deliveries",
]
# What the relay now writes when a delivery fails and when it writes one behind a failing one.
HOLD_BACK_SQL = [
    "UPDATE event_deliveries d SET next_attempt_at = h.next_attempt_at FROM event_deliveries h "
    "WHERE d.endpoint_id = 'we_down' AND h.endpoint_id = 'we_down' AND h.object_id = d.object_id "
    "AND h.attempts = 1 AND d.attempts = 0",
    "ANALYZE event_deliveries",
]


def backlog_leg(database_url: str, engine: Engine, held_back: int) -> None:
    """A claim while an endpoint is down: `held_back` deliveries to it (1,000 objects) wait
    behind each object's failing oldest one, and a healthy endpoint has deliveries due. The
    claim's time (25 of the healthy endpoint's), with the held-back deliveries' times as first
    written, then moved to their predecessor's retry as the relay now does, then once more after
    a VACUUM has removed the dead index entries that move left."""
    with engine.begin() as connection:
        connection.execute(text("DELETE FROM events"))
        for endpoint in ("we_down", "we_up"):
            connection.execute(
                text(
                    "INSERT INTO webhook_endpoints (id, url, enabled_events, status, secret, "
                    "metadata, created) VALUES (:id, 'http://127.0.0.1:9/hook', '[\"*\"]', "
                    "'enabled', 'whsec_bench', '{}', now())"
                ),
                {"id": endpoint},
            )
        connection.execute(INSERT, event_rows(held_back))
        connection.execute(text("UPDATE events SET published_at = now()"))
        for sql in HELD_BACK_SQL:
            connection.execute(text(sql))

    async def claims(count: int = 10) -> float:
        settings = Settings(database_url=database_url)
        async_engine = create_async_engine(database_url)
        sessions = create_sessionmaker(async_engine)
        took = 0.0
        for _ in range(count):
            started = time.perf_counter()
            claimed = await deliveries.claim(sessions, settings, 25)
            took += time.perf_counter() - started
            assert [d.endpoint_id for d in claimed] == ["we_up"] * 25
            with engine.begin() as connection:
                connection.execute(text("UPDATE event_deliveries SET leased_until = NULL"))
        await async_engine.dispose()
        return took / count * 1000

    before = asyncio.run(claims())
    with engine.begin() as connection:
        for sql in HOLD_BACK_SQL:
            connection.execute(text(sql))
    after = asyncio.run(claims())
    # The hold-back rewrote every held-back row's indexed next_attempt_at: the due index keeps
    # their dead entries until a vacuum, which autovacuum does in a service that runs for long.
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text("VACUUM ANALYZE event_deliveries"))
    vacuumed = asyncio.run(claims())
    with engine.begin() as connection:
        connection.execute(text("DELETE FROM events"))
        connection.execute(text("DELETE FROM webhook_endpoints"))
    print(
        f"a claim with {held_back:,} deliveries held back behind a down endpoint: "
        f"{before:.1f} ms with their times as first written, "
        f"{after:.1f} ms held back to the retry, {vacuumed:.1f} ms after a VACUUM"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", default=DEFAULT_DATABASE)
    parser.add_argument("--amqp-url", default=os.environ.get("EVENTS_AMQP_URL", DEFAULT_AMQP))
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--paced", type=int, default=2_000)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--http-events", type=int, default=5_000)
    parser.add_argument("--relays", type=int, default=1, help="relay processes for HTTP")
    parser.add_argument("--idle-seconds", type=float, default=30.0)
    parser.add_argument("--held-back", type=int, default=20_000)
    parser.add_argument("--only", choices=["amqp", "http", "idle", "backlog"], help="one leg")
    args = parser.parse_args()
    recreate(args.database_url)
    try:
        migrate(args.database_url, "head")
        engine = create_engine(sync_url(args.database_url))
        if args.only in (None, "amqp"):
            amqp_leg(args.database_url, engine, args.amqp_url, args.events, args.paced, args.rate)
        if args.only in (None, "backlog"):
            backlog_leg(args.database_url, engine, args.held_back)
        if args.only in (None, "idle"):
            idle_leg(args.database_url, engine, args.idle_seconds)
        if args.only in (None, "http"):
            http_leg(
                args.database_url, engine, args.http_events, args.paced, args.rate, args.relays
            )
        engine.dispose()
    finally:
        recreate(args.database_url, drop_only=True)


if __name__ == "__main__":
    main()
