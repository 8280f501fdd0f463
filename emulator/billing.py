"""Stripe Billing over time: what happens to subscriptions and their invoices as a clock moves.

`advance(ctx, clock_id, until)` runs every due step of the subscriptions on one test clock (or,
with `clock_id=None`, of the subscriptions on real time) in time order, each step acting at its
own time, so events come out in `created` order. The steps, as Stripe takes them:

- `incomplete` for 23 hours with its first invoice unpaid → `incomplete_expired` (invoice voided);
- a trial: `customer.subscription.trial_will_end` 3 days before it ends; at its end `active` and
  a `subscription_cycle` invoice;
- at a period's end: `canceled` if `cancel_at_period_end`, else the items' periods move on and a
  `subscription_cycle` invoice is made; `invoice.upcoming` 7 days before (only for periods longer
  than that: Stripe's "upcoming renewal events" setting, its default of 7 days);
- a draft renewal invoice is finalized and charged an hour after it was made;
- a failed renewal payment makes the subscription `past_due` and is retried on the emulator's
  `billing_retry_days`; after the last retry the subscription is canceled, `unpaid` or left
  `past_due`, and the invoice left open or marked uncollectible (`billing_*_after_retries`).

Payments go through the invoice's PaymentIntent; `follow_invoice_intent` turns the intent's
events into the invoice's and the subscription's, whoever confirmed it (the engine, a client
confirming `confirmation_secret`, `POST /v1/invoices/{id}/pay`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from emulator import invoicing
from emulator.context import Ctx, listener
from emulator.store import Obj

DAY = 86400
HOUR = 3600
TRIAL_WILL_END_BEFORE = 3 * DAY
UPCOMING_BEFORE = 7 * DAY
INCOMPLETE_EXPIRES_AFTER = 23 * HOUR
ENDED = ("canceled", "incomplete_expired")
_INTERVAL_DAYS = {"day": 1, "week": 7}
_MAX_STEPS = 100_000

Step = Callable[[Ctx], None]


def period_end(start: int, interval: str, count: int) -> int:
    """The end of a billing period: calendar months and years, as Stripe bills them."""
    if interval in _INTERVAL_DAYS:
        return start + _INTERVAL_DAYS[interval] * count * DAY
    begin = dt.datetime.fromtimestamp(start, dt.UTC)
    months = count * (12 if interval == "year" else 1)
    year, month = divmod(begin.month - 1 + months, 12)
    year += begin.year
    month += 1
    day = begin.day
    while True:
        try:
            end = begin.replace(year=year, month=month, day=day)
            break
        except ValueError:
            day -= 1  # 31 January + 1 month = 28/29 February, as Stripe anchors
    return int(end.timestamp())


def next_period_end(sub: Obj, start: int) -> int:
    recurring = sub["items"]["data"][0]["price"]["recurring"]
    return period_end(start, recurring["interval"], recurring["interval_count"])


def payment_method_of(ctx: Ctx, sub: Obj) -> str | None:
    """What a subscription's invoices are charged to: its own default payment method, else its
    customer's `invoice_settings.default_payment_method`."""
    if sub["default_payment_method"]:
        return str(sub["default_payment_method"])
    customer = ctx.coll("customer").find(sub["customer"]) or {}
    default = (customer.get("invoice_settings") or {}).get("default_payment_method")
    return str(default) if default else None


def subscription_of(ctx: Ctx, invoice: Obj) -> Obj | None:
    details = (invoice.get("parent") or {}).get("subscription_details") or {}
    sub_id = details.get("subscription")
    return ctx.coll("subscription").find(sub_id) if sub_id else None


def invoices_of(ctx: Ctx, sub: Obj) -> list[Obj]:
    coll = ctx.coll("invoice")
    found = (coll.find(i) for i in ctx.store.hidden_of(sub["id"]).get("invoices", []))
    return [i for i in found if i is not None]


def copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [copy(v) for v in value]
    return value


def set_status(ctx: Ctx, sub: Obj, status: str, **fields: Any) -> None:
    """Move a subscription to `status` (with other fields) and emit its `updated` event."""
    previous = {"status": sub["status"], **{k: copy(sub[k]) for k in fields}}
    sub["status"] = status
    sub.update(fields)
    ctx.emit("customer.subscription.updated", sub, previous)


def cancel(ctx: Ctx, sub: Obj, reason: str) -> None:
    """End a subscription now; emits `customer.subscription.deleted`."""
    now = ctx.now()
    sub["status"] = "canceled"
    sub["canceled_at"] = sub["canceled_at"] or now
    sub["ended_at"] = now
    sub["cancellation_details"] = {**sub["cancellation_details"], "reason": reason}
    ctx.emit("customer.subscription.deleted", sub)


# ---------------------------------------------------------------------------------------------
# The first invoice


def _new_invoice(
    ctx: Ctx,
    sub: Obj,
    reason: str,
    period: tuple[int, int],
    lines_period: tuple[int, int],
    *,
    trial: bool = False,
) -> Obj:
    invoice = invoicing.create_invoice(
        ctx,
        sub,
        billing_reason=reason,
        period_start=period[0],
        period_end=period[1],
        lines_period=lines_period,
        trial=trial,
    )
    ctx.store.hidden_of(sub["id"]).setdefault("invoices", []).append(invoice["id"])
    return invoice


