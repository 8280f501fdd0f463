"""The relay (`python -m app relay`, app/relay/): committed outbox events reach subscribers'
endpoints signed, in order per object, at least once, whatever the endpoint or the relay does.

Real processes throughout: the relay as `python -m app relay` on a database of its own, the
subscriber as `tests.fixtures.receiver` (an HTTP server process), `kill -9` for a crash. The
events are written into the outbox by SQL: the relay reads only that table, and
tests/app/test_outbox.py shows the service writes one event per transition.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from aio_pika import DeliveryMode
from aio_pika.abc import AbstractIncomingMessage
from sqlalchemy import Engine, create_engine, event, text

from app.config import Settings
from app.db import create_engine as create_async
from app.db import create_sessionmaker
from app.relay import deliveries, planner
from app.relay import outbox as outbox_module
from app.relay.amqp import PublishFailed
from app.relay.runner import _Failures, prune
from app.subscribers import signing
from tests.app.test_webhooks import confirm_on_stripe, create_intent
from tests.fixtures.emulator import free_port
from tests.fixtures.rabbitmq import (
    delete_exchange,
    drain,
    durable_queue,
    require_broker,
    restart_broker,
    unique_name,
)
from tests.fixtures.service import (
    API_KEY,
    ROOT,
    Stack,
    own_database,
    sandbox_service,
    stop,
    sync_url,
)

SECRET = "whsec_relay_tests_0123456789abcdef"
FAST = {
    "EVENTS_RETRY_BASE_SECONDS": "0.2",
    "EVENTS_RETRY_MAX_INTERVAL_SECONDS": "1",
    "EVENTS_DELIVERY_TIMEOUT_SECONDS": "1",
    "EVENTS_RELAY_POLL_SECONDS": "0.05",
}


@dataclass
class Receiver:
    url: str
    port: int
    process: subprocess.Popen[bytes]

    def mode(self, status: int = 200, delay: float = 0.0) -> None:
        httpx.post(f"{self.url}/_mode", json={"status": status, "delay": delay}, timeout=5)

    def received(self, path: str) -> list[dict[str, Any]]:
        every = httpx.get(f"{self.url}/_received", timeout=10).json()
        return [item for item in every if item["path"] == path]


def start_receiver(port: int | None = None) -> Receiver:
    port = port or free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.fixtures.receiver", str(port)], cwd=ROOT
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            httpx.get(f"{url}/_health", timeout=1)
            return Receiver(url, port, process)
        except httpx.HTTPError:
            time.sleep(0.05)
    process.kill()
    raise RuntimeError("the receiver did not start")


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    started = start_receiver()
    try:
        yield started
    finally:
        stop(started.process)


@dataclass
class Outbox:
    database_url: str
    engine: Engine

    def rows(self, sql: str, **params: Any) -> list[dict[str, Any]]:
        with self.engine.connect() as connection:
            return [dict(row._mapping) for row in connection.execute(text(sql), params)]

    def add_endpoint(self, url: str, events: list[str] | None = None) -> str:
        endpoint_id = f"we_{uuid.uuid4().hex[:20]}"
        with self.engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO webhook_endpoints (id, url, enabled_events, status, secret, "
                    "metadata, created) VALUES (:id, :url, :events, 'enabled', :secret, '{}', :now)"
                ),
                {
                    "id": endpoint_id,
                    "url": url,
                    "events": json.dumps(events or ["*"]),
                    "secret": SECRET,
                    "now": datetime.now(UTC),
                },
            )
        return endpoint_id

    def add_events(self, count: int, objects: int = 10, type: str = "order.paid") -> list[str]:
        """`count` events over `objects` orders, each object's in order of `created`."""
        start = datetime.now(UTC)
        rows = [
            {
                "id": f"evt_{uuid.uuid4().hex[:20]}",
                "type": type,
                "created": start + timedelta(microseconds=i),
                "object_id": f"ord_relay_{i % objects}",
                "object": json.dumps(
                    {"object": "order", "id": f"ord_relay_{i % objects}", "seq": i}
                ),
            }
            for i in range(count)
        ]
        with self.engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO events (id, type, created, object_type, object_id, object, cause) "
                    "VALUES (:id, :type, :created, 'order', :object_id, :object, 'test')"
                ),
                rows,
            )
        return [row["id"] for row in rows]

    def settled(self, endpoint_id: str) -> dict[str, int]:
        found = self.rows(
            "SELECT status, count(*) AS n FROM event_deliveries WHERE endpoint_id = :e "
            "GROUP BY status",
            e=endpoint_id,
        )
        return {row["status"]: row["n"] for row in found}


