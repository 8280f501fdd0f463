"""Subscriptions: create, change and cancel them on Stripe; read them from the local mirror."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request

from app.auth import Caller
from app.db import Session, Sessions
from app.stripe_gateway import Gateway
from app.subscriptions import service
from app.subscriptions.schemas import (
    SubscriptionCreate,
    SubscriptionList,
    SubscriptionRead,
    SubscriptionUpdate,
)

router = APIRouter(prefix="/subscriptions", tags=["subscriptions"])

UNKNOWN: dict[str, Any] = {
    "description": "Stripe could not be reached or rate limited the service "
    "(`stripe_unavailable`), or its answer was lost (`stripe_outcome_unknown`): retry after "
    "`Retry-After` seconds with the same `Idempotency-Key`. `subscription_row` names the "
    "service's record of the subscription, kept for that retry."
}
ENDED: dict[str, Any] = {
    "description": "The subscription is `canceled` or `incomplete_expired` "
    "(`subscription_ended`), or a request with this `Idempotency-Key` is still running "
    "(`idempotency_key_in_use`: retry after `Retry-After`)."
}
Status = Literal[
    "incomplete",
    "incomplete_expired",
    "trialing",
    "active",
    "past_due",
    "canceled",
    "unpaid",
    "paused",
]


def _key(request: Request) -> str | None:
    return (request.headers.get("idempotency-key") or "").strip() or None


@router.post(
    "", summary="Create a subscription", response_model=SubscriptionRead, responses={503: UNKNOWN}
)
async def create_subscription(
    body: SubscriptionCreate, request: Request, sessions: Sessions, stripe: Gateway, caller: Caller
) -> SubscriptionRead:
    """Subscribe a customer to one or more recurring prices, with Stripe's `Subscription.create`
    parameters (`customer`, `items`, `default_payment_method`, `trial_period_days`, `metadata`,
    `payment_behavior`). Answers with Stripe's Subscription object.

    When the customer must confirm the first payment (with `payment_behavior:
    "default_incomplete"`, or a card that needs authentication), the subscription is
    `incomplete` and the answer carries `client_secret`: confirm it with Stripe.js
    (`stripe.confirmPayment`). A declined first payment under `error_if_incomplete` is a 402 and
    no subscription.

    Send an `Idempotency-Key` header: if Stripe's answer is lost (503 `stripe_outcome_unknown`),
    the same request with the same key answers with the subscription Stripe made, never a
    second one, for 23 hours: later, Stripe may have forgotten the key, so the retry is a 409
    `subscription_not_resumable` (reconcile mirrors what Stripe made).
    """
    answer = await service.create_subscription(
        sessions, stripe, body, caller=caller, idempotency_key=_key(request)
    )
    return SubscriptionRead.of(answer.subscription, answer.checkout_session, answer.client_secret)


@router.get("", summary="List subscriptions", response_model=SubscriptionList)
async def list_subscriptions(
    session: Session,
    caller: Caller,
    customer: Annotated[
        str | None, Query(max_length=255, description="Only this customer's (`cus_…`).")
    ] = None,
    status: Annotated[Status | None, Query(description="Only in this status.")] = None,
    limit: Annotated[int, Query(ge=1, le=100, description="Page size, 1 to 100.")] = 10,
    starting_after: Annotated[
        str | None, Query(description="The last subscription id of the previous page.")
    ] = None,
) -> SubscriptionList:
    """Every subscription of the Stripe account (made here, by Checkout or elsewhere), newest
    first as the service learned of them, as the service last saw them: answered from its
    database, kept current by Stripe's webhooks. Page with `limit` and `starting_after`."""
    page, has_more = await service.list_subscriptions(
        session, customer=customer, status=status, limit=limit, starting_after=starting_after
    )
    return SubscriptionList(
        data=[SubscriptionRead.of(a.subscription, a.checkout_session) for a in page],
        has_more=has_more,
    )


@router.get(
    "/{subscription_id}", summary="Retrieve a subscription", response_model=SubscriptionRead
)
async def get_subscription(
    subscription_id: str, session: Session, caller: Caller
) -> SubscriptionRead:
    """The subscription as the service last saw it (from its database, kept current by Stripe's
    webhooks), with `checkout_session`: the Checkout Session that made it, if one did."""
    answer = await service.get_subscription(session, subscription_id)
    return SubscriptionRead.of(answer.subscription, answer.checkout_session)


@router.post(
    "/{subscription_id}",
    summary="Update a subscription",
    response_model=SubscriptionRead,
    responses={409: ENDED},
)
async def update_subscription(
    subscription_id: str,
    body: SubscriptionUpdate,
    request: Request,
    session: Session,
    stripe: Gateway,
    caller: Caller,
) -> SubscriptionRead:
    """Change a price or quantity (`items`, each naming its `id` unless the subscription has one
    item; never prorated), the `default_payment_method`, `cancel_at_period_end` (`true` ends it
    at the period's end, `false` undoes that) or `metadata`. Only the fields sent change.

    With an `Idempotency-Key`, a retry of a request whose answer was lost is the same change
    at Stripe, made once."""
    answer = await service.update_subscription(
        session, stripe, subscription_id, body, caller=caller, idempotency_key=_key(request)
    )
    return SubscriptionRead.of(answer.subscription, answer.checkout_session)


@router.post(
    "/{subscription_id}/cancel", summary="Cancel a subscription", response_model=SubscriptionRead
)
async def cancel_subscription(
    subscription_id: str, request: Request, session: Session, stripe: Gateway, caller: Caller
) -> SubscriptionRead:
    """End the subscription now (status `canceled`): no further invoices, and no entitlement
    from it. Canceling a canceled subscription answers it as it is. To end it at the period's
    end instead, update it with `cancel_at_period_end: true`."""
    answer = await service.cancel_subscription(
        session, stripe, subscription_id, caller=caller, idempotency_key=_key(request)
    )
    return SubscriptionRead.of(answer.subscription, answer.checkout_session)
