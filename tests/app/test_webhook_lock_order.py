"""Both webhook paths take their locks in one order (the inbox row, then the order): the same
event delivered many times at once, to two service processes, or given to both paths at once in
one process, is stored and applied once with no delivery failing (a deadlock's 503 would have
Stripe back off)."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app import pg_direct
from app.config import Settings
from app.db import create_engine, create_sessionmaker
from app.orders.service import insert_order, link_payment_intent
from app.stripe_gateway import StripeGateway
from app.webhooks import fast_path, handlers
from app.webhooks.inbox import STORE, Outcome, Receipt, store_params
from tests.app.test_webhooks import create_intent, event, history, snapshot
from tests.fixtures.service import Replica, Stack, postgres_database, sign_event

POSTGRES = os.environ.get("TEST_DATABASE_URL")
DUPLICATES = 20
ORDERS = 3
ROUNDS = 5


@pytest.fixture
def postgres(request: pytest.FixtureRequest) -> Stack:
    if request.node.callspec.params["stack"] != "postgres":
        pytest.skip("row locks and SKIP LOCKED are Postgres's; SQLite runs one writer at a time")
    stack: Stack = request.getfixturevalue("stack")
    return stack


@pytest.fixture
def quiet(postgres: Stack) -> Iterator[Stack]:
    """The emulator's own deliveries dropped: only the events the test posts arrive."""
    postgres.controls("/_emulator/faults", {"webhook": "drop"})
    try:
        yield postgres
    finally:
        httpx.delete(f"{postgres.emulator.url}/_emulator/faults", timeout=10).raise_for_status()


def all_at_once(calls: list[Callable[[], httpx.Response]]) -> list[httpx.Response]:
    barrier = threading.Barrier(len(calls))

    def run(call: Callable[[], httpx.Response]) -> httpx.Response:
        barrier.wait()
        return call()

    with ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(run, calls))


def delivery(url: str, evt: dict[str, Any]) -> Callable[[], httpx.Response]:
    payload = json.dumps(evt)
    headers = {"Content-Type": "application/json", "Stripe-Signature": sign_event(payload)}
    return lambda: httpx.post(
        f"{url}/webhooks/stripe", content=payload, headers=headers, timeout=60
    )


def test_duplicates_of_several_events_at_once_at_two_processes_all_answer_200(
    quiet: Stack, replica: Replica
) -> None:
    for _ in range(ROUNDS):
        deliver_duplicates_at_once(quiet, replica)


def deliver_duplicates_at_once(stack: Stack, replica: Replica) -> None:
    orders: dict[str, list[dict[str, Any]]] = {}
    for _ in range(ORDERS):
        intent = create_intent(stack)
        created = snapshot(stack, intent["id"])
        orders[intent["order_id"]] = [
            event("payment_intent.processing", {**created, "status": "processing"}),
            event(
                "payment_intent.succeeded",
                {**created, "status": "succeeded", "amount_received": created["amount"]},
            ),
        ]
    events = [evt for evts in orders.values() for evt in evts]
    urls = (stack.url, replica.url)

    responses = all_at_once(
        [delivery(urls[copy % 2], evt) for copy in range(DUPLICATES) for evt in events]
    )

    assert [r.status_code for r in responses] == [200] * len(responses), [
        r.text for r in responses if r.status_code != 200
    ]
    first = Counter(
        evt["id"]
        for evt, response in zip(events * DUPLICATES, responses, strict=True)
        if not response.json()["duplicate"]
    )
    assert first == dict.fromkeys((evt["id"] for evt in events), 1)
    stored = stack.rows(
        "SELECT stripe_event_id, outcome FROM webhook_events WHERE stripe_event_id = ANY(:ids)",
        ids=[evt["id"] for evt in events],
    )
    assert sorted(row["stripe_event_id"] for row in stored) == sorted(e["id"] for e in events)
    assert {row["outcome"] for row in stored} <= {"applied", "stale"}
    applied = {row["stripe_event_id"] for row in stored if row["outcome"] == "applied"}
    for order_id, evts in orders.items():
        order = stack.order(order_id)
        assert order["status"] == "paid"
        assert order["amount_received"] == 2000
        moves = history(order)
        assert len(moves) == len(set(moves)), moves
        sources = [entry["source"] for entry in order["history"][1:]]
        # One entry per event that moved the order, none for a stale one.
        assert sorted(sources) == sorted(e["id"] for e in evts if e["id"] in applied)


@pytest.mark.skipif(not POSTGRES, reason="TEST_DATABASE_URL is not set")
def test_the_fast_and_the_general_path_on_one_event_at_once_in_one_process() -> None:
    assert POSTGRES is not None
    with postgres_database(POSTGRES, "lock_order") as url:
        asyncio.run(both_paths_at_once(url))


