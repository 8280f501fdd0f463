"""The usual delivery on a fast path: a `payment_intent.*` event (any but `created`) for an
order already linked to that intent, on Postgres.

Two autocommit statements on the driver (`app.pg_direct`), no ORM, no BEGIN or COMMIT, where the
general path (`handlers`) takes six round trips: read the order (unlocked), plan its change from
what was read (`orders.service.plan_payment_intent_sync`, as the general path), then one
statement (`GUARD` with the change's writes as CTEs) that
1. stores the event as the general path does (`inbox.STORE`, with the planned outcome; a
   redelivery stops there, having written nothing),
2. locks the order if it is still as read (a LATERAL subquery on the stored row, SKIP LOCKED),
3. writes the change (order, history, mirror, outbox event), each only if the order was locked, and
4. rolls itself back (`abort_statement`, SQLSTATE `ORDER_MOVED`) when the event was stored
   but the order was not locked: another transaction holds it, or it moved since it was read.

Anything else writes nothing and returns None for the general path to take the event: an
order held or moved (as above: the general path waits for it, with the inbox's lock timeout, on
SQLAlchemy's pool), an order not linked yet (found by metadata), a move out of `payment_failed`
(Stripe is asked), a refund recorded before its payment, an event without an intent id or
status.

Both paths lock in one order: the event's inbox row (its unique key), then the order. Each
transaction stores one event and locks at most one order, and STORE is its first write, so one
waiting for an inbox row holds nothing yet, and one waiting for an order holds only its own
inbox row, for which no holder of an order waits: no cycle. (The lock is a LATERAL subquery on
the INSERT's row: it runs after the INSERT, and not at all for a duplicate; the writes wait for
it, since each applies only if it locked the order.)

- One event delivered twice (fast and fast, fast and general, general and general): the second
  STORE waits for the first transaction, then finds the row (a duplicate: nothing written) or,
  if it was rolled back, stores the event itself. A fast path that skipped a held order rolls
  back, which lets a waiting duplicate in, and its general path then waits for that one.
- Two events of one order: each holds its own inbox row; the second to reach the order skips it
  (fast) or waits for it (general, within the lock timeout).
- An order an API request holds: skipped, then waited for by the general path (a 503
  `order_not_ready` past the lock timeout); an API request takes no inbox row.

So the one lock a direct connection waits for is an inbox row a duplicate delivery in flight
holds, within the lock timeout that STORE sets.
"""

from __future__ import annotations

from typing import Any, cast

import asyncpg
from sqlalchemy import Table, bindparam, case, func, literal, select, true
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.sql.selectable import CTE

from app import pg_direct
from app.models import Order, OrderStatus
from app.orders.service import plan_payment_intent_sync
from app.orders.state import status_for_payment_intent
from app.webhooks.inbox import (
    PAYMENT_INTENT_EVENTS,
    STORE,
    Outcome,
    Receipt,
    log_outcome,
    outcome_of,
    store_params,
)

# All but `created`, which the general path checks against the mirror.
TYPES = frozenset(PAYMENT_INTENT_EVENTS) - {"payment_intent.created"}
# `abort_statement`'s SQLSTATE (migration 5e0c2b7d9a41).
ORDER_MOVED = "PA001"
_ORDERS = cast(Table, Order.__table__)
_READ = ("id", "status", "amount_received", "amount_refunded", "payment_intent")
READ_ORDER = select(*(_ORDERS.c[name] for name in _READ)).where(
    _ORDERS.c.payment_intent == bindparam("value")
)


def _guard() -> CTE:
    """STORE, then the order's lock if it is as read (`seen_*`), in the one lock order: the lock
    is a LATERAL subquery on the stored row, so Postgres runs the INSERT (which may wait for a
    duplicate in flight) before it locks the order, and locks nothing for a duplicate (no row
    stored: no row at all). One row, the stored event's id and the locked order's id, or the
    statement's abort when the event was stored and the order not locked."""
    stored = STORE[True].cte("stored")
    locked = (
        select(_ORDERS.c.id)
        .where(
            _ORDERS.c.id == bindparam("o_id"),
            _ORDERS.c.status == bindparam("seen_status"),
            _ORDERS.c.amount_received == bindparam("seen_amount_received"),
            _ORDERS.c.amount_refunded == bindparam("seen_amount_refunded"),
            stored.c.id.is_not(None),
        )
        .with_for_update(of=_ORDERS, skip_locked=True)
        .lateral("locked")
    )
    moved = func.abort_statement(literal("webhook fast path: the order is held or has moved"))
    return (
        select(
            stored.c.id.label("stored_id"),
            locked.c.id.label("order_id"),
            case((locked.c.id.is_(None), moved), else_=0).label("checked"),
        )
        .select_from(stored.outerjoin(locked, true()))
        .cte("guarded")
    )


GUARD = _guard()


async def receive(engine: AsyncEngine, payload: dict[str, Any]) -> Receipt | None:
    """Store and apply the event if it is the usual case; None if it is not (nothing written)."""
    event_type = payload["type"]
    intent: dict[str, Any] = payload.get("data", {}).get("object") or {}
    if event_type not in TYPES or not isinstance(intent.get("id"), str) or "status" not in intent:
        return None
    failed = event_type == "payment_intent.payment_failed"
    target = status_for_payment_intent(intent["status"], failed=failed)
    found = await pg_direct.fetch(engine, READ_ORDER, {"value": intent["id"]})
    if not found or found[0]["amount_refunded"] > 0 or _out_of_failed(found[0]["status"], target):
        return None
    return await apply_as_read(engine, payload, found[0])


async def apply_as_read(
    engine: AsyncEngine, payload: dict[str, Any], seen: asyncpg.Record
) -> Receipt | None:
    """The event stored and applied to the order as `seen` (a row of READ_ORDER) in one
    statement; None, with nothing written, if the order is held or no longer as seen."""
    event_id, event_type = payload["id"], payload["type"]
    intent: dict[str, Any] = payload["data"]["object"]
    failed = event_type == "payment_intent.payment_failed"
    target = status_for_payment_intent(intent["status"], failed=failed)
    order = Order(**{name: seen[name] for name in _READ})
    change = plan_payment_intent_sync(order, intent, event_id, True, failed=failed, guard=GUARD)
    outcome = Outcome.APPLIED if target is None else outcome_of(change.decision)
    (statement,) = change.statements
    params = {**store_params(payload, outcome), **change.params}
    params.update({f"seen_{name}": seen[name] for name in _SEEN})
    try:
        stored = await pg_direct.fetch(engine, statement, params)
    except DBAPIError as exc:
        if getattr(exc.orig, "sqlstate", None) == ORDER_MOVED:
            return None
        raise
    if not stored:
        log_outcome(event_id, event_type, None, "duplicate")
        return Receipt(duplicate=True)
    change.written(order)
    log_outcome(event_id, event_type, order.id, outcome.value)
    return Receipt(duplicate=False, outcome=outcome, order_id=order.id)


_SEEN = ("status", "amount_received", "amount_refunded")


def _out_of_failed(status: str, target: OrderStatus | None) -> bool:
    return status == OrderStatus.PAYMENT_FAILED and target not in (None, OrderStatus.PAYMENT_FAILED)
