"""Whether a customer is paid up: from the subscription mirror alone, never asking Stripe.

`active` and `trialing` entitle, whatever the period end says: Stripe moves the status when a
period renews or fails, and a webhook the service missed is `reconcile`'s to catch. `past_due`
entitles only within the grace period (`SUBSCRIPTION_GRACE_SECONDS`) from the moment it went
past due. "Now" is the customer's test clock's time when its subscriptions run on one (as the
clock's last event said), else the wall clock.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.billing.mirror import clock_now
from app.models import Customer, Subscription

ENTITLING = frozenset({"active", "trialing"})


@dataclass(frozen=True, slots=True)
class Entitlement:
    product: str
    subscription: str
    status: str
    until: int | None


def entitles(status: str | None, past_due_since: int | None, now: int, grace: int) -> bool:
    """Whether a subscription in `status` entitles its customer at `now`. A `now` before the
    subscription went past due is a clock whose own event has not arrived yet (a renewal's
    `customer.subscription.updated` can come before the clock's `ready`): time has reached the
    moment it went past due at least, so that moment is judged instead."""
    if status in ENTITLING:
        return True
    if status == "past_due" and past_due_since is not None:
        return max(now, past_due_since) < past_due_since + grace
    return False


async def customer_entitlements(
    session: AsyncSession, customer: str, grace: int
) -> tuple[int, list[Entitlement]] | None:
    """The moment judged and each product the customer is entitled to then (the subscription
    entitling it the longest, per product); None if the service knows nothing of the customer."""
    rows = (
        await session.scalars(
            select(Subscription)
            .where(Subscription.customer == customer, Subscription.stripe_id.is_not(None))
            .order_by(Subscription.id)
        )
    ).all()
    if not rows:
        known = await session.scalar(select(Customer.id).where(Customer.stripe_id == customer))
        if known is None:
            return None
    now = await clock_now(session, next((row.test_clock for row in rows if row.test_clock), None))
    found: dict[str, Entitlement] = {}
    for row in rows:
        if not entitles(row.status, row.past_due_since, now, grace):
            continue
        for item in row.items:
            product = item.get("product")
            if not product:
                continue
            until = item.get("current_period_end") or row.current_period_end
            held = found.get(product)
            if held is None or (until or 0) > (held.until or 0):
                found[product] = Entitlement(product, str(row.stripe_id), str(row.status), until)
    return now, sorted(found.values(), key=lambda e: e.product)
