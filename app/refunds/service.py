"""Refunds of an order's payment: checked against the order before Stripe is called, keyed by
the order and the number of its refunds (`order:{id}:refund:{n}`), and applied to the order at
once (`partially_refunded` / `refunded`); Stripe's `charge.refunded` webhook then agrees."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from stripe.params import RefundCreateParams

from app.errors import Conflict, InvalidRequest, NotFound
from app.models import Order, OrderStatus, Refund
from app.orders.service import (
    apply_refunded_amount,
    find_order_for_payment_intent,
    get_order,
    record_refund,
)
from app.refunds.schemas import RefundCreate
from app.stripe_gateway import StripeGateway

REFUNDABLE = (OrderStatus.PAID, OrderStatus.PARTIALLY_REFUNDED)
NOT_REFUNDED = ("failed", "canceled")  # refund statuses that gave no money back
SOURCE = "api:POST /refunds"


@dataclass(frozen=True)
class Outcome:
    refund: dict[str, Any]
    order_id: str


async def create_refund(
    session: AsyncSession, stripe: StripeGateway, body: RefundCreate
) -> Outcome:
    order = await _refundable_order(session, body.payment_intent)
    left = order.amount_received - order.amount_refunded
    if body.amount is not None and body.amount > left:
        raise InvalidRequest(
            f"Refund amount ({body.amount}) is greater than what is left to refund on order "
            f"{order.id} ({left} {order.currency}).",
            code="amount_too_large",
            param="amount",
        )
    refunds_so_far = await session.scalar(
        select(func.count()).select_from(Refund).where(Refund.order_id == order.id)
    )
    key = f"order:{order.id}:refund:{(refunds_so_far or 0) + 1}"
    params = cast(RefundCreateParams, body.model_dump(exclude_none=True))
    refund = (await stripe.create_refund(params, key)).to_dict()
    await record_refund(session, order, refund)
    if refund.get("status") not in NOT_REFUNDED:
        await apply_refunded_amount(
            session, order, order.amount_refunded + int(refund["amount"]), SOURCE
        )
    return Outcome(refund, order.id)


async def get_refund(session: AsyncSession, stripe: StripeGateway, refund_id: str) -> Outcome:
    row = await session.scalar(select(Refund).where(Refund.stripe_id == refund_id))
    if row is None:
        raise NotFound(f"No such refund: '{refund_id}'", param="id")
    refund = (await stripe.retrieve_refund(refund_id)).to_dict()
    await record_refund(session, await get_order(session, row.order_id), refund)
    return Outcome(refund, row.order_id)


async def list_refunds(
    session: AsyncSession,
    *,
    payment_intent: str | None = None,
    limit: int = 10,
    starting_after: str | None = None,
) -> tuple[Sequence[Refund], bool]:
    """A page of recorded refunds, newest first, and whether more follow."""
    query = select(Refund)
    if payment_intent is not None:
        query = query.where(Refund.payment_intent == payment_intent)
    if starting_after is not None:
        cursor = await session.scalar(select(Refund).where(Refund.stripe_id == starting_after))
        if cursor is None:
            raise InvalidRequest(
                f"No such refund: '{starting_after}'",
                code="resource_missing",
                param="starting_after",
            )
        query = query.where(Refund.id < cursor.id)
    rows = (await session.scalars(query.order_by(Refund.id.desc()).limit(limit + 1))).all()
    return rows[:limit], len(rows) > limit


async def _refundable_order(session: AsyncSession, payment_intent: str) -> Order:
    """The payment intent's order, locked, with money left to refund."""
    order = await find_order_for_payment_intent(session, payment_intent, for_update=True)
    if order is None:
        raise NotFound(
            f"No order has the payment intent '{payment_intent}'.", param="payment_intent"
        )
    if order.status not in REFUNDABLE:
        raise Conflict(
            f"Order {order.id} is {order.status}: only a paid or partially refunded order can "
            "be refunded.",
            code="order_not_refundable",
            param="payment_intent",
        )
    if order.amount_received - order.amount_refunded <= 0:
        raise Conflict(
            f"Order {order.id} has nothing left to refund.",
            code="charge_already_refunded",
            param="payment_intent",
        )
    return order