@pytest.fixture
def outbox(stack: Stack) -> Iterator[Outbox]:
    with own_database(stack, "relay") as database_url:
        engine = create_engine(sync_url(database_url))
        try:
            yield Outbox(database_url, engine)
        finally:
            engine.dispose()


def start_relay(
    outbox: Outbox, *args: str, stderr: int | None = None, **env: str
) -> subprocess.Popen[bytes]:
    inherited = {k: v for k, v in os.environ.items() if not k.startswith(("STRIPE_", "EVENTS_"))}
    return subprocess.Popen(
        [sys.executable, "-m", "app", "relay", *args],
        cwd=ROOT,
        env={**inherited, "DATABASE_URL": outbox.database_url, **FAST, **env},
        stderr=stderr,
    )


def wait_until(check: Callable[[], bool], timeout: float = 30.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what or check}")


def verify(body: str, header: str, secret: str = SECRET, tolerance: int = 300) -> bool:
    """As a subscriber checks `Payments-Signature` (the README's snippet does the same)."""
    parts = [part.split("=", 1) for part in header.split(",")]
    timestamp = int(next(value for key, value in parts if key == "t"))
    expected = hmac.new(secret.encode(), f"{timestamp}.{body}".encode(), hashlib.sha256)
    signatures = [value for key, value in parts if key == "v1"]
    fresh = abs(time.time() - timestamp) <= tolerance
    return fresh and any(hmac.compare_digest(expected.hexdigest(), s) for s in signatures)


def moment(value: datetime | str) -> datetime:
    """A timestamp column as read (SQLite hands back text, without its zone: UTC)."""
    at = datetime.fromisoformat(value) if isinstance(value, str) else value
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


def path() -> str:
    return f"/hooks/{uuid.uuid4().hex}"


def test_events_reach_the_endpoint_signed_once_each_in_order_per_object(
    outbox: Outbox, receiver: Receiver
) -> None:
    receiver.mode(200)
    hook = path()
    endpoint = outbox.add_endpoint(receiver.url + hook)
    ids = outbox.add_events(200, objects=10)
    port = free_port()
    relay = start_relay(outbox, "--metrics-port", str(port))
    try:
        wait_until(lambda: len(receiver.received(hook)) >= 200, what="200 deliveries")
        wait_until(lambda: outbox.settled(endpoint) == {"succeeded": 200}, what="settled")
        metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    finally:
        stop(relay)
    got = receiver.received(hook)
    bodies = [json.loads(item["body"]) for item in got]
    assert sorted(body["id"] for body in bodies) == sorted(ids)
    for item in got:
        assert verify(item["body"], item["headers"]["Payments-Signature"])
        assert not verify(item["body"], item["headers"]["Payments-Signature"], "whsec_other")
        assert item["headers"]["Content-Type"] == "application/json"
    per_object: dict[str, list[int]] = {}
    for body in bodies:
        per_object.setdefault(body["data"]["object"]["id"], []).append(
            body["data"]["object"]["seq"]
        )
    assert len(per_object) == 10
    for seqs in per_object.values():
        assert seqs == sorted(seqs)
    assert outbox.rows("SELECT count(*) AS n FROM events WHERE published_at IS NULL")[0]["n"] == 0
    attempts = outbox.rows("SELECT status_code, excerpt, error FROM delivery_attempts")
    assert len(attempts) == 200
    assert {(a["status_code"], a["error"]) for a in attempts} == {(200, None)}
    assert json.loads(attempts[0]["excerpt"]) == {"received": True, "status": 200}
    assert "\nevents_handed_on_total 200.0" in metrics
    assert f'event_deliveries_total{{endpoint="{endpoint}",outcome="succeeded"}} 200.0' in metrics


def test_an_endpoint_answering_500_gets_retries_with_back_off_then_the_event(
    outbox: Outbox, receiver: Receiver
) -> None:
    receiver.mode(500)
    hook = path()
    endpoint = outbox.add_endpoint(receiver.url + hook)
    (event_id,) = outbox.add_events(1)
    relay = start_relay(outbox)
    try:
        wait_until(lambda: len(receiver.received(hook)) >= 4, what="4 attempts")
        receiver.mode(200)
        wait_until(lambda: outbox.settled(endpoint) == {"succeeded": 1}, what="delivered")
    finally:
        stop(relay)
        receiver.mode(200)
    attempts = outbox.rows("SELECT at, status_code, excerpt FROM delivery_attempts ORDER BY at")
    assert [a["status_code"] for a in attempts][:4] == [500, 500, 500, 500]
    assert attempts[-1]["status_code"] == 200
    assert json.loads(attempts[0]["excerpt"])["status"] == 500
    gaps = [
        (moment(b["at"]) - moment(a["at"])).total_seconds()
        for a, b in zip(attempts[:4], attempts[1:4], strict=False)
    ]
    # 0.2 s, then 0.4 s, then 0.8 s (EVENTS_RETRY_BASE_SECONDS doubled), each at least that.
    for gap, wanted in zip(gaps, (0.2, 0.4, 0.8), strict=False):
        assert gap >= wanted * 0.9, gaps
    delivery = outbox.rows("SELECT attempts, status FROM event_deliveries")[0]
    assert (delivery["attempts"], delivery["status"]) == (len(attempts), "succeeded")
    assert {json.loads(item["body"])["id"] for item in receiver.received(hook)} == {event_id}


