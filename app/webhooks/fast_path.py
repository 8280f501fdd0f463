"""The usual delivery on a fast path: a `payment_intent.*` event (any but `created`) for an
order already linked to that intent, on Postgres.

One transaction on the driver (`app.pg_direct`), no ORM, four round trips where the general
path (`handlers`) takes six: lock the order, store the event with its outcome (a redelivery
stops there, having written nothing), write the order's change in one statement
(`orders.service.plan_payment_intent_sync`, as the general path), commit. The order is locked
before the event is stored, so the outcome is known when the row is written.

Anything else returns None, having written nothing, and takes the general path: an order
another transaction holds (the general path waits for it, with the inbox's lock timeout, on
SQLAlchemy's pool: a direct connection never waits for a lock), an order not linked yet (found
by metadata), a move out of `payment_failed` (Stripe is asked), a refund recorded before its
payment, an event without an intent id or status.
"""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import Table, bindparam, select
from sqlalchemy.ext.asyncio import AsyncEngine

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
_ORDERS = cast(Table, Order.__table__)
_LOCKED_ORDER = (
    select(
        *(
            _ORDERS.c[name]
            for name in ("id", "status", "amount_received", "amount_refunded", "payment_intent")
        )
    )
    .where(_ORDERS.c.payment_intent == bindparam("value"))
    .with_for_update(of=_ORDERS, skip_locked=True)
)


async def receive(engine: AsyncEngine, payload: dict[str, Any]) -> Receipt | None:
    """Store and apply the event if it is the usual case; None if it is not (nothing written)."""
    event_id, event_type = payload["id"], payload["type"]
    intent: dict[str, Any] = payload.get("data", {}).get("object") or {}
    if event_type not in TYPES or not isinstance(intent.get("id"), str) or "status" not in intent:
        return None
    failed = event_type == "payment_intent.payment_failed"
    target = status_for_payment_intent(intent["status"], failed=failed)
    async with pg_direct.transaction(engine) as connection:
        row = await connection.fetchrow(_LOCKED_ORDER, {"value": intent["id"]})
        if row is None or row["amount_refunded"] > 0 or _out_of_failed(row["status"], target):
            return None
        order = Order(**dict(row))
        change = plan_payment_intent_sync(order, intent, event_id, True, failed=failed)
        outcome = Outcome.APPLIED if target is None else outcome_of(change.decision)
        stored = await connection.fetch(STORE[True], store_params(payload, outcome))
        if stored:
            for statement in change.statements:
                await connection.execute(statement, change.params)
    if not stored:
        log_outcome(event_id, event_type, None, "duplicate")
        return Receipt(duplicate=True)
    change.written(order)
    log_outcome(event_id, event_type, order.id, outcome.value)
    return Receipt(duplicate=False, outcome=outcome, order_id=order.id)


def _out_of_failed(status: str, target: OrderStatus | None) -> bool:
    return status == OrderStatus.PAYMENT_FAILED and target not in (None, OrderStatus.PAYMENT_FAILED)