def start(ctx: Ctx, sub: Obj, payment_behavior: str) -> Obj:
    """The subscription's first invoice, made, finalized and (unless `default_incomplete`)
    charged at once, as Stripe does at creation; a trial's is a paid $0 invoice."""
    now = ctx.now()
    item = sub["items"]["data"][0]
    trial = sub["status"] == "trialing"
    invoice = _new_invoice(
        ctx,
        sub,
        "subscription_create",
        (now, now),
        (item["current_period_start"], item["current_period_end"]),
        trial=trial,
    )
    sub["latest_invoice"] = invoice["id"]
    invoicing.finalize(ctx, invoice)
    if invoice["status"] == "open" and payment_behavior != "default_incomplete":
        pm = payment_method_of(ctx, sub)
        if pm is None or not invoicing.attempt(ctx, invoice, pm, off_session=False):
            on_payment_failed(ctx, invoice)
    return invoice


# ---------------------------------------------------------------------------------------------
# Following the invoice's PaymentIntent


@listener
def follow_invoice_intent(ctx: Ctx, event: Obj) -> None:
    """Settle an invoice when its PaymentIntent succeeds or fails, whoever confirmed it."""
    type_ = event["type"]
    if type_ not in (
        "payment_intent.succeeded",
        "payment_intent.payment_failed",
        "payment_intent.requires_action",
    ):
        return
    invoice = invoicing.invoice_of_intent(ctx, event["data"]["object"])
    if invoice is None or invoice["status"] not in invoicing.PAYABLE:
        return
    if ctx.at is None:
        ctx = ctx.at_time(ctx.clock_time(invoice))
    if type_ == "payment_intent.succeeded":
        invoicing.settle_paid(ctx, invoice)
        on_paid(ctx, invoice)
    elif type_ == "payment_intent.payment_failed":
        on_payment_failed(ctx, invoice)
    else:
        ctx.emit("invoice.payment_action_required", invoice)


def on_paid(ctx: Ctx, invoice: Obj) -> None:
    """A paid invoice brings its subscription back to `active` once nothing is left unpaid."""
    sub = subscription_of(ctx, invoice)
    if sub is None or sub["status"] not in ("incomplete", "past_due", "unpaid"):
        return
    if any(i["status"] == "open" for i in invoices_of(ctx, sub)):
        return
    set_status(ctx, sub, "active")


def on_payment_failed(ctx: Ctx, invoice: Obj) -> None:
    """Count the failed attempt, schedule the next retry of a renewal, and move the
    subscription: `past_due`, then what the settings say once the retries are spent."""
    sub = subscription_of(ctx, invoice)
    config = ctx.emu.config
    exhausted = False
    if sub is None or invoice["billing_reason"] == "subscription_create":
        invoice["next_payment_attempt"] = None
    else:
        first = ctx.store.hidden_of(invoice["id"]).setdefault("first_failed_at", ctx.now())
        failures = invoice["attempt_count"] + 1
        days = config.billing_retry_days
        if failures <= len(days) and sub["status"] != "unpaid":
            invoice["next_payment_attempt"] = first + days[failures - 1] * DAY
        else:
            invoice["next_payment_attempt"] = None
            exhausted = True
    invoicing.settle_failed(ctx, invoice)
    if sub is None or invoice["billing_reason"] == "subscription_create":
        return
    if sub["status"] in ("active", "trialing"):
        set_status(ctx, sub, "past_due")
    if not exhausted:
        return
    if config.billing_invoice_after_retries == "uncollectible" and invoice["status"] == "open":
        invoicing.mark_uncollectible(ctx, invoice)
    if sub["status"] in ENDED:
        return
    if config.billing_after_retries == "cancel":
        cancel(ctx, sub, "payment_failed")
    elif config.billing_after_retries == "unpaid" and sub["status"] != "unpaid":
        set_status(ctx, sub, "unpaid")


# ---------------------------------------------------------------------------------------------
# Steps over time


def _expire(sub: Obj) -> Step:
    def step(ctx: Ctx) -> None:
        for invoice in invoices_of(ctx, sub):
            if invoice["status"] == "open":
                invoicing.void(ctx, invoice)
        set_status(ctx, sub, "incomplete_expired", ended_at=ctx.now())

    return step


def _trial_will_end(sub: Obj) -> Step:
    def step(ctx: Ctx) -> None:
        ctx.store.hidden_of(sub["id"])["trial_will_end_sent"] = True
        ctx.emit("customer.subscription.trial_will_end", sub)

    return step


def _upcoming(sub: Obj, end: int) -> Step:
    def step(ctx: Ctx) -> None:
        ctx.store.hidden_of(sub["id"])["upcoming_for"] = end
        preview = invoicing.build_invoice(
            ctx,
            sub,
            None,
            billing_reason="upcoming",
            period_start=sub["items"]["data"][0]["current_period_start"],
            period_end=end,
            lines_period=(end, next_period_end(sub, end)),
        )
        preview["next_payment_attempt"] = end + HOUR
        preview.pop("id", None)
        ctx.emit("invoice.upcoming", preview)

    return step


