"""`python -m app reconcile`: bring the orders back to what Stripe holds when answers or webhooks
were lost, so that every order settles.

Three passes, each item in its own short transaction (a failure costs that item only), safe to
run on a schedule next to the live service and its webhooks:

1. Every order not in a final state and older than `--min-age` seconds: its payment intent is
   fetched from Stripe and recorded (`sync_payment_intent`, source `reconcile`). An order with
   none (its create lost Stripe's answer, or its process died) is looked up at Stripe by the
   `service_order_id` in its intent's metadata and linked; if Stripe has none and the order was
   not touched for `--min-age` (a retry resuming it touches it first), it is `abandoned`, with
   the reason in its history. Stripe's search lags writes by up to a minute, well within the
   default minimum age (300 s). Checkout orders are left to their session's events.
2. Orphans: Stripe's payment intents of the last `--since-days` days carrying a
   `service_order_id` whose order is missing, abandoned, or linked to another intent. An
   uncaptured one is canceled at Stripe (nobody can pay it any more); a captured one is money
   taken for no order of ours: logged at ERROR, counted, and the run exits 1. An intent whose
   order is pending and unlinked is linked, as in pass 1.
3. Stripe events of the last `--since-days` days that are not in the webhook inbox go through
   the webhook endpoint's own path (`app.webhooks.handlers.receive`): stored once in the inbox,
   applied by the same handlers and state machine, oldest first. This brings what a payment
   intent does not show: refunds, Checkout Sessions completed or expired. An event whose order
   does not exist here is stored as `unmatched` once old enough (see the handlers), else skipped.

4. Billing: every subscription of the account (`status=all`) as Stripe has it now, recorded
   where the mirror differs (or lacks it), and the invoices of every subscription not ended,
   through the webhooks' own recording function (app.billing.mirror). Run after the events, so
   what it records is the newest state.

It prints one line per change (`ord_…: from -> to (why)`: a status move, or a payment intent
linked or amounts changed; `pi_…: orphan …`) and a summary, and exits 1 if any item failed or a
captured orphan was found. `--metrics-file` writes the summary's counts in Prometheus's text
format, for node_exporter's textfile collector.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from stripe.params import InvoiceListParams, PaymentIntentCancelParams, PaymentIntentListParams

from app.batch import connected
from app.billing import mirror
from app.billing.ordering import TERMINAL
from app.config import Settings
from app.errors import AppError
from app.models import Order, OrderHistory, OrderStatus, WebhookEvent
from app.models.base import aware, utcnow
from app.orders.service import (
    ORDER_KEY,
    apply_refunded_amount,
    get_order,
    move,
    sync_payment_intent,
    unsettled_order_ids,
)
from app.orders.state import FINAL
from app.stripe_gateway import StripeGateway
from app.webhooks import handlers

SOURCE = "reconcile"
MAX_EVENT_DAYS = 30  # how far back Stripe keeps events
PAGE = 100
# The statuses in which Stripe lets an intent be canceled: nothing was captured.
CANCELABLE = frozenset(
    {"requires_payment_method", "requires_confirmation", "requires_action", "requires_capture"}
)
log = logging.getLogger("app.reconcile")


@dataclass
class Report:
    orders_checked: int = 0
    orders_linked: int = 0
    orders_abandoned: int = 0
    changes: int = 0
    intents_listed: int = 0
    orphans_canceled: int = 0
    orphans_captured: int = 0
    orphans_processing: int = 0
    events_listed: int = 0
    events_applied: int = 0
    events_skipped: int = 0
    subscriptions_listed: int = 0
    subscriptions_refreshed: int = 0
    invoices_listed: int = 0
    invoices_refreshed: int = 0
    errors: int = 0
    lines: list[str] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        """Whether the run must exit non-zero: an item failed, or money sits at Stripe for no
        order of ours."""
        return bool(self.errors or self.orphans_captured)

    def summary(self) -> str:
        return (
            f"reconcile: {self.changes} changes; {self.orders_checked} orders checked, "
            f"{self.orders_linked} linked to their payment intent, {self.orders_abandoned} "
            f"abandoned; {self.intents_listed} Stripe intents listed, orphans: "
            f"{self.orphans_canceled} canceled, {self.orphans_captured} captured, "
            f"{self.orphans_processing} processing; {self.events_listed} events listed, "
            f"{self.events_applied} new to the inbox applied, {self.events_skipped} skipped (no "
            f"such order yet); {self.subscriptions_listed} subscriptions listed, "
            f"{self.subscriptions_refreshed} refreshed; {self.invoices_listed} invoices listed, "
            f"{self.invoices_refreshed} refreshed; {self.errors} errors"
        )

    def counts(self) -> dict[str, int]:
        return {
            name: value
            for name, value in vars(self).items()
            if isinstance(value, int) and not isinstance(value, bool)
        }


async def reconcile(
    settings: Settings,
    *,
    min_age_seconds: int,
    since_days: int = MAX_EVENT_DAYS,
    out: Callable[[str], None] = lambda _line: None,
) -> Report:
    """Run both passes against `settings`' database and Stripe; `out` gets each line."""
    report = Report()

    def say(line: str) -> None:
        report.lines.append(line)
        out(line)

    async with connected(settings) as (sessionmaker, gateway):
        await _orders(sessionmaker, gateway, min_age_seconds, report, say)
        await _orphans(sessionmaker, gateway, min_age_seconds, since_days, report, say)
        await _events(sessionmaker, gateway, since_days, report, say)
        await _billing(sessionmaker, gateway, report, say)
    say(report.summary())
    return report