def test_an_endpoint_slower_than_the_timeout_gets_retries_then_the_event(
    outbox: Outbox, receiver: Receiver
) -> None:
    receiver.mode(200, delay=1.5)
    hook = path()
    endpoint = outbox.add_endpoint(receiver.url + hook)
    outbox.add_events(1)
    relay = start_relay(outbox)
    try:
        wait_until(
            lambda: bool(outbox.rows("SELECT 1 FROM delivery_attempts WHERE error = 'timeout'")),
            what="a timed-out attempt",
        )
        receiver.mode(200)
        wait_until(lambda: outbox.settled(endpoint) == {"succeeded": 1}, what="delivered")
    finally:
        stop(relay)
        receiver.mode(200)
    attempts = outbox.rows(
        "SELECT status_code, error, duration_ms FROM delivery_attempts ORDER BY at, id"
    )
    timed_out = [a for a in attempts if a["error"] == "timeout"]
    assert timed_out
    assert all(a["status_code"] is None for a in timed_out)
    assert all(a["duration_ms"] >= 900 for a in timed_out)
    assert attempts[-1]["status_code"] == 200


def test_an_endpoint_that_is_down_gets_the_event_once_it_is_up(outbox: Outbox) -> None:
    port = free_port()
    hook = path()
    endpoint = outbox.add_endpoint(f"http://127.0.0.1:{port}{hook}")
    outbox.add_events(3, objects=1)
    relay = start_relay(outbox)
    late: Receiver | None = None
    try:
        wait_until(
            lambda: len(outbox.rows("SELECT 1 FROM delivery_attempts")) >= 2,
            what="attempts on a closed port",
        )
        # Only the object's oldest event is attempted while it fails: the others wait their turn.
        assert {row["n"] for row in outbox.rows(
            "SELECT count(DISTINCT delivery_id) AS n FROM delivery_attempts"
        )} == {1}  # fmt: skip
        late = start_receiver(port)
        wait_until(lambda: outbox.settled(endpoint) == {"succeeded": 3}, what="delivered")
        seqs = [json.loads(item["body"])["data"]["object"]["seq"] for item in late.received(hook)]
        assert seqs == [0, 1, 2]
    finally:
        stop(relay)
        if late is not None:
            stop(late.process)
    errors = outbox.rows("SELECT error FROM delivery_attempts WHERE status_code IS NULL")
    assert errors
    assert all("Connect" in row["error"] for row in errors)


def test_deliveries_behind_a_failing_one_are_not_due_before_its_retry(outbox: Outbox) -> None:
    """An endpoint that is down holds back the object's later deliveries. Their own time moves
    to the failing delivery's next attempt, for those written before it failed and for those
    written while it fails, so that the claim's scan does not pass over them on every claim;
    other objects' deliveries go meanwhile; once the endpoint is up all arrive in order."""
    port = free_port()
    hook = path()
    endpoint = outbox.add_endpoint(f"http://127.0.0.1:{port}{hook}")
    outbox.add_events(3, objects=1)
    # Retries 3 s apart: long enough to look at the rows between two attempts.
    relay = start_relay(
        outbox, EVENTS_RETRY_BASE_SECONDS="3", EVENTS_RETRY_MAX_INTERVAL_SECONDS="3"
    )
    late: Receiver | None = None

    def pending() -> list[dict[str, Any]]:
        return outbox.rows(
            "SELECT d.attempts, d.next_attempt_at, e.object FROM event_deliveries d "
            "JOIN events e ON e.id = d.event_id WHERE d.status = 'pending' "
            "ORDER BY d.event_created"
        )

    try:
        wait_until(lambda: pending() and pending()[0]["attempts"] == 1, what="a first attempt")
        outbox.add_events(1, objects=1)  # written while the oldest one fails
        wait_until(lambda: len(pending()) == 4, what="the fourth delivery")
        rows = pending()
        head, later = rows[0], rows[1:]
        assert [row["attempts"] for row in later] == [0, 0, 0]
        retry = moment(head["next_attempt_at"])
        assert retry > datetime.now(UTC)
        assert [moment(row["next_attempt_at"]) for row in later] == [retry] * 3
        late = start_receiver(port)
        wait_until(lambda: outbox.settled(endpoint) == {"succeeded": 4}, what="delivered")
        seqs = [json.loads(item["body"])["data"]["object"]["seq"] for item in late.received(hook)]
        assert seqs == [0, 1, 2, 0]
    finally:
        stop(relay)
        if late is not None:
            stop(late.process)


