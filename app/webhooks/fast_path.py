"""The usual delivery on a fast path: a `payment_intent.*` event (any but `created`) for an
order already linked to that intent, on Postgres.

One transaction on the driver (`app.pg_direct`), no ORM, four round trips (BEGIN, two
statements, COMMIT) where the general path (`handlers`) takes six: store the event as the
general path does (`inbox.STORE`, outcome `received`; a redelivery stops there, having written
nothing) and lock the order in one statement (`STORE_THEN_LOCK`), then write the order's change
(`orders.service.plan_payment_intent_sync`, as the general path) and the event's outcome
(`inbox.RECORD_OUTCOME`) in one statement, commit.

Anything else rolls the transaction back (the stored event with it) and returns None for the
general path to take the event: an order another transaction holds (skipped: the general path
waits for it, with the inbox's lock timeout, on SQLAlchemy's pool), an order not linked yet
(found by metadata), a move out of `payment_failed` (Stripe is asked), a refund recorded before
its payment, an event without an intent id or status.

Both paths lock in one order: the event's inbox row (its unique key), then the order. Each
transaction stores one event and locks at most one order, and STORE is its first statement, so
one waiting for an inbox row holds nothing yet, and one waiting for an order holds only its own
inbox row, for which no holder of an order waits: no cycle. (In `STORE_THEN_LOCK` the lock is a
LATERAL subquery on the INSERT's row: it runs after the INSERT, and not at all for a duplicate.)

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

import functools
from typing import Any, cast

from sqlalchemy import Executable, Select, Table, bindparam, select, true
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.sql.selectable import HasCTE

from app import pg_direct
from app.models import Order, OrderStatus
from app.orders.service import plan_payment_intent_sync
from app.orders.state import status_for_payment_intent
from app.webhooks.inbox import (
    PAYMENT_INTENT_EVENTS,
    RECORD_OUTCOME,
    STORE,
    Outcome,
    Receipt,
    log_outcome,
    outcome_of,
    store_params,
)

# All but `created`, which the general path checks against the mirror.
TYPES = frozenset(PAYMENT_INTENT_EVENTS) - {"payment_intent.created"}
_ORDERS = cast(Table, Order.__table__)
_LOCKED = ("id", "status", "amount_received", "amount_refunded", "payment_intent")


def _store_then_lock() -> Select[Any]:
    """STORE and the order's lock in one statement (one round trip), in the one lock order: the
    lock is a LATERAL subquery on the stored row, so Postgres runs the INSERT (which may wait
    for a duplicate in flight) before it locks the order, and locks nothing for a duplicate (no
    row stored: no row at all). One row: the stored event's id and, if the order was there and
    free, its columns (else NULLs)."""
    stored = STORE[True].cte("stored")
    locked = (
        select(*(_ORDERS.c[name] for name in _LOCKED))
        .where(_ORDERS.c.payment_intent == bindparam("value"), stored.c.id.is_not(None))
        .with_for_update(of=_ORDERS, skip_locked=True)
        .lateral("locked")
    )
    return select(stored.c.id.label("stored_id"), *locked.c).select_from(
        stored.outerjoin(locked, true())
    )


STORE_THEN_LOCK = _store_then_lock()


async def receive(engine: AsyncEngine, payload: dict[str, Any]) -> Receipt | None:
    """Store and apply the event if it is the usual case; None if it is not (nothing written)."""
    event_id, event_type = payload["id"], payload["type"]
    intent: dict[str, Any] = payload.get("data", {}).get("object") or {}
    if event_type not in TYPES or not isinstance(intent.get("id"), str) or "status" not in intent:
        return None
    failed = event_type == "payment_intent.payment_failed"
    target = status_for_payment_intent(intent["status"], failed=failed)
    try:
        async with pg_direct.transaction(engine) as connection:
            row = await connection.fetchrow(
                STORE_THEN_LOCK, {**store_params(payload, Outcome.RECEIVED), "value": intent["id"]}
            )
            if row is None:
                log_outcome(event_id, event_type, None, "duplicate")
                return Receipt(duplicate=True)
            if (
                row["id"] is None
                or row["amount_refunded"] > 0
                or _out_of_failed(row["status"], target)
            ):
                raise pg_direct.Rollback
            order = Order(**{name: row[name] for name in _LOCKED})
            change = plan_payment_intent_sync(order, intent, event_id, True, failed=failed)
            outcome = Outcome.APPLIED if target is None else outcome_of(change.decision)
            (statement,) = change.statements
            await connection.execute(
                _with_outcome(statement),
                {**change.params, "p_id": row["stored_id"], "p_outcome": outcome},
            )
    except pg_direct.Rollback:
        return None
    change.written(order)
    log_outcome(event_id, event_type, order.id, outcome.value)
    return Receipt(duplicate=False, outcome=outcome, order_id=order.id)


@functools.cache
def _with_outcome(statement: Executable) -> Executable:
    """The change's statement, writing the event's outcome too (a data-modifying CTE)."""
    assert isinstance(statement, HasCTE)
    return statement.add_cte(RECORD_OUTCOME.cte("write_outcome"))


def _out_of_failed(status: str, target: OrderStatus | None) -> bool:
    return status == OrderStatus.PAYMENT_FAILED and target not in (None, OrderStatus.PAYMENT_FAILED)