# Orders -------------------------------------------------------------------------------------


async def _orders(
    sessionmaker: async_sessionmaker[AsyncSession],
    gateway: StripeGateway,
    min_age_seconds: int,
    report: Report,
    say: Callable[[str], None],
) -> None:
    async with sessionmaker() as session:
        order_ids = await unsettled_order_ids(
            session, utcnow() - timedelta(seconds=min_age_seconds)
        )
    for order_id in order_ids:
        report.orders_checked += 1
        try:
            async with sessionmaker() as session, session.begin():
                line = await _reconcile_order(session, gateway, order_id, min_age_seconds, report)
        except AppError as exc:
            report.errors += 1
            say(f"{order_id}: failed: {exc.code}: {exc.message}")
            continue
        if line is not None:
            report.changes += 1
            say(line)


async def _reconcile_order(
    session: AsyncSession, gateway: StripeGateway, order_id: str, min_age: int, report: Report
) -> str | None:
    """Record the order's payment intent as Stripe has it, or abandon an order Stripe has
    none for; a line if the order changed."""
    order = await get_order(session, order_id, for_update=True)
    if OrderStatus(order.status) in FINAL:
        return None  # a webhook finished it since the list was read
    before = (order.status, order.payment_intent, order.amount_received, order.amount_refunded)
    if order.payment_intent is not None:
        intent = (await gateway.retrieve_payment_intent(order.payment_intent)).to_dict()
        why = f"{intent['id']} is {intent['status']} on Stripe"
    else:
        found = await gateway.search_payment_intents(
            {"query": f"metadata['{ORDER_KEY}']:'{order.id}'", "limit": 10}
        )
        if not found.data:
            return await _abandon(session, order, min_age, report)
        # One key (`order:{id}:pi`) makes one intent; should there be more, the first made.
        intent = min(found.data, key=lambda pi: pi.created).to_dict()
        why = f"linked {intent['id']}, {intent['status']} on Stripe"
    await sync_payment_intent(
        session, order, intent, SOURCE, failed=intent.get("last_payment_error") is not None
    )
    if order.amount_refunded > 0:
        await apply_refunded_amount(session, order, order.amount_refunded, SOURCE)
    after = (order.status, order.payment_intent, order.amount_received, order.amount_refunded)
    if after == before:
        return None
    if before[1] is None:
        report.orders_linked += 1
    for name, old, new in (("received", before[2], after[2]), ("refunded", before[3], after[3])):
        if old != new:
            why += f"; {name} {old} -> {new}"
    return f"{order.id}: {before[0]} -> {after[0]} ({why})"


async def _abandon(session: AsyncSession, order: Order, min_age: int, report: Report) -> str | None:
    """Abandon a `pending` order that has no payment intent at Stripe and that nothing touched
    for `min_age` seconds (a retry resuming it touches it before it calls Stripe)."""
    untouched = aware(order.updated_at) < utcnow() - timedelta(seconds=min_age)
    if order.status != OrderStatus.PENDING or order.checkout_session is not None or not untouched:
        return None
    why = "no payment intent at Stripe"
    await move(session, order, OrderStatus.ABANDONED, f"{SOURCE}: {why}")
    report.orders_abandoned += 1
    return f"{order.id}: pending -> abandoned ({why})"