def test_a_delivery_gives_up_when_the_retry_window_closes_and_the_next_event_goes(
    outbox: Outbox, receiver: Receiver
) -> None:
    receiver.mode(500)
    hook = path()
    endpoint = outbox.add_endpoint(receiver.url + hook)
    first, second = outbox.add_events(2, objects=1)
    relay = start_relay(outbox, EVENTS_RETRY_WINDOW_SECONDS="1")
    try:
        wait_until(
            lambda: outbox.settled(endpoint) == {"failed": 2}, what="both given up", timeout=20
        )
    finally:
        stop(relay)
        receiver.mode(200)
    rows = outbox.rows(
        "SELECT event_id, status, attempts, completed_at FROM event_deliveries "
        "ORDER BY event_created"
    )
    assert [row["event_id"] for row in rows] == [first, second]
    assert all(row["completed_at"] is not None for row in rows)
    # The first was retried until its window closed; the second, whose window closed while it
    # waited its turn, was attempted only once the first had given up.
    assert rows[0]["attempts"] >= 2
    assert rows[1]["attempts"] >= 1
    first_done = moment(rows[0]["completed_at"])
    second_attempts = outbox.rows(
        "SELECT a.at FROM delivery_attempts a JOIN event_deliveries d ON d.id = a.delivery_id "
        "WHERE d.event_id = :e",
        e=second,
    )
    assert second_attempts
    assert all(moment(row["at"]) >= first_done for row in second_attempts)


def test_the_relay_logs_each_failed_attempt_and_giving_up_but_not_each_success(
    outbox: Outbox, receiver: Receiver
) -> None:
    """At the default level (INFO): a line per attempt that will be retried, a WARNING when a
    delivery gives up, each with its delivery, event and endpoint; nothing per success (its
    attempt row says it, and a line each cost a fifth of the relay's CPU in a burst)."""
    hook = path()
    healthy = outbox.add_endpoint(receiver.url + hook)
    down = outbox.add_endpoint(f"http://127.0.0.1:{free_port()}/hook")
    first, second = outbox.add_events(2, objects=1)
    relay = start_relay(
        outbox, stderr=subprocess.PIPE, LOG_LEVEL="INFO", EVENTS_RETRY_WINDOW_SECONDS="1"
    )
    try:
        wait_until(
            lambda: (
                outbox.settled(healthy) == {"succeeded": 2}
                and outbox.settled(down) == {"failed": 2}
            ),
            what="delivered to one endpoint, given up on the other",
            timeout=20,
        )
    finally:
        stop(relay)
    assert relay.stderr is not None
    log = relay.stderr.read().decode()
    relay.stderr.close()
    lines = [line for line in log.splitlines() if " app.relay delivery " in line]
    assert not [line for line in lines if f" to {healthy}: " in line], log
    retried = [line for line in lines if " INFO " in line and f" to {down}: pending (" in line]
    gave_up = [line for line in lines if " WARNING " in line and f" to {down}: failed (" in line]
    assert retried, log
    assert {line.split(" of ")[1].split(" ")[0] for line in gave_up} == {first, second}, log
    assert len(lines) == len(retried) + len(gave_up), log


def test_a_disabled_endpoint_gets_nothing(outbox: Outbox, receiver: Receiver) -> None:
    hook = path()
    endpoint = outbox.add_endpoint(receiver.url + hook)
    only_paid = outbox.add_endpoint(receiver.url + hook + "/paid", ["order.paid"])
    with outbox.engine.begin() as connection:
        connection.execute(
            text("UPDATE webhook_endpoints SET status = 'disabled' WHERE id = :id"),
            {"id": endpoint},
        )
    outbox.add_events(2, type="order.created")
    paid = outbox.add_events(1, type="order.paid")
    relay = start_relay(outbox)
    try:
        wait_until(lambda: outbox.settled(only_paid) == {"succeeded": 1}, what="delivered")
    finally:
        stop(relay)
    assert outbox.settled(endpoint) == {}
    assert receiver.received(hook) == []
    assert [json.loads(i["body"])["id"] for i in receiver.received(hook + "/paid")] == paid


