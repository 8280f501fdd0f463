"""Stripe Billing events → the subscription and invoice mirrors (app.billing.mirror).

Every subscription and invoice of the account is mirrored, whoever made it (the service,
Checkout, the Dashboard). The object's own state orders the deliveries (app.billing.ordering):
a duplicate never reaches here (the inbox), a stale event is recorded as `stale` and changes
nothing, an event that cannot be placed makes the mirror read the object from Stripe.
`invoice.upcoming` carries a preview with no id, and `invoice_payment.paid` a payment record:
neither is an invoice to mirror (the invoice's own `invoice.paid` says it). A deleted draft
invoice leaves the mirror. Test clock events
keep the clock's time, the "now" of its customers' entitlements.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.billing import mirror
from app.billing.ordering import Placement
from app.stripe_gateway import StripeGateway
from app.webhooks.inbox import Outcome

SUBSCRIPTION_EVENTS = tuple(
    f"customer.subscription.{kind}"
    for kind in (
        "created",
        "updated",
        "deleted",
        "paused",
        "resumed",
        "pending_update_applied",
        "pending_update_expired",
        "trial_will_end",
    )
)
INVOICE_EVENTS = tuple(
    f"invoice.{kind}"
    for kind in (
        "created",
        "deleted",
        "finalized",
        "finalization_failed",
        "updated",
        "paid",
        "payment_succeeded",
        "payment_failed",
        "payment_action_required",
        "overdue",
        "overpaid",
        "sent",
        "voided",
        "marked_uncollectible",
        "will_be_due",
    )
)
TEST_CLOCK_EVENTS = tuple(
    f"test_helpers.test_clock.{kind}"
    for kind in ("created", "advancing", "ready", "internal_failure")
)
EVENT_TYPES = SUBSCRIPTION_EVENTS + INVOICE_EVENTS + TEST_CLOCK_EVENTS

_OUTCOMES = {
    Placement.APPLY: Outcome.APPLIED,
    Placement.REFETCH: Outcome.APPLIED,
    Placement.STALE: Outcome.STALE,
}


async def apply(
    session: AsyncSession,
    gateway: StripeGateway,
    event_type: str,
    obj: dict[str, Any],
    created: int | None,
    event_id: str,
) -> Outcome:
    """Apply one Billing event (a type in EVENT_TYPES, id `event_id`: the cause of the outbox
    events it writes) to the mirrors; its inbox outcome."""
    if not isinstance(obj.get("id"), str) or not obj["id"]:
        return Outcome.IGNORED
    if event_type in TEST_CLOCK_EVENTS:
        frozen = obj.get("frozen_time")
        if not isinstance(frozen, int):
            return Outcome.IGNORED
        changed = await mirror.record_clock(session, obj["id"], frozen)
        return Outcome.APPLIED if changed else Outcome.STALE
    kind = "subscription" if event_type in SUBSCRIPTION_EVENTS else "invoice"
    if obj.get("object") != kind:
        return Outcome.IGNORED
    if event_type == "invoice.deleted":
        # Only a draft can be deleted, and it is gone for good.
        return Outcome.APPLIED if await mirror.forget_draft(session, obj["id"]) else Outcome.STALE
    return _OUTCOMES[await mirror.apply_event(session, gateway, kind, obj, created, cause=event_id)]
