"""The demo's plans: a subscription on a test clock of its own, paid on Checkout's hosted page, then
moved through Stripe Billing by advancing that clock a period at a time (sandbox only, like the
rest of the demo). Everything goes through the service's own paths (customers, checkout sessions,
subscriptions) and the page reads the local mirror the webhooks keep."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.billing.entitlements import customer_entitlements
from app.checkout_sessions import service as checkout_sessions
from app.checkout_sessions.schemas import CheckoutSessionCreate, LineItem
from app.customers import service as customers
from app.customers.schemas import CustomerCreate, PaymentMethodAttach
from app.demo.service import DEMO_METADATA, Item, is_demo, offered_prices
from app.errors import InvalidRequest, NotFound
from app.models import CheckoutSession, Customer, Invoice, Subscription
from app.stripe_gateway import StripeGateway
from app.subscriptions import service as subscriptions
from app.subscriptions.schemas import SubscriptionUpdate

CALLER = "demo"
# Stripe's test card whose attachment succeeds and whose every charge is declined.
FAILING_CARD = "pm_card_chargeCustomerFail"
# How far past the period end an advance goes: a renewal invoice stays a draft for about an hour
# before Stripe finalizes and charges it.
PAST_RENEWAL = 2 * 3600


@dataclass(frozen=True)
class Plan:
    item: Item
    interval: str  # "month", or "3 months"


async def plans(stripe: StripeGateway) -> list[Plan]:
    """The active recurring prices of active products, by name."""
    found = []
    for price, item in await offered_prices(stripe, "recurring"):
        recurring = price.get("recurring") or {}
        count = recurring.get("interval_count") or 1
        interval = recurring.get("interval", "month")
        found.append(Plan(item, interval if count == 1 else f"{count} {interval}s"))
    return found


async def subscribe(
    sessions: async_sessionmaker[AsyncSession],
    stripe: StripeGateway,
    price: str,
    *,
    success_url: str,
    cancel_url: str,
) -> str:
    """A customer on a new test clock and a subscription-mode Checkout Session for `price`; the
    url of its hosted page."""
    if not price:
        raise InvalidRequest("Pick a plan.", code="parameter_missing", param="price")
    if price not in {plan.item.price for plan in await plans(stripe)}:
        raise InvalidRequest(f"Not a plan: {price}.", code="parameter_invalid", param="price")
    clock = await stripe.create_test_clock(
        {"frozen_time": int(time.time()), "name": "Demo plan"}, f"demo:clock:{uuid.uuid4()}"
    )
    customer = await customers.create_customer(
        sessions,
        stripe,
        CustomerCreate(
            email="demo@example.com",
            name="Demo customer",
            test_clock=clock.id,
            metadata=DEMO_METADATA,
        ),
        caller=CALLER,
    )
    body = CheckoutSessionCreate(
        mode="subscription",
        customer=customer["id"],
        line_items=[LineItem(price=price, quantity=1)],
        success_url=success_url,
        cancel_url=cancel_url,
        metadata=DEMO_METADATA,
    )
    outcome = await checkout_sessions.create(sessions, stripe, body, caller=CALLER)
    url = outcome.checkout.get("url")
    if not isinstance(url, str):
        raise InvalidRequest("Stripe gave the session no hosted page.", code="no_hosted_page")
    return url


async def state(session: AsyncSession, checkout_session: str, grace: int) -> dict[str, Any]:
    """What the plan page shows: the subscription the session made (null until its webhook
    arrived), its invoices oldest first, and whether the customer is entitled now."""
    row, customer = await _demo_session(session, checkout_session)
    sub = await _subscription(session, row)
    invoices: list[dict[str, Any]] = []
    entitled = False
    now = None
    if sub is not None:
        listed = await session.scalars(
            select(Invoice).where(Invoice.subscription == sub.stripe_id).order_by(Invoice.id)
        )
        invoices = [
            {
                "id": invoice.stripe_id,
                "billing_reason": invoice.billing_reason,
                **_service_period(invoice),
                "amount_due": invoice.amount_due,
                "amount_paid": invoice.amount_paid,
                "currency": invoice.currency,
                "status": invoice.status,
                "attempt_count": invoice.attempt_count,
            }
            for invoice in listed
        ]
        judged = await customer_entitlements(session, customer, grace)
        if judged is not None:
            now, held = judged
            entitled = any(e.subscription == sub.stripe_id for e in held)
    return {
        "checkout_session": checkout_session,
        "subscription": None
        if sub is None
        else {
            "id": sub.stripe_id,
            "status": sub.status,
            "current_period_end": sub.current_period_end,
            "default_payment_method": sub.default_payment_method,
            "test_clock": sub.test_clock,
        },
        "invoices": invoices,
        "entitled": entitled,
        "now": now,
    }


def _service_period(invoice: Invoice) -> dict[str, int | None]:
    """The period an invoice bills for: its first line's. (An invoice's own `period_start/end`
    is the period that just ended; a subscription's first invoice has both at its creation.)"""
    lines = (invoice.data.get("lines") or {}).get("data") or []
    period = (lines[0].get("period") if lines else None) or {}
    return {
        "period_start": period.get("start", invoice.period_start),
        "period_end": period.get("end", invoice.period_end),
    }