def test_kill_9_of_the_relay_mid_burst_loses_nothing(outbox: Outbox, receiver: Receiver) -> None:
    receiver.mode(200, delay=0.005)
    hook = path()
    endpoint = outbox.add_endpoint(receiver.url + hook)
    ids = outbox.add_events(2000, objects=50)
    relay = start_relay(outbox)
    try:
        wait_until(lambda: len(receiver.received(hook)) >= 300, what="300 deliveries")
        relay.send_signal(signal.SIGKILL)
        relay.wait()
        before = len(receiver.received(hook))
        assert before < 2000, "the burst ended before the kill: nothing was tested"
        relay = start_relay(outbox)
        wait_until(
            lambda: outbox.settled(endpoint) == {"succeeded": 2000},
            what="all delivered",
            timeout=90,
        )
    finally:
        stop(relay)
        receiver.mode(200)
    counts = Counter(json.loads(item["body"])["id"] for item in receiver.received(hook))
    assert set(counts) == set(ids)
    duplicates = sum(n - 1 for n in counts.values())
    print(f"kill -9 after {before} of 2000 deliveries: {duplicates} delivered twice")  # noqa: T201
    assert duplicates <= 50  # at most the kill's deliveries in flight (50 at a time)


def test_two_relays_never_both_deliver_one_event(outbox: Outbox, receiver: Receiver) -> None:
    """Postgres: row locks and the advisory lock; SQLite: the conditional writes that mark an
    event published and lease a delivery."""
    receiver.mode(200, delay=0.002)
    hook = path()
    endpoint = outbox.add_endpoint(receiver.url + hook)
    ids = outbox.add_events(1000, objects=100)
    relays = [start_relay(outbox), start_relay(outbox)]
    try:
        wait_until(
            lambda: outbox.settled(endpoint) == {"succeeded": 1000},
            what="all delivered",
            timeout=60,
        )
    finally:
        for relay in relays:
            stop(relay)
    counts = Counter(json.loads(item["body"])["id"] for item in receiver.received(hook))
    assert set(counts) == set(ids)
    assert max(counts.values()) == 1
    assert len(outbox.rows("SELECT id FROM delivery_attempts")) == 1000


def test_pruning_deletes_old_settled_events_only(outbox: Outbox) -> None:
    endpoint = outbox.add_endpoint("http://127.0.0.1:9/unused")
    old, kept_pending, young = outbox.add_events(3, objects=3)
    long_ago = datetime.now(UTC) - timedelta(days=31)
    with outbox.engine.begin() as connection:
        connection.execute(
            text("UPDATE events SET created = :at, published_at = :at WHERE id IN (:a, :b)"),
            {"at": long_ago, "a": old, "b": kept_pending},
        )
        connection.execute(text("UPDATE events SET published_at = :at WHERE id = :c"),
                           {"at": datetime.now(UTC), "c": young})  # fmt: skip
        for event_id, status in ((old, "succeeded"), (kept_pending, "pending")):
            connection.execute(
                text(
                    "INSERT INTO event_deliveries (id, event_id, endpoint_id, object_id, "
                    "event_created, status, attempts, next_attempt_at, created) "
                    "VALUES (:id, :e, :w, 'o', :at, :s, 1, :at, :at)"
                ),
                {
                    "id": f"del_{event_id}",
                    "e": event_id,
                    "w": endpoint,
                    "at": long_ago,
                    "s": status,
                },
            )
        connection.execute(
            text(
                "INSERT INTO delivery_attempts (delivery_id, at, status_code, duration_ms) "
                "VALUES (:d, :at, 200, 5)"
            ),
            {"d": f"del_{old}", "at": long_ago},
        )

    async def run() -> int:
        engine = create_async(outbox.database_url)
        try:
            return await prune(create_sessionmaker(engine), Settings(events_retention_days=30))
        finally:
            await engine.dispose()

    assert asyncio.run(run()) == 1
    assert {row["id"] for row in outbox.rows("SELECT id FROM events")} == {kept_pending, young}
    assert [row["event_id"] for row in outbox.rows("SELECT event_id FROM event_deliveries")] == [
        kept_pending
    ]
    assert outbox.rows("SELECT id FROM delivery_attempts") == []


