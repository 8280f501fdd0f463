"""Every event type the service can emit: what a webhook endpoint's `enabled_events` may name."""

from __future__ import annotations

from typing import get_args

from app.billing.mirror import INVOICE_OUTCOMES
from app.models import OrderStatus
from app.orders.service import CREATED, DISCARDED, event_type
from app.subscriptions.router import Status as SubscriptionStatus

EVENT_TYPES: frozenset[str] = frozenset(
    {CREATED, DISCARDED}
    # An order enters every status but `pending` by a transition; `pending` is its creation.
    | {event_type(status) for status in OrderStatus if status is not OrderStatus.PENDING}
    # Stripe's subscription statuses; the mirror writes `subscription.<status>` on each change.
    | {f"subscription.{status}" for status in get_args(SubscriptionStatus)}
    | {f"invoice.{outcome}" for outcome in INVOICE_OUTCOMES.values()}
    | {"invoice.payment_failed"}
)
# In `enabled_events`, alone: every type, including those added later.
ALL_EVENTS = "*"