# Orphans ------------------------------------------------------------------------------------


async def _orphans(
    sessionmaker: async_sessionmaker[AsyncSession],
    gateway: StripeGateway,
    min_age_seconds: int,
    since_days: int,
    report: Report,
    say: Callable[[str], None],
) -> None:
    now = int(time.time())
    since = now - min(since_days, MAX_EVENT_DAYS) * 86400
    window: PaymentIntentListParams = {
        "created": {"gte": since, "lte": now - min_age_seconds},
        "limit": PAGE,
    }
    async for listed in gateway.list_payment_intents(window):
        report.intents_listed += 1
        intent = listed.to_dict()
        order_id = (intent.get("metadata") or {}).get(ORDER_KEY)
        if not order_id:
            continue
        try:
            line = await _settle_intent(sessionmaker, gateway, intent, order_id, report)
        except AppError as exc:
            report.errors += 1
            say(f"{intent['id']}: failed: {exc.code}: {exc.message}")
            continue
        if line is not None:
            report.changes += 1
            say(line)


async def _settle_intent(
    sessionmaker: async_sessionmaker[AsyncSession],
    gateway: StripeGateway,
    intent: dict[str, Any],
    order_id: str,
    report: Report,
) -> str | None:
    """Link an intent to its unlinked pending order; cancel or report one that has no order."""
    async with sessionmaker() as session, session.begin():
        try:
            order: Order | None = await get_order(session, order_id, for_update=True)
        except AppError:
            order = None
        if order is not None and order.payment_intent == intent["id"]:
            return None
        if order is not None and order.payment_intent is None and order.status == "pending":
            await sync_payment_intent(
                session, order, intent, SOURCE, failed=intent.get("last_payment_error") is not None
            )
            report.orders_linked += 1
            why = f"linked {intent['id']}, {intent['status']} on Stripe"
            return f"{order.id}: pending -> {order.status} ({why})"
        why = (
            f"its order {order_id} does not exist"
            if order is None
            else f"its order {order_id} is linked to {order.payment_intent}"
            if order.payment_intent is not None
            else f"its order {order_id} is {order.status}"
        )
    money = f"{intent.get('amount_received') or intent['amount']} {intent['currency']}"
    if intent["status"] in CANCELABLE:
        params = PaymentIntentCancelParams(cancellation_reason="abandoned")
        await gateway.cancel_payment_intent(intent["id"], params, f"orphan:{intent['id']}:cancel")
        report.orphans_canceled += 1
        return f"{intent['id']}: orphan canceled at Stripe ({why}; it was {intent['status']})"
    if intent["status"] == "succeeded":
        report.orphans_captured += 1
        log.error(
            "orphan payment intent %s captured %s: %s",
            intent["id"],
            money,
            why,
            extra={"stripe_payment_intent": intent["id"], "order_id": order_id},
        )
        return f"{intent['id']}: ORPHAN CAPTURED {money} ({why}): refund it or settle it by hand"
    if intent["status"] == "processing":
        report.orphans_processing += 1
        return f"{intent['id']}: orphan processing ({why}); the next run settles it"
    return None


# Events -------------------------------------------------------------------------------------


async def _events(
    sessionmaker: async_sessionmaker[AsyncSession],
    gateway: StripeGateway,
    since_days: int,
    report: Report,
    say: Callable[[str], None],
) -> None:
    since = int(time.time()) - min(since_days, MAX_EVENT_DAYS) * 86400
    missing: list[dict[str, Any]] = []
    batch: list[dict[str, Any]] = []
    async for event in gateway.list_events({"created": {"gte": since}, "limit": PAGE}):
        report.events_listed += 1
        batch.append(event.to_dict(for_json=True))  # as a webhook delivers it: no Decimal
        if len(batch) == PAGE:
            missing += await _not_in_inbox(sessionmaker, batch)
            batch = []
    missing += await _not_in_inbox(sessionmaker, batch)
    for payload in reversed(missing):  # Stripe lists newest first
        await _apply_event(sessionmaker, gateway, payload, report, say)