def test_a_loop_that_keeps_failing_logs_one_traceback_then_a_line_each_time(
    outbox: Outbox,
) -> None:
    """While the events table is away, handing on fails every second: the first failure comes
    with its traceback, the next ones as a line each, then a line when it works again (a
    database that is down used to print a traceback a second, per loop)."""
    with outbox.engine.begin() as connection:
        connection.execute(text("ALTER TABLE events RENAME TO events_away"))
    relay = start_relay(outbox, stderr=subprocess.PIPE, LOG_LEVEL="INFO")
    try:
        time.sleep(5.0)
        with outbox.engine.begin() as connection:
            connection.execute(text("ALTER TABLE events_away RENAME TO events"))
        outbox.add_events(1)
        wait_until(lambda: unpublished(outbox) == 0, what="the event handed on")
    finally:
        stop(relay)
    assert relay.stderr is not None
    log = relay.stderr.read().decode()
    relay.stderr.close()
    records = re.split(r"\n(?=\d{4}-\d\d-\d\d )", log.strip())
    with_traceback = [record.partition("relay: ")[2].splitlines()[0] for record in records
                      if "Traceback (most recent call last)" in record]  # fmt: skip
    # Pruning reads the events table too; it runs once a minute, so it failed once.
    assert sorted(with_traceback) == ["handing events on failed", "pruning failed"], log
    again = [record for record in records if "handing events on failed again" in record]
    assert again, log
    assert all("\n" not in record for record in again), log
    assert "relay: handing events on failed again (2 in a row): " in again[0], log
    assert f"relay: handing events on works again after {len(again) + 1} failures" in log, log


def test_a_broker_refusing_batches_logs_a_line_each_time_then_that_it_works_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """RabbitMQ down or nacking: each failed pass is one line that says why, no traceback (the
    refusal explains itself), and the pass that publishes again says so."""
    broker = _Failures("handing events on to RabbitMQ", traceback=False)
    with caplog.at_level(logging.WARNING, logger="app.relay"):
        for count in (3, 5):
            try:
                raise PublishFailed(f"the broker nacked {count} of 500 messages\nmore detail")
            except PublishFailed:
                broker.failed()
        broker.passed()
        broker.passed()  # a pass that works while nothing failed says nothing
    assert [record.getMessage() for record in caplog.records] == [
        "relay: handing events on to RabbitMQ failed: PublishFailed: "
        "the broker nacked 3 of 500 messages",
        "relay: handing events on to RabbitMQ failed again (2 in a row): PublishFailed: "
        "the broker nacked 5 of 500 messages",
        "relay: handing events on to RabbitMQ works again after 2 failures",
    ]
    assert [record.exc_info for record in caplog.records] == [None, None, None]


def _plan(connection: Any, statement: Any, params: dict[str, Any]) -> str:
    """Postgres's plan for `statement` with `params`, as JSON text: the statement executed as
    SQLAlchemy renders it, with `EXPLAIN (FORMAT JSON)` in front."""

    def explain(conn: Any, cursor: Any, sql: str, *rest: Any) -> tuple[Any, ...]:
        return (f"EXPLAIN (FORMAT JSON) {sql}", *rest[:1])

    event.listen(connection, "before_cursor_execute", explain, retval=True)
    try:
        result = connection.execute(statement, params)
        return json.dumps(result.cursor.fetchone()[0])
    finally:
        event.remove(connection, "before_cursor_execute", explain)


