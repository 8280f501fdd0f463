"""Refunds of an order's payment: checked against the order before Stripe is called, and
applied to the order at once (`partially_refunded` / `refunded`); Stripe's `charge.refunded`
webhook then agrees.

Like `POST /payment-intents`, `create_refund` commits a row of its own BEFORE it calls Stripe: a
`RefundRequest`, numbered per order, whose `stripe_key` is the idempotency key Stripe gets. With
the caller's `Idempotency-Key` that key is `order:{id}:refund:key:{sha256(caller + key)[:32]}`;
without one it is `order:{id}:refund:{n}`, `n` the request's number (so a refund recorded by a
webhook, or made on the Dashboard, never shifts the key of the next request onto a used one).
When Stripe's answer is lost (503 `stripe_outcome_unknown`) the request rolls back but the row
stays, unanswered: the retry with the same `Idempotency-Key` finds it and sends Stripe the same
key, so Stripe answers with the refund it made (or makes it, once), even if its webhooks have
recorded that refund meanwhile. Such a retry is not checked against what is left to refund (the
lost refund may be in it already); Stripe checks it. Without an `Idempotency-Key`, every request
is a new refund. When Stripe (or our check under the order's lock) refuses, the row is deleted
in the committed request and the router renders the error.

The order's `amount_refunded` is the larger of what Stripe's `charge.refunded` reported and the
sum of the refunds recorded for it, so a refund seen twice (its webhook, then the answer to a
retry) is counted once."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from stripe.params import RefundCreateParams

from app.errors import (
    AppError,
    CardDeclined,
    Conflict,
    IdempotencyKeyReused,
    InvalidRequest,
    NotFound,
    OutcomeUnknown,
    StripeFailure,
    StripeUnavailable,
)
from app.models import Order, OrderStatus, Refund, RefundRequest
from app.orders.service import (
    apply_refunded_amount,
    find_order_for_payment_intent,
    get_order,
    record_refund,
)
from app.pages import newest_first
from app.refunds.schemas import RefundCreate
from app.stripe_gateway import StripeGateway

REFUNDABLE = (OrderStatus.PAID, OrderStatus.PARTIALLY_REFUNDED)
NOT_REFUNDED = ("failed", "canceled")  # refund statuses that gave no money back
SOURCE = "api:POST /refunds"


@dataclass(frozen=True)
class Outcome:
    """Stripe's refund and its order; or the refusal (committed, with the request row gone)
    that the router renders."""

    refund: dict[str, Any]
    order_id: str
    error: AppError | None = None


@dataclass(frozen=True)
class _Reserved:
    order_id: str
    request_id: int
    retry: bool  # an earlier request with the caller's Idempotency-Key made this row


async def create_refund(
    session: AsyncSession,
    stripe: StripeGateway,
    body: RefundCreate,
    *,
    caller: str,
    idempotency_key: str | None = None,
) -> Outcome:
    reserved = await _reserve(session, body, caller, idempotency_key)
    order = await get_order(session, reserved.order_id, for_update=True)
    request = await session.get(RefundRequest, reserved.request_id, populate_existing=True)
    if request is None:
        # Refused meanwhile by a concurrent retry with the same key: this request is new again.
        raise Conflict(
            "A request with this Idempotency-Key was refused meanwhile; retry.",
            code="idempotency_key_in_use",
        )
    if request.refund is not None:
        # Answered before; the stored response was lost: answer with that refund.
        refund = (await stripe.retrieve_refund(request.refund)).to_dict()
        await _apply(session, order, refund)
        return Outcome(refund, order.id)
    if not reserved.retry:
        try:
            _check_refundable(order, body.amount)
        except AppError as exc:
            await session.delete(request)
            return Outcome({}, order.id, error=exc)
    params = cast(RefundCreateParams, body.model_dump(exclude_none=True))
    try:
        refund = (await stripe.create_refund(params, request.stripe_key)).to_dict()
    except OutcomeUnknown as exc:
        exc.message = (
            "Stripe's answer to this refund was lost: the refund may or may not have been made. "
            "Retry with the same Idempotency-Key: it answers with the refund Stripe made, or "
            "makes it once. Without an Idempotency-Key a retry is a new refund; check "
            f"GET /refunds?payment_intent={body.payment_intent} first."
        )
        exc.extra["order_id"] = order.id
        raise
    except StripeUnavailable as exc:
        exc.extra["order_id"] = order.id
        raise
    except (InvalidRequest, NotFound, Conflict, CardDeclined, StripeFailure) as exc:
        await session.delete(request)
        return Outcome({}, order.id, error=exc)
    request.refund = str(refund["id"])
    await _apply(session, order, refund)
    return Outcome(refund, order.id)


async def _reserve(
    session: AsyncSession, body: RefundCreate, caller: str, key: str | None
) -> _Reserved:
    """Check the refund against the order and commit its `RefundRequest` in a transaction of
    its own; or find the one an earlier request with the caller's `key` committed."""
    fingerprint = hashlib.sha256(
        json.dumps(body.model_dump(exclude_none=True), sort_keys=True).encode()
    ).hexdigest()
    engine = session.bind
    assert isinstance(engine, AsyncEngine)
    async with AsyncSession(engine, expire_on_commit=False) as own:
        for _ in range(3):
            order = await find_order_for_payment_intent(own, body.payment_intent, for_update=True)
            if order is None:
                raise NotFound(
                    f"No order has the payment intent '{body.payment_intent}'.",
                    param="payment_intent",
                )
            stripe_key: str | None = None
            if key is not None:
                digest = hashlib.sha256((caller + key).encode()).hexdigest()[:32]
                stripe_key = f"order:{order.id}:refund:key:{digest}"
                found = await own.scalar(
                    select(RefundRequest).where(RefundRequest.stripe_key == stripe_key)
                )
                if found is not None:
                    if found.fingerprint != fingerprint:
                        raise IdempotencyKeyReused(
                            f"Idempotency-Key '{key}' was already used for another refund of "
                            f"order {order.id}; use a new key for a new refund."
                        )
                    return _Reserved(order.id, found.id, retry=True)
            _check_refundable(order, body.amount)
            number = await _next_number(own, order.id)
            request = RefundRequest(
                order_id=order.id,
                number=number,
                stripe_key=stripe_key or f"order:{order.id}:refund:{number}",
                fingerprint=fingerprint,
            )
            own.add(request)
            try:
                await own.commit()
            except IntegrityError:
                # A concurrent request took the number (or the same key): look again.
                await own.rollback()
                continue
            return _Reserved(order.id, request.id, retry=False)
    raise Conflict("Too many concurrent refunds of this order; retry.", code="lock_timeout")