async def both_paths_at_once(url: str) -> None:
    engine = create_engine(url, 20, direct_pool_size=4)
    sessions = create_sessionmaker(engine)
    # Never called: no event here moves an order out of payment_failed.
    gateway = StripeGateway(
        Settings(
            stripe_secret_key=SecretStr("sk_test_lock_order"),
            stripe_api_base="http://127.0.0.1:9",
            stripe_webhook_secret=SecretStr("whsec_lock_order"),
        )
    )
    try:
        for _ in range(ROUNDS):
            await one_round(engine, sessions, gateway)
    finally:
        await gateway.close()
        await pg_direct.close(engine)
        await engine.dispose()


async def one_round(
    engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession], gateway: StripeGateway
) -> None:
    events: dict[str, list[dict[str, Any]]] = {}
    for _ in range(ORDERS):
        order_id, intent = await linked_order(engine, "lock_order")
        events[order_id] = [
            event("payment_intent.processing", {**intent, "status": "processing"}),
            event(
                "payment_intent.succeeded",
                {**intent, "status": "succeeded", "amount_received": 2000},
            ),
        ]

    async def fast(payload: dict[str, Any]) -> Receipt:
        # As `handlers.receive`: the general path when the fast path does not apply.
        return await fast_path.receive(engine, payload) or await general(payload)

    async def general(payload: dict[str, Any]) -> Receipt:
        async with sessions.begin() as session:
            return await handlers._store_and_apply(session, gateway, payload)

    every = [evt for evts in events.values() for evt in evts]
    contenders = [(evt, path) for _ in range(3) for evt in every for path in (fast, general)]
    results = await asyncio.gather(*(path(evt) for evt, path in contenders), return_exceptions=True)

    assert [r for r in results if not isinstance(r, Receipt)] == []
    firsts = Counter(
        evt["id"]
        for (evt, _), receipt in zip(contenders, results, strict=True)
        if isinstance(receipt, Receipt) and not receipt.duplicate
    )
    assert firsts == dict.fromkeys((evt["id"] for evt in every), 1)
    async with engine.connect() as connection:
        stored = dict(
            (
                await connection.execute(
                    text(
                        "SELECT stripe_event_id, outcome FROM webhook_events "
                        "WHERE stripe_event_id = ANY(:ids)"
                    ),
                    {"ids": [evt["id"] for evt in every]},
                )
            ).all()
        )
        moves = (
            await connection.execute(
                text(
                    "SELECT order_id, from_status, to_status, source FROM order_history "
                    "WHERE order_id = ANY(:ids) AND source != 'test'"
                ),
                {"ids": list(events)},
            )
        ).all()
        statuses = dict(
            (
                await connection.execute(
                    text("SELECT id, status FROM orders WHERE id = ANY(:ids)"),
                    {"ids": list(events)},
                )
            ).all()
        )
    assert set(stored) == {evt["id"] for evt in every}
    assert set(stored.values()) <= {"applied", "stale"}
    assert statuses == dict.fromkeys(events, "paid")
    for order_id, evts in events.items():
        sources = [m.source for m in moves if m.order_id == order_id]
        transitions = [(m.from_status, m.to_status) for m in moves if m.order_id == order_id]
        assert len(transitions) == len(set(transitions)), transitions
        assert sorted(sources) == sorted(e["id"] for e in evts if stored[e["id"]] == "applied")


@pytest.mark.skipif(not POSTGRES, reason="TEST_DATABASE_URL is not set")
def test_the_fast_path_locks_no_order_while_its_inbox_insert_waits() -> None:
    """The fast path stores the event, locks the order and writes the change in one statement
    (`fast_path.GUARD`); the lock must still come after the INSERT. Here the INSERT
    waits for another transaction holding the same event's inbox row (a duplicate delivery in
    flight on the general path), and the order stays free for that transaction to take."""
    assert POSTGRES is not None
    with postgres_database(POSTGRES, "store_then_lock") as url:
        asyncio.run(insert_waits_with_the_order_free(url))


async def insert_waits_with_the_order_free(url: str) -> None:
    engine = create_engine(url, 5, direct_pool_size=2)
    try:
        order_id, intent = await linked_order(engine, "store_then_lock")
        succeeded = event(
            "payment_intent.succeeded", {**intent, "status": "succeeded", "amount_received": 2000}
        )
        async with engine.connect() as duplicate:
            await duplicate.execute(STORE[True], store_params(succeeded, Outcome.RECEIVED))
            fast = asyncio.create_task(fast_path.receive(engine, succeeded))
            await waiting_for_a_lock(engine)
            # The duplicate's transaction goes on to take the order, as the general path would:
            # with the fast path's INSERT waiting, the order is free (NOWAIT would fail if not).
            locked = await duplicate.scalar(
                text("SELECT id FROM orders WHERE id = :id FOR UPDATE NOWAIT"), {"id": order_id}
            )
            assert locked == order_id
            assert not fast.done()
            await duplicate.rollback()
        receipt = await asyncio.wait_for(fast, 10)

        assert receipt == Receipt(duplicate=False, outcome=Outcome.APPLIED, order_id=order_id)
        async with engine.connect() as connection:
            status = await connection.scalar(
                text("SELECT status FROM orders WHERE id = :id"), {"id": order_id}
            )
            outcome = await connection.scalar(
                text("SELECT outcome FROM webhook_events WHERE stripe_event_id = :id"),
                {"id": succeeded["id"]},
            )
        assert (status, outcome) == ("paid", "applied")

        # A redelivery while another transaction holds the order: a duplicate at once, the
        # order neither waited for nor skipped (no row stored, so no lock taken).
        async with engine.connect() as holder:
            await holder.execute(
                text("SELECT id FROM orders WHERE id = :id FOR UPDATE"), {"id": order_id}
            )
            again = await asyncio.wait_for(fast_path.receive(engine, succeeded), 10)
            assert again == Receipt(duplicate=True)
            await holder.rollback()
    finally:
        await pg_direct.close(engine)
        await engine.dispose()


