"""The one recording function of the billing mirrors: webhooks (app.webhooks.billing), the API's
answers (app.subscriptions.service) and `reconcile` all write subscriptions and invoices here,
under the rule of app.billing.ordering.

`apply_event` places an event against the row (locked on Postgres until the transaction ends):
stale → untouched; newer → its object is stored with `event_created = event.created`; ambiguous
→ the object is read from Stripe and that is stored, with the same `event_created`. A Stripe
read that fails is the gateway's 503 (`stripe_unavailable`): the transaction rolls back and
Stripe delivers the event again. `record` stores an object that did not come with an event (an
API answer, reconcile's read): `event_created` becomes null, so the next event is checked
against Stripe rather than trusted to be newer.

Every write here that changes a subscription's status, or brings an invoice to an outcome (paid,
a failed payment attempt, voided, marked uncollectible), adds its outbox event (app.models.Event:
`subscription.<status>`, `invoice.paid`, `invoice.payment_failed`, `invoice.voided`,
`invoice.marked_uncollectible`) to the session, so it commits with the change. Its `cause` is
the Stripe event id, the API call or `reconcile` that made the write.
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.billing.ordering import Placement, may_overwrite, place
from app.errors import NotFound
from app.models import Event, Invoice, SimulatedClock, Subscription
from app.models.base import new_id, utcnow
from app.stripe_gateway import StripeGateway

Row = Subscription | Invoice


def ref(value: Any) -> str | None:
    """An id, whether Stripe sent it bare or expanded."""
    if isinstance(value, dict):
        found = value.get("id")
        return str(found) if found is not None else None
    return str(value) if value else None


def plain(kind: str, obj: dict[str, Any]) -> dict[str, Any]:
    """The object as kept in `data`: expanded references reduced to their ids, and no client
    secret (an invoice's `confirmation_secret`)."""
    kept = dict(obj)
    kept.pop("confirmation_secret", None)
    names: tuple[str, ...] = ("customer", "default_payment_method", "test_clock")
    if kind == "subscription":
        names += ("latest_invoice",)
    for name in names:
        if isinstance(kept.get(name), dict):
            kept[name] = ref(kept[name])
    return kept


def invoice_subscription(invoice: dict[str, Any]) -> str | None:
    details = (invoice.get("parent") or {}).get("subscription_details") or {}
    return ref(details.get("subscription"))


def _items(subscription: dict[str, Any]) -> list[dict[str, Any]]:
    items = []
    for item in (subscription.get("items") or {}).get("data") or []:
        price = item.get("price") or {}
        items.append(
            {
                "id": item.get("id"),
                "price": ref(price),
                "product": ref(price.get("product")) if isinstance(price, dict) else None,
                "quantity": item.get("quantity"),
                "current_period_start": item.get("current_period_start"),
                "current_period_end": item.get("current_period_end"),
            }
        )
    return items


def _fill_subscription(row: Subscription, sub: dict[str, Any], at: int) -> None:
    items = _items(sub)
    starts = [i["current_period_start"] for i in items if i["current_period_start"] is not None]
    ends = [i["current_period_end"] for i in items if i["current_period_end"] is not None]
    status = str(sub.get("status"))
    if status != "past_due":
        row.past_due_since = None
    elif row.status != "past_due" or row.past_due_since is None:
        row.past_due_since = at
    row.stripe_id = sub["id"]
    row.customer = ref(sub.get("customer"))
    row.status = status
    row.cancel_at_period_end = bool(sub.get("cancel_at_period_end"))
    row.current_period_start = min(starts) if starts else None
    row.current_period_end = max(ends) if ends else None
    row.trial_end = sub.get("trial_end")
    row.canceled_at = sub.get("canceled_at")
    row.ended_at = sub.get("ended_at")
    row.latest_invoice = ref(sub.get("latest_invoice"))
    row.default_payment_method = ref(sub.get("default_payment_method"))
    row.test_clock = ref(sub.get("test_clock"))
    row.items = items
    row.metadata_ = dict(sub.get("metadata") or {})
    row.data = plain("subscription", sub)


def _fill_invoice(row: Invoice, invoice: dict[str, Any]) -> None:
    row.stripe_id = invoice["id"]
    row.customer = ref(invoice.get("customer"))
    row.subscription = invoice_subscription(invoice)
    row.status = invoice.get("status")
    row.amount_due = int(invoice.get("amount_due") or 0)
    row.amount_paid = int(invoice.get("amount_paid") or 0)
    row.amount_remaining = int(invoice.get("amount_remaining") or 0)
    row.currency = invoice.get("currency")
    row.billing_reason = invoice.get("billing_reason")
    row.period_start = invoice.get("period_start")
    row.period_end = invoice.get("period_end")
    row.hosted_invoice_url = invoice.get("hosted_invoice_url")
    row.attempt_count = int(invoice.get("attempt_count") or 0)
    row.next_payment_attempt = invoice.get("next_payment_attempt")
    row.created = invoice.get("created")
    row.data = plain("invoice", invoice)


async def _locked(session: AsyncSession, kind: str, stripe_id: str) -> Row | None:
    model = Subscription if kind == "subscription" else Invoice
    row: Row | None = await session.scalar(
        select(model).where(model.stripe_id == stripe_id).with_for_update()
    )
    return row


# An invoice's outcomes, by the status that marks them, as its events name them.
INVOICE_OUTCOMES = {"paid": "paid", "void": "voided", "uncollectible": "marked_uncollectible"}


def _before(row: Row | None) -> tuple[str | None, int]:
    """What a write is held against to tell its events: the status and attempt count."""
    if row is None:
        return None, 0
    return row.status, row.attempt_count if isinstance(row, Invoice) else 0


def _emit(session: AsyncSession, row: Row, before: tuple[str | None, int], cause: str) -> None:
    """Add the outbox event of the change from `before` to `row`, if it is one to report."""
    status, attempts = before
    if isinstance(row, Subscription):
        if row.status is None or row.status == status or row.stripe_id is None:
            return
        kind, event_type, shown = "subscription", f"subscription.{row.status}", dict(row.data)
    else:
        if row.status != status and row.status in INVOICE_OUTCOMES:
            outcome = INVOICE_OUTCOMES[row.status]
        elif row.status == "open" and row.attempt_count > attempts:
            outcome = "payment_failed"  # an attempt was made and the invoice is still due
        else:
            return
        kind, event_type = "invoice", f"invoice.{outcome}"
        shown = {**row.data, "subscription": row.subscription}
    session.add(
        Event(
            id=new_id("evt"),
            type=event_type,
            created=utcnow(),
            object_type=kind,
            object_id=row.stripe_id,
            object=shown,
            cause=cause,
        )
    )


async def _store(
    session: AsyncSession,
    kind: str,
    row: Row | None,
    obj: dict[str, Any],
    event_created: int | None,
    cause: str,
) -> Row:
    """Write `obj` into `row` (a new row if None), with its event if it has one, and flush."""
    before = _before(row)
    if kind == "subscription":
        sub = row if isinstance(row, Subscription) else Subscription()
        at = (
            event_created
            if event_created is not None
            else await clock_now(session, ref(obj.get("test_clock")))
        )
        _fill_subscription(sub, obj, at)
        stored: Row = sub
    else:
        inv = row if isinstance(row, Invoice) else Invoice()
        _fill_invoice(inv, obj)
        stored = inv
    stored.event_created = event_created
    if row is None:
        session.add(stored)
    _emit(session, stored, before, cause)
    await session.flush()
    return stored


async def apply_event(
    session: AsyncSession,
    gateway: StripeGateway,
    kind: str,
    obj: dict[str, Any],
    event_created: int | None,
    *,
    cause: str,
) -> Placement:
    """Place the event's object (`kind`: "subscription" or "invoice") against its row and store
    what the placement says; the placement. `cause`: the Stripe event's id."""
    row = await _locked(session, kind, obj["id"])
    if row is None:
        await _store(session, kind, None, obj, event_created, cause)
        return Placement.APPLY
    placement = place(kind, row.status, row.event_created, event_created)
    if placement is Placement.STALE:
        return placement
    if placement is Placement.REFETCH:
        obj = await _current(gateway, kind, obj)
    await _store(session, kind, row, obj, event_created, cause)
    return placement


async def _current(gateway: StripeGateway, kind: str, obj: dict[str, Any]) -> dict[str, Any]:
    """The object as Stripe has it now (the event's own if Stripe no longer has it)."""
    try:
        if kind == "subscription":
            return (await gateway.retrieve_subscription(obj["id"])).to_dict()
        return (await gateway.retrieve_invoice(obj["id"])).to_dict()
    except NotFound:
        return obj


async def record(
    session: AsyncSession,
    kind: str,
    obj: dict[str, Any],
    *,
    cause: str,
    if_changed: bool = False,
) -> tuple[Row, list[str]]:
    """Store an object Stripe answered outside an event (an API answer, reconcile; `cause` names
    it): the row and the fields the mirror now answers differently. A terminal row keeps its
    state; with `if_changed`, a row that would answer the same is left as it is (its
    `event_created` too)."""
    row = await _locked(session, kind, obj["id"])
    if row is not None and not may_overwrite(kind, row.status):
        return row, []
    before = None if row is None else summary(row)
    if if_changed and row is not None:
        probe: Row = Subscription() if kind == "subscription" else Invoice()
        if isinstance(probe, Subscription):
            _fill_subscription(probe, obj, 0)
        else:
            _fill_invoice(probe, obj)
        if not changes(before, summary(probe)):
            return row, []
    stored = await _store(session, kind, row, obj, None, cause)
    return stored, changes(before, summary(stored))


SUMMARY = {
    "subscription": (
        "status",
        "customer",
        "cancel_at_period_end",
        "current_period_start",
        "current_period_end",
        "trial_end",
        "canceled_at",
        "ended_at",
        "latest_invoice",
        "default_payment_method",
        "items",
        "metadata_",
    ),
    "invoice": (
        "status",
        "customer",
        "subscription",
        "amount_due",
        "amount_paid",
        "amount_remaining",
        "attempt_count",
        "next_payment_attempt",
        "hosted_invoice_url",
    ),
}


def summary(row: Row) -> dict[str, Any]:
    """What the mirror answers of a row, to tell whether a write changed it (`data` holds
    fields that differ by representation only, such as a decimal amount's type)."""
    kind = "subscription" if isinstance(row, Subscription) else "invoice"
    return {name.rstrip("_"): getattr(row, name) for name in SUMMARY[kind]}


def changes(before: dict[str, Any] | None, after: dict[str, Any]) -> list[str]:
    """The names of the fields that differ (all of them when there was no row)."""
    if before is None:
        return list(after)
    return [name for name, value in after.items() if before.get(name) != value]


async def status_of(session: AsyncSession, kind: str, stripe_id: str) -> str | None:
    """The mirrored status of a subscription or invoice; None when it is not mirrored."""
    model = Subscription if kind == "subscription" else Invoice
    status: str | None = await session.scalar(
        select(model.status).where(model.stripe_id == stripe_id)
    )
    return status


async def adopt(
    session: AsyncSession, row: Subscription, sub: dict[str, Any], *, cause: str
) -> Subscription:
    """Record Stripe's answer to the create that `row` was committed for (`cause`: that API
    call). A webhook may have mirrored the subscription first, in a row of its own: that row is
    kept, takes the answer and the request's caller and key, and the placeholder is deleted."""
    found = await session.scalar(
        select(Subscription).where(Subscription.stripe_id == sub["id"]).with_for_update()
    )
    if found is None or found.id == row.id:
        if may_overwrite("subscription", row.status):
            before = _before(row)
            _fill_subscription(row, sub, await clock_now(session, ref(sub.get("test_clock"))))
            row.event_created = None
            _emit(session, row, before, cause)
        await session.flush()
        return row
    owner, key, digest = row.idempotency_owner, row.idempotency_key, row.params_digest
    await session.execute(delete(Subscription).where(Subscription.id == row.id))
    await session.flush()
    found.idempotency_owner, found.idempotency_key, found.params_digest = owner, key, digest
    if may_overwrite("subscription", found.status):
        # The answer ends the create; the events that came first were sent during it. Should
        # one have been later, the next event finds `event_created` null and reads Stripe.
        before = _before(found)
        _fill_subscription(found, sub, await clock_now(session, ref(sub.get("test_clock"))))
        found.event_created = None
        _emit(session, found, before, cause)
    await session.flush()
    return found


async def forget_draft(session: AsyncSession, invoice_id: str) -> bool:
    """Remove a deleted draft invoice (one the mirror still holds as a draft, or never held);
    whether anything went."""
    result = await session.execute(
        delete(Invoice).where(Invoice.stripe_id == invoice_id, Invoice.status == "draft")
    )
    return bool(getattr(result, "rowcount", 0))


async def clock_now(session: AsyncSession, clock: str | None) -> int:
    """Now, in unix seconds, on test clock `clock`: its last known time; wall time without one
    (or for a clock the service has not heard of)."""
    if clock is not None:
        frozen = await session.scalar(
            select(SimulatedClock.frozen_time).where(SimulatedClock.id == clock)
        )
        if frozen is not None:
            return int(frozen)
    return int(time.time())


async def record_clock(session: AsyncSession, clock_id: str, frozen_time: int) -> bool:
    """Keep a test clock's time; a clock never goes back, so an older event changes nothing."""
    row = await session.get(SimulatedClock, clock_id, with_for_update=True)
    if row is None:
        session.add(SimulatedClock(id=clock_id, frozen_time=frozen_time))
    elif frozen_time > row.frozen_time:
        row.frozen_time = frozen_time
    else:
        return False
    await session.flush()
    return True
