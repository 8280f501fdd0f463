"""Orders: create them, find them (locked for update), and move them through the state machine,
keeping a history entry for every change and the local mirror of their payment intent."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, delete, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from app.db import is_postgres
from app.errors import InvalidRequest, NotFound
from app.models import CheckoutSession, Order, OrderHistory, OrderStatus, PaymentIntent, Refund
from app.observability import record_transition
from app.orders.state import (
    FINAL,
    Decision,
    decide,
    status_for_payment_intent,
    status_for_refunds,
)

# The Stripe metadata key under which every object we create carries our order id (the caller's
# own `order_id` metadata stays theirs): webhooks find an order by it before it is linked.
ORDER_KEY = "service_order_id"


async def create_order(
    session: AsyncSession,
    *,
    amount: int,
    currency: str,
    source: str,
    customer: str | None = None,
    description: str | None = None,
    metadata: dict[str, str] | None = None,
    idempotency_owner: str | None = None,
    idempotency_key: str | None = None,
) -> Order:
    """A new `pending` order, flushed so its id can key the Stripe call that follows. The
    caller's `Idempotency-Key` (with the caller's identity) ties a retry to this order."""
    order = Order(
        amount=amount,
        currency=currency,
        customer=customer,
        description=description,
        metadata_=metadata or {},
        status=OrderStatus.PENDING,
        idempotency_owner=idempotency_owner if idempotency_key is not None else None,
        idempotency_key=idempotency_key,
    )
    session.add(order)
    await session.flush()
    session.add(
        OrderHistory(order_id=order.id, from_status=None, to_status=order.status, source=source)
    )
    await session.flush()
    return order


async def get_order(session: AsyncSession, order_id: str, *, for_update: bool = False) -> Order:
    order = await _one(session, Order.id == order_id, for_update=for_update)
    if order is None:
        raise NotFound(f"No such order: '{order_id}'", param="id")
    return order


async def find_order_for_idempotency_key(
    session: AsyncSession, owner: str, key: str
) -> Order | None:
    """The order a caller's request with this `Idempotency-Key` created, if any."""
    return await session.scalar(
        select(Order).where(Order.idempotency_owner == owner, Order.idempotency_key == key)
    )


async def discard_order(session: AsyncSession, order: Order) -> None:
    """Delete an order that never got a Stripe object (Stripe refused to create it)."""
    await session.execute(delete(OrderHistory).where(OrderHistory.order_id == order.id))
    await session.execute(delete(Order).where(Order.id == order.id))


async def unsettled_order_ids(session: AsyncSession, created_before: datetime) -> list[str]:
    """Orders not in a final state, created before the given moment, oldest first."""
    rows = await session.scalars(
        select(Order.id)
        .where(Order.status.not_in([s.value for s in FINAL]), Order.created_at < created_before)
        .order_by(Order.created_at, Order.id)
    )
    return list(rows)


async def find_order_for_payment_intent(
    session: AsyncSession, payment_intent: str, *, for_update: bool = True
) -> Order | None:
    return await _one(session, Order.payment_intent == payment_intent, for_update=for_update)


async def find_order_for_checkout_session(
    session: AsyncSession, checkout_session: str, *, for_update: bool = True
) -> Order | None:
    return await _one(session, Order.checkout_session == checkout_session, for_update=for_update)


async def _one(
    session: AsyncSession, condition: ColumnElement[bool], *, for_update: bool
) -> Order | None:
    """One order; `for_update` holds it until the transaction ends. Postgres locks the row;
    SQLite has no row locks, so a no-op write first takes its database write lock, which other
    writers (webhooks, replicas) then wait for in the same way."""
    query = select(Order).where(condition)
    if for_update:
        if is_postgres(session):
            query = query.with_for_update()
        else:
            await session.execute(
                update(Order).where(condition).values(updated_at=Order.updated_at)
            )
    return await session.scalar(query.execution_options(populate_existing=True))


async def history_of(session: AsyncSession, order_id: str) -> Sequence[OrderHistory]:
    rows = await session.scalars(
        select(OrderHistory).where(OrderHistory.order_id == order_id).order_by(OrderHistory.id)
    )
    return rows.all()


async def with_history(session: AsyncSession, order_id: str) -> Order:
    order = await session.scalar(
        select(Order).where(Order.id == order_id).options(selectinload(Order.history))
    )
    if order is None:
        raise NotFound(f"No such order: '{order_id}'", param="id")
    return order


async def list_orders(
    session: AsyncSession,
    *,
    status: OrderStatus | None = None,
    customer: str | None = None,
    limit: int = 10,
    starting_after: str | None = None,
) -> tuple[Sequence[Order], bool]:
    """A page of orders with their history, newest first, and whether more follow."""
    query = select(Order).options(selectinload(Order.history))
    if status is not None:
        query = query.where(Order.status == status)
    if customer is not None:
        query = query.where(Order.customer == customer)
    if starting_after is not None:
        cursor = await session.scalar(select(Order).where(Order.id == starting_after))
        if cursor is None:
            raise InvalidRequest(
                f"No such order: '{starting_after}'",
                code="resource_missing",
                param="starting_after",
            )
        query = query.where(
            or_(
                Order.created_at < cursor.created_at,
                and_(Order.created_at == cursor.created_at, Order.id < cursor.id),
            )
        )
    query = query.order_by(Order.created_at.desc(), Order.id.desc()).limit(limit + 1)
    orders = (await session.scalars(query)).all()
    return orders[:limit], len(orders) > limit