@pytest.mark.skipif(not POSTGRES, reason="TEST_DATABASE_URL is not set")
def test_the_fast_path_writes_nothing_when_the_order_moved_after_it_was_read() -> None:
    """The fast path plans the change from the order read without a lock; its one statement
    locks the order only if it is still as read, and otherwise rolls itself back (the stored
    event with it) for the general path to take the event."""
    assert POSTGRES is not None
    with postgres_database(POSTGRES, "moved_after_read") as url:
        asyncio.run(moved_after_read(url))


async def moved_after_read(url: str) -> None:
    engine = create_engine(url, 5, direct_pool_size=2)
    try:
        order_id, intent = await linked_order(engine, "moved")
        processing = event("payment_intent.processing", {**intent, "status": "processing"})
        (seen,) = await pg_direct.fetch(engine, fast_path.READ_ORDER, {"value": intent["id"]})
        assert seen["status"] == "pending"
        # Another event moves the order between the fast path's read and its statement.
        succeeded = event(
            "payment_intent.succeeded", {**intent, "status": "succeeded", "amount_received": 2000}
        )
        assert await fast_path.receive(engine, succeeded) == Receipt(
            duplicate=False, outcome=Outcome.APPLIED, order_id=order_id
        )

        assert await fast_path.apply_as_read(engine, processing, seen) is None

        async with engine.connect() as connection:
            stored = await connection.scalar(
                text("SELECT count(*) FROM webhook_events WHERE stripe_event_id = :id"),
                {"id": processing["id"]},
            )
            moves = (
                await connection.execute(
                    text(
                        "SELECT from_status, to_status FROM order_history "
                        "WHERE order_id = :id ORDER BY id"
                    ),
                    {"id": order_id},
                )
            ).all()
            order = (
                await connection.execute(
                    text("SELECT status, amount_received FROM orders WHERE id = :id"),
                    {"id": order_id},
                )
            ).one()
            mirror = await connection.scalar(
                text("SELECT status FROM payment_intents WHERE stripe_id = :id"),
                {"id": intent["id"]},
            )
        # Nothing of the rolled-back statement: no inbox row, no history entry from `pending`
        # to `processing` (planned from the stale read), the order and mirror as `succeeded` left
        # them.
        assert stored == 0
        assert [tuple(m) for m in moves] == [(None, "pending"), ("pending", "paid")]
        assert tuple(order) == ("paid", 2000)
        assert mirror == "succeeded"
        # The general path then takes it: stored once, stale behind `paid`.
        general = await fast_path.receive(engine, processing)
        assert general == Receipt(duplicate=False, outcome=Outcome.STALE, order_id=order_id)
    finally:
        await pg_direct.close(engine)
        await engine.dispose()


async def linked_order(
    engine: AsyncEngine, prefix: str, **order: Any
) -> tuple[str, dict[str, Any]]:
    """A `pending` order of 2,000 usd linked to a new payment intent (`pi_<prefix>_…`, its
    mirror written), as a create leaves it; `order` goes to `insert_order`."""
    intent = {
        "id": f"pi_{prefix}_{secrets.token_hex(6)}",
        "object": "payment_intent",
        "amount": 2000,
        "amount_received": 0,
        "currency": "usd",
        "status": "requires_payment_method",
        "created": 1_700_000_000,
        "metadata": {},
    }
    order_id = await insert_order(engine, amount=2000, currency="usd", source="test", **order)
    assert await link_payment_intent(engine, order_id, intent, "test")
    return order_id, intent


async def waiting_for_a_lock(engine: AsyncEngine) -> None:
    """Until a backend other than the caller's waits for a lock (the fast path's INSERT)."""
    async with engine.connect() as connection:
        for _ in range(200):
            waiting = await connection.scalar(
                text(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                    "AND datname = current_database() AND pid <> pg_backend_pid()"
                )
            )
            if waiting:
                return
            await asyncio.sleep(0.05)
    raise AssertionError("the fast path's INSERT never waited for the duplicate's inbox row")
