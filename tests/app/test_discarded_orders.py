"""An order Stripe refused to create is discarded (app.orders.service.discard_order): with its
events while none was published; once its `order.created` went out, that event stays and
`order.discarded` follows it, so a subscriber never sees an order silently vanish. The refusal
is made to land late (the emulator's injected latency) so the test can publish `order.created`
between the order's commit and Stripe's answer, as the relay would."""

from __future__ import annotations

import asyncio
import json
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import DateTime, bindparam, text
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from app.db import create_engine
from app.orders.service import discard_order, get_order, insert_order
from tests.app.test_outbox import events_of
from tests.app.test_stripe_faults import CREATE_ROUTE, marker, orders_described
from tests.fixtures.service import Stack, fault, own_database, run_app

SOURCE = "api:POST /payment-intents"
PUBLISH = text("UPDATE events SET published_at = :at WHERE object_id = :id").bindparams(
    bindparam("at", type_=DateTime(timezone=True))
)


def events_in_db(stack: Stack, order_id: str) -> list[dict[str, Any]]:
    return stack.rows(
        "SELECT type, published_at FROM events WHERE object_id = :id ORDER BY created, id",
        id=order_id,
    )


def refused_late(stack: Stack, *, publish: bool) -> tuple[httpx.Response, str]:
    """A create Stripe refuses (an unknown customer) 1.5 s late; while it waits, its committed
    order's `order.created` is marked published when `publish`. The answer and the order's id."""
    description = marker()
    body = {"amount": 1500, "currency": "usd", "description": description, "customer": "cus_nope"}
    with (
        fault(stack, route=CREATE_ROUTE, latency_ms=1500, times=1),
        ThreadPoolExecutor(1) as pool,
    ):
        answer = pool.submit(stack.api.post, "/payment-intents", json=body)
        deadline = time.monotonic() + 10
        while not (orders := orders_described(stack, description)):
            assert time.monotonic() < deadline, "the order was not committed"
            time.sleep(0.02)
        [order] = orders
        assert [e["type"] for e in events_in_db(stack, order["id"])] == ["order.created"]
        if publish:
            with stack.engine.begin() as connection:
                connection.execute(PUBLISH, {"at": datetime.now(UTC), "id": order["id"]})
        assert not answer.done(), "Stripe answered before the test could publish"
        response = answer.result(timeout=30)
    assert response.status_code == 404, response.text
    assert response.json()["error"]["code"] == "resource_missing"
    return response, str(order["id"])


class TestRefusedCreate:
    """On a service that runs no relay: the test publishes `order.created` itself, or not."""

    def test_with_order_created_unpublished_leaves_no_order_and_no_event(
        self, stack_without_relay: Stack
    ) -> None:
        stack = stack_without_relay
        _, order_id = refused_late(stack, publish=False)
        assert stack.rows("SELECT id FROM orders WHERE id = :id", id=order_id) == []
        assert stack.rows("SELECT id FROM order_history WHERE order_id = :id", id=order_id) == []
        assert events_in_db(stack, order_id) == []

    def test_with_order_created_published_keeps_it_and_tells_the_order_is_discarded(
        self, stack_without_relay: Stack
    ) -> None:
        stack = stack_without_relay
        _, order_id = refused_late(stack, publish=True)
        assert stack.rows("SELECT id FROM orders WHERE id = :id", id=order_id) == []
        assert stack.rows("SELECT id FROM order_history WHERE order_id = :id", id=order_id) == []
        created, discarded = events_of(stack, order_id)
        assert (created["type"], created["cause"]) == ("order.created", SOURCE)
        assert (discarded["type"], discarded["cause"]) == ("order.discarded", SOURCE)
        assert created["data"]["object"]["status"] == "pending"
        shown = discarded["data"]["object"]
        assert (shown["object"], shown["id"], shown["status"]) == ("order", order_id, "discarded")
        assert (shown["amount"], shown["currency"], shown["payment_intent"]) == (1500, "usd", None)
        assert shown["description"] == created["data"]["object"]["description"]
        assert discarded["created"] >= created["created"]
        # The published event is kept as published; the new one waits for the relay.
        published = [e["published_at"] is not None for e in events_in_db(stack, order_id)]
        assert published == [True, False]

    def test_the_audit_leaves_a_discarded_orders_events_alone_and_names_them_otherwise(
        self, stack_without_relay: Stack
    ) -> None:
        stack = stack_without_relay
        _, order_id = refused_late(stack, publish=True)
        assert outbox_findings(stack, order_id) == []
        # Without its `order.discarded`, the kept `order.created` is an event with no history.
        remove = "DELETE FROM events WHERE object_id = :id AND type = :type"
        try:
            with stack.engine.begin() as connection:
                connection.execute(text(remove), {"id": order_id, "type": "order.discarded"})
            findings = outbox_findings(stack, order_id)
            assert findings == [("event_without_transition", "order.created")]
        finally:  # the orphan made here is no state other tests on the stack should meet
            with stack.engine.begin() as connection:
                connection.execute(text(remove), {"id": order_id, "type": "order.created"})