async def _not_in_inbox(
    sessionmaker: async_sessionmaker[AsyncSession], events: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    if not events:
        return []
    async with sessionmaker() as session:
        known = set(
            await session.scalars(
                select(WebhookEvent.stripe_event_id).where(
                    WebhookEvent.stripe_event_id.in_([e["id"] for e in events])
                )
            )
        )
    return [e for e in events if e["id"] not in known]


@dataclass(frozen=True)
class Applied:
    """What applying one event did: `duplicate` if the inbox already had it (nothing applied),
    else the handler's outcome and one line per order move it made."""

    duplicate: bool
    outcome: str | None
    order_id: str | None
    moves: list[str]


async def apply_event(
    sessionmaker: async_sessionmaker[AsyncSession],
    gateway: StripeGateway,
    payload: dict[str, Any],
) -> Applied:
    """Apply one Stripe event as its webhook would be (`handlers.receive`: stored once in the
    inbox, applied only if new), in its own transaction. Raises what `receive` raises
    (`handlers.OrderNotReady` when its order is not here, any other AppError)."""
    event_id, event_type = payload["id"], payload["type"]
    receipt = await handlers.receive(sessionmaker, gateway, payload)
    moves: list[OrderHistory] = []
    if receipt.order_id is not None:
        async with sessionmaker() as session:
            moves = list(
                await session.scalars(
                    select(OrderHistory)
                    .where(
                        OrderHistory.order_id == receipt.order_id,
                        OrderHistory.source == event_id,
                    )
                    .order_by(OrderHistory.id)
                )
            )
    return Applied(
        duplicate=receipt.duplicate,
        outcome=receipt.outcome.value if receipt.outcome is not None else None,
        order_id=receipt.order_id,
        moves=[
            f"{move.order_id}: {move.from_status} -> {move.to_status} "
            f"(event {event_id} {event_type})"
            for move in moves
        ],
    )


async def _apply_event(
    sessionmaker: async_sessionmaker[AsyncSession],
    gateway: StripeGateway,
    payload: dict[str, Any],
    report: Report,
    say: Callable[[str], None],
) -> None:
    event_id, event_type = payload["id"], payload["type"]
    try:
        applied = await apply_event(sessionmaker, gateway, payload)
    except handlers.OrderNotReady:
        report.events_skipped += 1
        return
    except AppError as exc:
        report.errors += 1
        say(f"{event_id} {event_type}: failed: {exc.code}: {exc.message}")
        return
    if applied.duplicate:
        return  # its webhook delivery got there first
    report.events_applied += 1
    report.changes += len(applied.moves)
    for line in applied.moves:
        say(line)


# Billing ------------------------------------------------------------------------------------


async def _billing(
    sessionmaker: async_sessionmaker[AsyncSession],
    gateway: StripeGateway,
    report: Report,
    say: Callable[[str], None],
) -> None:
    """Record every subscription, and the invoices of those not ended, where the mirror differs."""
    open_subscriptions: list[str] = []
    try:
        async for listed in gateway.list_subscriptions({"status": "all", "limit": PAGE}):
            report.subscriptions_listed += 1
            subscription = listed.to_dict()
            if subscription.get("status") not in TERMINAL["subscription"]:
                open_subscriptions.append(subscription["id"])
            if await _refresh(sessionmaker, "subscription", subscription, say):
                report.subscriptions_refreshed += 1
                report.changes += 1
        for subscription_id in open_subscriptions:
            params: InvoiceListParams = {"subscription": subscription_id, "limit": PAGE}
            async for invoice in gateway.list_invoices(params):
                report.invoices_listed += 1
                if await _refresh(sessionmaker, "invoice", invoice.to_dict(), say):
                    report.invoices_refreshed += 1
                    report.changes += 1
    except AppError as exc:
        report.errors += 1
        say(f"billing: failed: {exc.code}: {exc.message}")


async def _refresh(
    sessionmaker: async_sessionmaker[AsyncSession],
    kind: str,
    obj: dict[str, Any],
    say: Callable[[str], None],
) -> bool:
    """Record `obj` in its own transaction; whether the mirror changed (a line says how)."""
    async with sessionmaker() as session, session.begin():
        before = await mirror.status_of(session, kind, obj["id"])
        _row, changed = await mirror.record(session, kind, obj)
    if changed:
        after = obj.get("status")
        say(f"{obj['id']}: {before or 'missing'} -> {after} ({kind} refreshed from Stripe)")
    return changed
