"""Checkout Sessions: Stripe-hosted payment pages; a payment-mode session pays for an order."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request

from app.auth import Caller
from app.checkout_sessions import service
from app.checkout_sessions.schemas import CheckoutSessionCreate, CheckoutSessionRead
from app.db import Session, Sessions
from app.stripe_gateway import Gateway

router = APIRouter(prefix="/checkout-sessions", tags=["checkout sessions"])

CONFLICT: dict[str, Any] = {
    "description": "A request with this `Idempotency-Key` is still running "
    "(`idempotency_key_in_use`: retry after `Retry-After`), or what the key made can no longer "
    "be paid or resumed (`order_not_payable`, `order_not_resumable`, `checkout_not_resumable`: "
    "use a new key)."
}
UNKNOWN: dict[str, Any] = {
    "description": "Stripe could not be reached or rate limited the service "
    "(`stripe_unavailable`), or its answer was lost (`stripe_outcome_unknown`): retry after "
    "`Retry-After` seconds with the same `Idempotency-Key`. `order_id` (payment mode) or "
    "`checkout_row` (subscription and setup modes) names what the service kept for that retry."
}
Expandable = Literal["line_items", "customer", "payment_intent", "subscription", "setup_intent"]


@router.post(
    "",
    summary="Create a Checkout Session",
    response_model=CheckoutSessionRead,
    responses={409: CONFLICT, 503: UNKNOWN},
)
async def create_checkout_session(
    body: CheckoutSessionCreate,
    request: Request,
    sessions: Sessions,
    stripe: Gateway,
    caller: Caller,
) -> CheckoutSessionRead:
    """Create a Stripe-hosted checkout page (redirect the customer to the answer's `url`), with
    Stripe's `checkout.Session.create` parameters.

    - `payment` mode creates an order for the line items' total, computed by the service
      (`price_data` as given, prices read from Stripe) before Stripe is called; the answer's
      `order_id` names it, and Stripe's webhooks move it to `paid` when the customer pays. The
      order id is the session's `client_reference_id` and is in the session's and its payment
      intent's metadata under `service_order_id` (a reserved key).
    - `subscription` mode starts a subscription (`subscription_data.trial_period_days`,
      `subscription_data.metadata`) and `setup` mode saves a card (`currency` required); neither
      has an order (`order_id` is null).

    Send an `Idempotency-Key` header: if Stripe's answer is lost (503 `stripe_outcome_unknown`,
    naming the `order_id`, or in subscription and setup modes the `checkout_row`, kept for the
    retry), the same request with the same key answers with the session Stripe made, never a
    second one. The same key with another request is refused (400 `idempotency_key_reused`).
    """
    key = (request.headers.get("idempotency-key") or "").strip() or None
    outcome = await service.create(sessions, stripe, body, caller=caller, idempotency_key=key)
    return CheckoutSessionRead.of(outcome.checkout, outcome.order_id)


@router.get(
    "/{session_id}", summary="Retrieve a Checkout Session", response_model=CheckoutSessionRead
)
async def get_checkout_session(
    session_id: str,
    session: Session,
    stripe: Gateway,
    caller: Caller,
    expand: Annotated[
        list[Expandable] | None,
        Query(description="Objects to include in full: `expand=line_items&expand=customer`."),
    ] = None,
) -> CheckoutSessionRead:
    """The session as Stripe has it now, with the objects named in `expand` (`line_items`,
    `customer`, `payment_intent`, `subscription`, `setup_intent`) included in full. Sessions
    not created through this service are 404."""
    outcome = await service.get_checkout_session(session, stripe, session_id, list(expand or []))
    return CheckoutSessionRead.of(outcome.checkout, outcome.order_id, outcome.subscription)


@router.post(
    "/{session_id}/expire", summary="Expire a Checkout Session", response_model=CheckoutSessionRead
)
async def expire_checkout_session(
    session_id: str, session: Session, stripe: Gateway, caller: Caller
) -> CheckoutSessionRead:
    """Close an open session so it can no longer be paid; its order becomes `expired`. A session
    that is already complete or expired is Stripe's 400."""
    outcome = await service.expire_checkout_session(session, stripe, session_id)
    return CheckoutSessionRead.of(outcome.checkout, outcome.order_id)
