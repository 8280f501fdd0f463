"""Refunds: give back all or part of an order's payment, and read them back."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse

from app.auth import Caller
from app.db import Session
from app.models import Refund
from app.models.base import aware
from app.payment_intents.router import ERROR
from app.refunds import service
from app.refunds.schemas import RefundCreate, RefundList, RefundRead, RefundSummary
from app.stripe_gateway import Gateway

router = APIRouter(prefix="/refunds", tags=["refunds"])


UNKNOWN: dict[str, Any] = {
    "description": "Stripe could not be reached or rate limited the service "
    "(`stripe_unavailable`), or its answer was lost (`stripe_outcome_unknown`: the refund may "
    "have been made). Retry after `Retry-After` seconds with the same `Idempotency-Key`; "
    "`order_id` names the order."
}


@router.post(
    "",
    summary="Refund a payment",
    response_model=RefundRead,
    responses={400: ERROR, 404: ERROR, 409: ERROR, 503: UNKNOWN},
)
async def create_refund(
    body: RefundCreate, request: Request, session: Session, stripe: Gateway, caller: Caller
) -> RefundRead | JSONResponse:
    """Refund the payment intent's charge: `amount` in minor units, or everything not refunded
    yet when omitted; `reason` is `duplicate`, `fraudulent` or `requested_by_customer`.

    The order must be `paid` or `partially_refunded` (409 `order_not_refundable` otherwise) and
    `amount` at most what is left (400 `amount_too_large`); both are checked before Stripe is
    called. When the answer arrives the order is already `partially_refunded` or `refunded`.

    Send an `Idempotency-Key` header: if Stripe's answer is lost (503
    `stripe_outcome_unknown`), the same request with the same key answers with the refund Stripe
    made, never a second one. Without a key, every request is a new refund.
    """
    key = (request.headers.get("idempotency-key") or "").strip() or None
    outcome = await service.create_refund(session, stripe, body, caller=caller, idempotency_key=key)
    if outcome.error is not None:
        error = outcome.error
        return JSONResponse(status_code=error.status, content=error.body(), headers=error.headers)
    return RefundRead.of(outcome.refund, outcome.order_id)


@router.get("", summary="List refunds", response_model=RefundList)
async def list_refunds(
    session: Session,
    caller: Caller,
    payment_intent: Annotated[
        str | None, Query(max_length=255, description="Only the refunds of this payment intent.")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=100, description="Page size, 1 to 100.")] = 10,
    starting_after: Annotated[
        str | None, Query(description="The last refund id of the previous page.")
    ] = None,
) -> RefundList:
    """The refunds the service knows (made through it or reported by Stripe's webhooks), newest
    first, answered from the service's database. Page with `limit` and `starting_after`."""
    rows, has_more = await service.list_refunds(
        session, payment_intent=payment_intent, limit=limit, starting_after=starting_after
    )
    return RefundList(data=[_summary(row) for row in rows], has_more=has_more)


@router.get("/{refund_id}", summary="Retrieve a refund", response_model=RefundRead)
async def get_refund(
    refund_id: str, session: Session, stripe: Gateway, caller: Caller
) -> RefundRead:
    """The refund as Stripe has it now, with the order it belongs to. Refunds the service does
    not know are 404."""
    outcome = await service.get_refund(session, stripe, refund_id)
    return RefundRead.of(outcome.refund, outcome.order_id)


def _summary(row: Refund) -> RefundSummary:
    return RefundSummary(
        id=row.stripe_id,
        amount=row.amount,
        currency=row.currency,
        payment_intent=row.payment_intent,
        reason=row.reason,
        status=row.status,
        order_id=row.order_id,
        created=int(aware(row.created_at).timestamp()),
    )