@pytest.mark.parametrize("analysed", [False, True], ids=["no-statistics", "analysed"])
def test_the_relays_statements_walk_their_indexes_whatever_the_statistics(
    outbox: Outbox, analysed: bool
) -> None:
    """A burst on tables the planner knows nothing of (here: 5,000 unpublished events and 5,000
    pending deliveries on new tables, never analysed): it took them for nearly empty. The claim
    ran its subqueries on every pending delivery and sorted them all (36 ms a claim); the
    lease, the read and the settle scanned the whole deliveries table, and each hand-on sorted
    every unpublished event (12-25 ms each at 30,000, so that a batch cost more the larger the
    backlog). Under `planner.INDEX_WALKS`, each of the relay's statements must walk the index it
    was written for, with no full scan, bitmap scan or sort; and still so once analysed."""
    if outbox.database_url.startswith("sqlite"):
        pytest.skip("the planner's choice: Postgres only")
    endpoint = outbox.add_endpoint("http://127.0.0.1:9/unused")
    ids = outbox.add_events(5000, objects=1000)
    now = datetime.now(UTC)
    with outbox.engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO event_deliveries (id, event_id, endpoint_id, object_id, "
                "event_created, status, attempts, next_attempt_at, created) "
                "SELECT 'del_' || substr(id, 5), id, :w, object_id, created, 'pending', 0, :now, "
                ":now FROM events"
            ),
            {"w": endpoint, "now": now},
        )
        if analysed:
            connection.execute(text("ANALYZE events"))
            connection.execute(text("ANALYZE event_deliveries"))
    some = [f"del_{i[4:]}" for i in ids[:25]]
    later = now + timedelta(seconds=40)
    by_ids = deliveries._by_ids(postgres=True)
    statements = {
        "hand on": (outbox_module._HAND_ON, {"limit": 500, "now": now}),
        "fan out": (outbox_module._HELD, {"endpoints": [endpoint], "objects": ["ord_relay_1"]}),
        "claim": (deliveries._DUE, {"now": now, "limit": 25}),
        "lease": (by_ids.lease, {"ids": some, "now": now, "lease": later}),
        "read": (by_ids.read, {"ids": some}),
        "settle": (
            by_ids.move,
            {"ids": some, "b_status": "pending", "b_next": later, "b_completed": None},
        ),
        "hold back": (
            deliveries._HOLD_BACK,
            {"b_endpoint": endpoint, "b_object": "ord_relay_1", "b_created": now, "b_next": later},
        ),
    }
    with outbox.engine.begin() as connection:
        connection.execute(planner.INDEX_WALKS)
        plans = {name: _plan(connection, *statement) for name, statement in statements.items()}
    walks = {
        "hand on": ["ix_events_unpublished", "pk_events"],
        "fan out": ["ix_event_deliveries_pending_per_object"],
        "claim": [
            "ix_event_deliveries_due",
            "ix_event_deliveries_pending_per_object",
            "pk_webhook_endpoints",
        ],
        "lease": ["pk_event_deliveries"],
        "read": ["pk_event_deliveries", "pk_events", "pk_webhook_endpoints"],
        "settle": ["pk_event_deliveries"],
        "hold back": ["ix_event_deliveries_pending_per_object"],
    }
    for name, plan in plans.items():
        used = set(re.findall(r'"Index Name": "(\w+)"', plan))
        assert used == set(walks[name]), (name, plan)
        assert "Seq Scan" not in plan, (name, plan)
        assert "Bitmap" not in plan, (name, plan)
        assert '"Sort"' not in plan.replace('"Incremental Sort"', ""), (name, plan)


def unpublished(outbox: Outbox) -> int:
    return int(outbox.rows("SELECT count(*) AS n FROM events WHERE published_at IS NULL")[0]["n"])


def test_events_reach_rabbitmq_in_order_per_object_and_count_as_published_after_it(
    outbox: Outbox,
) -> None:
    url, exchange = require_broker(), unique_name()

    async def run() -> list[AbstractIncomingMessage]:
        async with durable_queue(url, exchange, "order.*") as queue:
            ids = outbox.add_events(600, objects=20, type="order.paid")
            outbox.add_events(5, objects=5, type="subscription.active")  # not routed to `order.*`
            relay = start_relay(outbox, EVENTS_AMQP_URL=url, EVENTS_AMQP_EXCHANGE=exchange)
            try:
                await asyncio.to_thread(wait_until, lambda: unpublished(outbox) == 0)
            finally:
                stop(relay)
            got = await drain(url, queue)
            assert sorted(m.message_id or "" for m in got) == sorted(ids)
            return got

    try:
        got = asyncio.run(run())
    finally:
        asyncio.run(delete_exchange(url, exchange))
    assert {m.routing_key for m in got} == {"order.paid"}
    assert {m.delivery_mode for m in got} == {DeliveryMode.PERSISTENT}
    per_object: dict[str, list[int]] = {}
    for message in got:
        body = json.loads(message.body)
        assert body["id"] == message.message_id
        per_object.setdefault(body["data"]["object"]["id"], []).append(
            body["data"]["object"]["seq"]
        )
    assert all(seqs == sorted(seqs) for seqs in per_object.values())


def test_the_broker_restarting_mid_burst_loses_no_event(outbox: Outbox) -> None:
    url, exchange = require_broker(), unique_name()

    async def run() -> tuple[list[str], list[str]]:
        async with durable_queue(url, exchange) as queue:
            relay = start_relay(outbox, EVENTS_AMQP_URL=url, EVENTS_AMQP_EXCHANGE=exchange)
            try:
                ids = outbox.add_events(500, objects=25)
                await asyncio.to_thread(wait_until, lambda: unpublished(outbox) < 500)
                restart = asyncio.create_task(asyncio.to_thread(restart_broker, url))
                while not restart.done():  # events keep committing while the broker is away
                    ids += outbox.add_events(50, objects=25)
                    await asyncio.sleep(0.1)
                await restart
                ids += outbox.add_events(200, objects=25)
                await asyncio.to_thread(
                    wait_until, lambda: unpublished(outbox) == 0, 90.0, "all published"
                )
            finally:
                stop(relay)
            return ids, [m.message_id or "" for m in await drain(url, queue)]

    try:
        ids, got = asyncio.run(run())
    finally:
        asyncio.run(delete_exchange(url, exchange))
    counts = Counter(got)
    assert set(counts) == set(ids)
    duplicates = sum(n - 1 for n in counts.values())
    print(f"broker restart: {len(ids)} events, {duplicates} published twice")  # noqa: T201