async def advance(session: AsyncSession, stripe: StripeGateway, checkout_session: str) -> None:
    """Advance the subscription's test clock past its current period's end (the renewal)."""
    sub, _customer = await _active_subscription(session, checkout_session)
    if sub.test_clock is None or sub.current_period_end is None:
        raise InvalidRequest(
            "This subscription has no test clock to advance.", code="no_test_clock"
        )
    clock = await stripe.retrieve_test_clock(sub.test_clock)
    if clock.status != "ready":
        raise InvalidRequest(
            "The test clock is still advancing; try again in a moment.", code="clock_advancing"
        )
    target = max(int(clock.frozen_time), sub.current_period_end) + PAST_RENEWAL
    await stripe.advance_test_clock(
        sub.test_clock, {"frozen_time": target}, f"demo:advance:{sub.test_clock}:{target}"
    )


async def use_failing_card(
    session: AsyncSession, stripe: StripeGateway, checkout_session: str
) -> None:
    """Make a card that declines every charge the subscription's default payment method."""
    sub, customer = await _active_subscription(session, checkout_session)
    card = await customers.attach_payment_method(
        session, stripe, customer, PaymentMethodAttach(payment_method=FAILING_CARD)
    )
    await subscriptions.update_subscription(
        session,
        stripe,
        str(sub.stripe_id),
        SubscriptionUpdate(default_payment_method=card["id"]),
        caller=CALLER,
    )


async def _demo_session(
    session: AsyncSession, checkout_session: str
) -> tuple[CheckoutSession, str]:
    row = await session.scalar(
        select(CheckoutSession).where(
            CheckoutSession.stripe_id == checkout_session,
            CheckoutSession.mode == "subscription",
        )
    )
    customer = None
    if row is not None and row.customer is not None:
        customer = await session.scalar(select(Customer).where(Customer.stripe_id == row.customer))
    if row is None or customer is None or not is_demo(customer.metadata_):
        raise NotFound(f"No demo plan for '{checkout_session}'", param="session_id")
    return row, str(row.customer)


async def _subscription(session: AsyncSession, row: CheckoutSession) -> Subscription | None:
    if row.subscription is None:
        return None
    found: Subscription | None = await session.scalar(
        select(Subscription).where(Subscription.stripe_id == row.subscription)
    )
    return found


async def _active_subscription(
    session: AsyncSession, checkout_session: str
) -> tuple[Subscription, str]:
    row, customer = await _demo_session(session, checkout_session)
    sub = await _subscription(session, row)
    if sub is None:
        raise InvalidRequest(
            "The subscription is not here yet: its webhook has not arrived.",
            code="subscription_not_ready",
        )
    if sub.status in ("canceled", "incomplete_expired"):
        raise InvalidRequest(f"The subscription is {sub.status}.", code="subscription_ended")
    return sub, customer