def _renew(sub: Obj) -> Step:
    """A period (or a trial) ends: cancel at period end, or move the items on and invoice."""

    def step(ctx: Ctx) -> None:
        now = ctx.now()
        if sub["cancel_at_period_end"]:
            cancel(ctx, sub, "cancellation_requested")
            return
        items = sub["items"]["data"]
        previous: dict[str, Any] = {
            "items": {**sub["items"], "data": copy(items)},
            "latest_invoice": sub["latest_invoice"],
        }
        old_start = items[0]["current_period_start"]
        end = next_period_end(sub, now)
        for item in items:
            item["current_period_start"] = now
            item["current_period_end"] = end
        if sub["status"] == "trialing":
            previous["status"] = "trialing"
            sub["status"] = "active"
        invoice = _new_invoice(ctx, sub, "subscription_cycle", (old_start, now), (now, end))
        sub["latest_invoice"] = invoice["id"]
        ctx.emit("customer.subscription.updated", sub, previous)

    return step


def _finalize(invoice: Obj) -> Step:
    def step(ctx: Ctx) -> None:
        invoicing.finalize(ctx, invoice)
        sub = subscription_of(ctx, invoice)
        if invoice["status"] != "open" or sub is None:
            return
        if sub["status"] == "unpaid":
            invoice["auto_advance"] = False  # Stripe leaves an unpaid subscription's invoices
            return
        charge(ctx, sub, invoice)

    return step


def _retry(invoice: Obj) -> Step:
    def step(ctx: Ctx) -> None:
        sub = subscription_of(ctx, invoice)
        invoice["next_payment_attempt"] = None
        if sub is None or sub["status"] in ENDED:
            return
        charge(ctx, sub, invoice)

    return step


def charge(ctx: Ctx, sub: Obj, invoice: Obj) -> None:
    """Attempt an open invoice off-session with the subscription's payment method."""
    pm = payment_method_of(ctx, sub)
    if pm is None or not invoicing.attempt(ctx, invoice, pm, off_session=True):
        on_payment_failed(ctx, invoice)


def next_step(ctx: Ctx, sub: Obj) -> tuple[int, Step] | None:
    """The subscription's earliest due step and its time, or None when nothing is scheduled."""
    status = sub["status"]
    if status in ENDED:
        return None
    if status == "incomplete":
        return sub["created"] + INCOMPLETE_EXPIRES_AFTER, _expire(sub)
    found: list[tuple[int, Step]] = []
    for invoice in invoices_of(ctx, sub):
        if invoice["status"] == "draft" and invoice["automatically_finalizes_at"] is not None:
            found.append((invoice["automatically_finalizes_at"], _finalize(invoice)))
        elif invoice["status"] == "open" and invoice["next_payment_attempt"] is not None:
            found.append((invoice["next_payment_attempt"], _retry(invoice)))
    hidden = ctx.store.hidden_of(sub["id"])
    end = sub["items"]["data"][0]["current_period_end"]
    if status == "trialing":
        end = sub["trial_end"]
        warn = end - TRIAL_WILL_END_BEFORE
        if not hidden.get("trial_will_end_sent") and warn > sub["trial_start"]:
            found.append((warn, _trial_will_end(sub)))
    else:
        start_ = sub["items"]["data"][0]["current_period_start"]
        notice = end - UPCOMING_BEFORE
        if (
            not sub["cancel_at_period_end"]
            and notice > start_
            and hidden.get("upcoming_for") != end
        ):
            found.append((notice, _upcoming(sub, end)))
    found.append((end, _renew(sub)))
    return min(found, key=lambda due: due[0])


def advance(ctx: Ctx, clock_id: str | None, until: int) -> None:
    """Run every step due up to `until` for the subscriptions on `clock_id` (None: on real
    time), earliest first, each at its own time."""
    subs = ctx.coll("subscription")
    for _ in range(_MAX_STEPS):
        best: tuple[int, Step] | None = None
        for sub in list(subs.by_id.values()):
            if sub["test_clock"] != clock_id:
                continue
            due = next_step(ctx, sub)
            if due is not None and due[0] <= until and (best is None or due[0] < best[0]):
                best = due
        if best is None:
            return
        best[1](ctx.at_time(best[0]))


def advance_limit(ctx: Ctx, clock_id: str, frozen_time: int) -> tuple[int, str | None]:
    """How far a clock may go in one advance: two intervals of its shortest subscription, else
    two years (Stripe's limits); with the subscription that sets it."""
    limit, limiting = period_end(frozen_time, "year", 2), None
    for sub in ctx.coll("subscription").by_id.values():
        if sub["test_clock"] != clock_id or sub["status"] in ENDED:
            continue
        recurring = sub["items"]["data"][0]["price"]["recurring"]
        two = period_end(frozen_time, recurring["interval"], 2 * recurring["interval_count"])
        if two < limit:
            limit, limiting = two, sub["id"]
    return limit, limiting