def test_the_service_delivers_an_orders_events_to_an_endpoint_registered_through_the_api(
    stack: Stack, receiver: Receiver
) -> None:
    """The whole path on the stack's service, whose processes run the relay (the default):
    `POST /webhook-endpoints`, a payment, the order's events at the endpoint signed with the
    secret the create answered, and the delivery log."""
    receiver.mode(200)
    hook = path()
    created = stack.api.post(
        "/webhook-endpoints",
        json={"url": receiver.url + hook, "enabled_events": ["order.created", "order.paid"]},
    )
    assert created.status_code == 200, created.text
    endpoint = created.json()
    try:
        intent = create_intent(stack)
        confirm_on_stripe(stack, intent["id"], "pm_card_visa")
        stack.wait_for_order(intent["order_id"], "paid")
        wait_until(lambda: len(receiver.received(hook)) >= 2, what="two deliveries")
        wait_until(
            lambda: all(
                d["status"] == "succeeded"
                for e in stack.api.get("/events", params={"order": intent["order_id"]}).json()[
                    "data"
                ]
                for d in stack.api.get(f"/events/{e['id']}/deliveries").json()["data"]
                if d["endpoint"] == endpoint["id"]
            ),
            what="deliveries settled",
        )
        log = stack.api.get(f"/events/{paid_event(stack, intent['order_id'])}/deliveries")
    finally:
        stack.api.delete(f"/webhook-endpoints/{endpoint['id']}")
    got = receiver.received(hook)
    for item in got:
        signing.verify(
            item["body"].encode(), item["headers"]["Payments-Signature"], endpoint["secret"]
        )
    bodies = [json.loads(item["body"]) for item in got]
    assert [(b["type"], b["data"]["object"]["id"]) for b in bodies] == [
        ("order.created", intent["order_id"]),
        ("order.paid", intent["order_id"]),
    ]
    paid = bodies[1]
    assert paid == stack.api.get(f"/events/{paid['id']}").json()
    assert [
        (d["endpoint"], d["status"], [a["status_code"] for a in d["attempts"]])
        for d in log.json()["data"]
        if d["endpoint"] == endpoint["id"]
    ] == [(endpoint["id"], "succeeded", [200])]
    assert stack.api.get(f"/webhook-endpoints/{endpoint['id']}").status_code == 404
    # Counters are per process, and a replica's relay may have sent them: the gauges only.
    metrics = stack.public.get("/metrics").text
    assert "\noutbox_unpublished_events " in metrics
    assert "\noutbox_oldest_unpublished_age_seconds " in metrics
    assert stack.public.get("/health/ready").json()["checks"]["outbox"] == {"status": "ok"}


def test_ready_reports_the_outbox_behind_without_failing(stack: Stack) -> None:
    """A service whose events nobody hands on (no relay anywhere): `/health/ready` says the outbox
    is behind, with the counts, and stays 200; the gauges show the backlog."""
    with sandbox_service(
        stack, "behind", API_KEYS=API_KEY, EVENTS_RELAY="off", EVENTS_BACKLOG_ALERT_SECONDS="1"
    ) as (url, _emulator, _database_url):
        api = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=30)
        created = api.post("/payment-intents", json={"amount": 1500, "currency": "usd"})
        assert created.status_code == 200, created.text
        time.sleep(1.5)
        ready = httpx.get(f"{url}/health/ready", timeout=10)
        metrics = httpx.get(f"{url}/metrics", timeout=10).text
        api.close()
    assert ready.status_code == 200, ready.text
    body = ready.json()
    assert (body["status"], body["failing"]) == ("ok", [])
    assert body["checks"]["outbox"]["status"] == "behind"
    assert body["checks"]["outbox"]["detail"].startswith("events not handed on: 1,")
    assert "outbox_unpublished_events 1.0" in metrics


def paid_event(stack: Stack, order_id: str) -> str:
    found = stack.api.get("/events", params={"order": order_id, "type": "order.paid"}).json()
    return str(found["data"][0]["id"])
