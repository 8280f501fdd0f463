"""Customers: create, read, update and list them; attach and list their payment methods."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from app.auth import Caller
from app.billing.entitlements import customer_entitlements
from app.customers import service
from app.customers.schemas import (
    CustomerCreate,
    CustomerList,
    CustomerRead,
    CustomerUpdate,
    EntitlementList,
    EntitlementRead,
    PaymentMethodAttach,
    PaymentMethodList,
    PaymentMethodRead,
)
from app.db import Session, Sessions
from app.errors import NotFound
from app.stripe_gateway import Gateway

router = APIRouter(prefix="/customers", tags=["customers"])

UNKNOWN: dict[str, Any] = {
    "description": "Stripe could not be reached or rate limited the service "
    "(`stripe_unavailable`), or its answer was lost (`stripe_outcome_unknown`): retry after "
    "`Retry-After` seconds with the same `Idempotency-Key`. `customer_row` names the service's "
    "record of the customer, kept for that retry."
}


@router.post("", summary="Create a customer", response_model=CustomerRead, responses={503: UNKNOWN})
async def create_customer(
    body: CustomerCreate, request: Request, sessions: Sessions, stripe: Gateway, caller: Caller
) -> CustomerRead:
    """Create a customer on Stripe and keep it in the service's database.

    Takes Stripe's `Customer.create` parameters (`email`, `name`, `phone`, `description`,
    `metadata`, `address`, `shipping`, `payment_method`, `invoice_settings`…) and answers with
    Stripe's Customer object; its `id` (`cus_…`) is the id to use on every other customer call.

    `test_clock` (test mode and the sandbox only) runs the customer's subscriptions on a Stripe
    test clock, so billing can be driven over simulated time.

    Send an `Idempotency-Key` header: if Stripe's answer is lost (503 `stripe_outcome_unknown`),
    the same request with the same key answers with the customer Stripe made, never a second
    one, for 23 hours (then a 409 `customer_not_resumable`: Stripe may have forgotten the key).
    The same key with other parameters is refused (400 `idempotency_key_reused`).
    """
    key = (request.headers.get("idempotency-key") or "").strip() or None
    customer = await service.create_customer(
        sessions,
        stripe,
        body,
        caller=caller,
        idempotency_key=key,
        live=request.app.state.settings.live,
    )
    return CustomerRead.model_validate(customer)


@router.get("", summary="List customers", response_model=CustomerList)
async def list_customers(
    session: Session,
    caller: Caller,
    email: Annotated[str | None, Query(max_length=512, description="Only this email.")] = None,
    limit: Annotated[int, Query(ge=1, le=100, description="Page size, 1 to 100.")] = 10,
    starting_after: Annotated[
        str | None, Query(description="The last customer id of the previous page.")
    ] = None,
) -> CustomerList:
    """The customers created through this service, newest first, as Stripe last returned them,
    answered from the service's database. Page with `limit` and `starting_after`."""
    data, has_more = await service.list_customers(
        session, email=email, limit=limit, starting_after=starting_after
    )
    return CustomerList(data=[CustomerRead.model_validate(c) for c in data], has_more=has_more)


@router.get("/{customer_id}", summary="Retrieve a customer", response_model=CustomerRead)
async def get_customer(
    customer_id: str, session: Session, stripe: Gateway, caller: Caller
) -> CustomerRead:
    """The customer as Stripe has it now (the local copy is refreshed on the way). Customers
    not created through this service are 404."""
    return CustomerRead.model_validate(await service.get_customer(session, stripe, customer_id))


@router.patch("/{customer_id}", summary="Update a customer", response_model=CustomerRead)
async def update_customer(
    customer_id: str, body: CustomerUpdate, session: Session, stripe: Gateway, caller: Caller
) -> CustomerRead:
    """Change the fields sent, with Stripe's `Customer.update` parameters. Set the default
    payment method with `invoice_settings.default_payment_method`: it must already be attached
    to the customer (Stripe's 400 otherwise). Sending the same change again replays it."""
    return CustomerRead.model_validate(
        await service.update_customer(session, stripe, customer_id, body)
    )


@router.post(
    "/{customer_id}/payment-methods",
    summary="Attach a payment method",
    response_model=PaymentMethodRead,
)
async def attach_payment_method(
    customer_id: str, body: PaymentMethodAttach, session: Session, stripe: Gateway, caller: Caller
) -> PaymentMethodRead:
    """Attach a payment method (`pm_…`, or a test token such as `pm_card_visa`) to the customer
    and answer with the attached PaymentMethod. A declined card is Stripe's 402."""
    return PaymentMethodRead.model_validate(
        await service.attach_payment_method(session, stripe, customer_id, body)
    )


@router.get(
    "/{customer_id}/payment-methods",
    summary="List a customer's payment methods",
    response_model=PaymentMethodList,
)
async def list_payment_methods(
    customer_id: str, session: Session, stripe: Gateway, caller: Caller
) -> PaymentMethodList:
    """The payment methods attached to the customer, from Stripe (the first page of up to ten,
    as Stripe lists them)."""
    listed = await service.list_payment_methods(session, stripe, customer_id)
    return PaymentMethodList(
        data=[PaymentMethodRead.model_validate(pm) for pm in listed["data"]],
        has_more=bool(listed.get("has_more")),
        url=f"/customers/{customer_id}/payment-methods",
    )


@router.get(
    "/{customer_id}/entitlements",
    summary="What a customer is entitled to now",
    response_model=EntitlementList,
)
async def get_entitlements(
    customer_id: str, request: Request, session: Session, caller: Caller
) -> EntitlementList:
    """Each product the customer may use now, with the subscription that entitles it, its
    status and `until` (the end of its current period). Answered from the service's database
    alone, without calling Stripe: cheap enough to ask on every request of the customer's.

    `active` and `trialing` subscriptions entitle, whatever their period end says: Stripe moves
    the status when a period renews or a payment fails, and the webhooks bring it here (a
    webhook missed is caught by `python -m app reconcile`). A `past_due` subscription entitles
    only for `SUBSCRIPTION_GRACE_SECONDS` (default 0: not at all) from the moment it went past
    due. For a customer on a Stripe test clock, "now" is the clock's time (`as_of`).

    Any customer of the Stripe account with a subscription is known, however it subscribed
    (here or through Checkout); a customer the service has never seen is 404."""
    grace: int = request.app.state.settings.subscription_grace_seconds
    found = await customer_entitlements(session, customer_id, grace)
    if found is None:
        raise NotFound(f"No such customer: '{customer_id}'", param="id")
    as_of, entitlements = found
    return EntitlementList(
        customer=customer_id,
        as_of=as_of,
        data=[EntitlementRead.model_validate(e, from_attributes=True) for e in entitlements],
    )