async def _next_number(session: AsyncSession, order_id: str) -> int:
    """After every number used so far, including the keys `order:{id}:refund:{n}` of refunds
    made before requests were numbered (n was the count of recorded refunds)."""
    last = await session.scalar(
        select(func.max(RefundRequest.number)).where(RefundRequest.order_id == order_id)
    )
    recorded = await session.scalar(
        select(func.count()).select_from(Refund).where(Refund.order_id == order_id)
    )
    return max(last or 0, recorded or 0) + 1


async def _apply(session: AsyncSession, order: Order, refund: dict[str, Any]) -> None:
    await record_refund(session, order, refund)
    recorded = await session.scalar(
        select(func.coalesce(func.sum(Refund.amount), 0)).where(
            Refund.order_id == order.id,
            or_(Refund.status.is_(None), Refund.status.not_in(NOT_REFUNDED)),
        )
    )
    await apply_refunded_amount(session, order, int(recorded or 0), SOURCE)


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
    return await newest_first(
        session, query, Refund, "refund", limit=limit, starting_after=starting_after
    )


def _check_refundable(order: Order, amount: int | None) -> None:
    """The order is paid, with money left to refund, and `amount` at most that."""
    if order.status not in REFUNDABLE:
        raise Conflict(
            f"Order {order.id} is {order.status}: only a paid or partially refunded order can "
            "be refunded.",
            code="order_not_refundable",
            param="payment_intent",
        )
    left = order.amount_received - order.amount_refunded
    if left <= 0:
        raise Conflict(
            f"Order {order.id} has nothing left to refund.",
            code="charge_already_refunded",
            param="payment_intent",
        )
    if amount is not None and amount > left:
        raise InvalidRequest(
            f"Refund amount ({amount}) is greater than what is left to refund on order "
            f"{order.id} ({left} {order.currency}).",
            code="amount_too_large",
            param="amount",
        )