async def move(session: AsyncSession, order: Order, target: OrderStatus, source: str) -> Decision:
    """Apply a transition if the state machine allows it, with its history entry."""
    decision = decide(OrderStatus(order.status), target)
    if decision is Decision.APPLY:
        session.add(
            OrderHistory(
                order_id=order.id, from_status=order.status, to_status=target, source=source
            )
        )
        record_transition(order.id, order.status, target, source)
        order.status = target
        await session.flush()
    return decision


async def sync_payment_intent(
    session: AsyncSession,
    order: Order,
    intent: dict[str, Any],
    source: str,
    *,
    failed: bool = False,
) -> Decision:
    """Record what Stripe says of the order's payment intent (the mirror row, the amounts) and
    move the order to the status it implies. `failed` marks a `payment_failed` report."""
    mirror = await session.scalar(
        select(PaymentIntent).where(PaymentIntent.stripe_id == intent["id"])
    )
    data = {k: v for k, v in intent.items() if k != "client_secret"}
    fields = {
        "status": intent["status"],
        "amount": intent["amount"],
        "amount_received": intent.get("amount_received") or 0,
        "amount_capturable": intent.get("amount_capturable") or 0,
        "currency": intent["currency"],
        "customer": _id(intent.get("customer")),
        "capture_method": intent.get("capture_method"),
        "latest_charge": _id(intent.get("latest_charge")),
        "created": intent["created"],
        "metadata_": dict(intent.get("metadata") or {}),
        "data": data,
    }
    target = status_for_payment_intent(intent["status"], failed=failed)
    behind = target is not None and decide(OrderStatus(order.status), target) is Decision.STALE
    if mirror is None:
        session.add(PaymentIntent(stripe_id=intent["id"], order_id=order.id, **fields))
    elif not behind and not _is_stale(mirror, intent):
        for name, value in fields.items():
            setattr(mirror, name, value)
    if order.payment_intent is None:
        order.payment_intent = intent["id"]
    order.amount_received = max(order.amount_received, fields["amount_received"])
    if target is None:
        await session.flush()
        return Decision.SAME
    return await move(session, order, target, source)


async def apply_refunded_amount(
    session: AsyncSession, order: Order, amount_refunded: int, source: str
) -> Decision:
    """Take the charge's refunded total (it only grows) and move to (partially_)refunded."""
    order.amount_refunded = max(order.amount_refunded, amount_refunded)
    target = status_for_refunds(order.amount_received or order.amount, order.amount_refunded)
    if target is None:
        await session.flush()
        return Decision.SAME
    return await move(session, order, target, source)


def _id(value: Any) -> str | None:
    if isinstance(value, dict):
        return str(value["id"])
    return str(value) if value else None


def _is_stale(mirror: PaymentIntent, intent: dict[str, Any]) -> bool:
    """A snapshot older than the mirror: anything but the final status once it is final."""
    return mirror.status in ("succeeded", "canceled") and intent["status"] != mirror.status


async def record_refund(session: AsyncSession, order: Order, refund: dict[str, Any]) -> None:
    """Create or update the local mirror of a Stripe refund."""
    row = await session.scalar(select(Refund).where(Refund.stripe_id == refund["id"]))
    if row is None:
        session.add(
            Refund(
                stripe_id=refund["id"],
                order_id=order.id,
                payment_intent=_id(refund.get("payment_intent")) or order.payment_intent or "",
                amount=refund["amount"],
                currency=refund["currency"],
                status=refund.get("status"),
                reason=refund.get("reason"),
            )
        )
    else:
        row.status = refund.get("status")
        row.reason = refund.get("reason")
    await session.flush()


# A Checkout Session's `status` and `payment_status` before they settle.
_EARLY = frozenset({None, "open", "unpaid"})


async def record_checkout_session(
    session: AsyncSession, order: Order | None, checkout: dict[str, Any]
) -> None:
    """Create or update the local mirror of a Checkout Session (and link its payment intent)."""
    row = await session.scalar(
        select(CheckoutSession).where(CheckoutSession.stripe_id == checkout["id"])
    )
    fields = {
        "mode": checkout["mode"],
        "status": checkout.get("status"),
        "payment_status": checkout.get("payment_status"),
        "customer": _id(checkout.get("customer")),
        "payment_intent": _id(checkout.get("payment_intent")),
        "subscription": _id(checkout.get("subscription")),
        "amount_total": checkout.get("amount_total"),
        "currency": checkout.get("currency"),
        "url": checkout.get("url"),
    }
    if row is None:
        session.add(
            CheckoutSession(
                stripe_id=checkout["id"], order_id=order.id if order else None, **fields
            )
        )
    else:
        for name, value in fields.items():
            if name in ("status", "payment_status"):
                # Events arrive in any order: a session that is complete (or paid) stays so.
                if not (getattr(row, name) not in _EARLY and value in _EARLY):
                    setattr(row, name, value)
            elif value is not None:
                setattr(row, name, value)
    if order is not None:
        order.checkout_session = checkout["id"]
        if fields["payment_intent"] and order.payment_intent is None:
            order.payment_intent = fields["payment_intent"]
        if fields["customer"] and order.customer is None:
            order.customer = fields["customer"]
    await session.flush()