def outbox_findings(stack: Stack, order_id: str) -> list[tuple[str, str]]:
    ran = run_app(
        "audit", "--min-age", "0", "--json",
        database_url=stack.database_url, stripe_base=stack.emulator.url,
    )  # fmt: skip
    assert ran.returncode in (0, 1), ran.stdout + ran.stderr
    return [
        (f["kind"], f["detail"].split()[0])
        for f in json.loads(ran.stdout)["findings"]
        if f["order"] == order_id
    ]


@pytest.mark.parametrize("publish", [True, False], ids=["published", "rolled-back"])
def test_a_discard_waits_for_a_relay_holding_the_event(stack: Stack, publish: bool) -> None:
    """A relay holds `order.created` FOR UPDATE while it publishes: the discard waits for it,
    then keeps the event and writes `order.discarded` if the relay set `published_at`, or
    deletes it if the relay gave up (rolled back). On a database of its own: the stack's relay
    would otherwise publish the event before the test's relay could hold it."""
    if stack.backend != "postgres":
        pytest.skip("row locks: Postgres only (SQLite's one writer serializes them)")
    with own_database(stack, "discard") as database_url:
        types = asyncio.run(_discard_while_held(database_url, publish=publish))
    assert types == (["order.created", "order.discarded"] if publish else [])


async def _discard_while_held(url: str, *, publish: bool) -> list[str]:
    engine = create_engine(url, 3)
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    try:
        async with engine.begin() as connection:
            order_id = await insert_order(connection, amount=900, currency="usd", source=SOURCE)
        async with engine.connect() as relay:
            held = await relay.execute(
                text("SELECT published_at FROM events WHERE object_id = :id FOR UPDATE"),
                {"id": order_id},
            )
            assert [row.published_at for row in held] == [None]

            async def discard() -> None:
                async with sessions.begin() as session:
                    order = await get_order(session, order_id, for_update=True)
                    await discard_order(session, order, SOURCE)

            discarding = asyncio.create_task(discard())
            await _until_waiting_for_a_lock(engine)
            assert not discarding.done()
            if publish:
                await relay.execute(PUBLISH, {"at": datetime.now(UTC), "id": order_id})
                await relay.commit()
            else:
                await relay.rollback()
            await asyncio.wait_for(discarding, 10)
        async with engine.connect() as connection:
            orders = await connection.execute(
                text("SELECT id FROM orders WHERE id = :id"), {"id": order_id}
            )
            assert orders.all() == []
            events = await connection.execute(
                text("SELECT type FROM events WHERE object_id = :id ORDER BY created, id"),
                {"id": order_id},
            )
            return [row.type for row in events]
    finally:
        await engine.dispose()


async def _until_waiting_for_a_lock(engine: AsyncEngine) -> None:
    """Until another backend of this database waits for a lock (the discard's FOR UPDATE); read
    in a transaction of its own each time (a transaction keeps its first view of the activity)."""
    query = text(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
        "AND wait_event_type = 'Lock' AND query LIKE '%FOR UPDATE%'"
    )
    deadline = time.monotonic() + 10
    async with engine.connect() as observer:
        while True:
            waiting = (await observer.execute(query)).scalar_one()
            await observer.rollback()
            if waiting:
                return
            assert time.monotonic() < deadline, "the discard never waited for the relay's lock"
            await asyncio.sleep(0.02)
