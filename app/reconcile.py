"""`python -m app reconcile`: bring the orders back to what Stripe holds when answers or webhooks
were lost, so that every order settles.

Every change at Stripe makes an event, so a run starts from a stored cursor in Stripe's events
(`reconcile_cursors`: the newest event a run fully processed) and reads only what came after it;
an order with no event since then has not changed at Stripe and costs no call. Each item runs in
its own short transaction (a failure costs that item only); a run is safe on a schedule next to
the live service and its webhooks, and on Postgres one run at a time holds an advisory lock (a
second one exits 2 at once).

1. Orders with no payment intent (their create lost Stripe's answer, or their process died),
   not in a final state and older than `--min-age` seconds, are looked up at Stripe by the
   `service_order_id` in their intent's metadata and linked; if Stripe has none and the order
   was not touched for `--min-age` (a retry resuming it touches it first), it is `abandoned`,
   with the reason in its history. Stripe's search lags writes by up to a minute, well within the
   default minimum age (300 s). Checkout orders are left to their session's events.
2. Events: Stripe's events since the cursor (from its `created`, less a few seconds so that one
   listed late is not missed; what the inbox already holds is skipped) that are not in the
   webhook inbox go through the webhook endpoint's own path (`app.webhooks.handlers.receive`):
   stored once, applied by the same handlers and state machine, oldest first. This is how lost
   webhooks and lost answers (a capture, a cancel, a refund) reach their orders. An order whose
   intent had an event that failed or came out `unmatched` then has its intent retrieved and
   recorded (`sync_payment_intent`, source `reconcile`).
3. Orphans: Stripe's payment intents created since the last run's window (`--since-days` at
   most) carrying a `service_order_id` whose order is missing, abandoned, or linked to another
   intent. An uncaptured one is canceled at Stripe (nobody can pay it any more); a captured one is
   money taken for no order of ours: logged at ERROR, counted, and the run exits 1 (and the next
   run looks at the same window again). An intent whose order is pending and unlinked is linked.
4. Billing: every subscription of the account (`status=all`) as Stripe has it now, recorded
   where the mirror differs (or lacks it), and the invoices of every subscription not ended,
   through the webhooks' own recording function (app.billing.mirror).

The cursor then moves to the newest event before any that failed to apply, and not at all if an
order or orphan failed: a run that stops half way reads the same events again next time, and
the inbox makes each a no-op. With no cursor (the first run), `--full`, or a cursor older than
the 30 days Stripe keeps events, the run is a full pass and says so: every unsettled order's
intent is retrieved (one call per order), orphans are looked for over `--since-days`, and the
events of `--since-days` are applied; it leaves the cursor for the next run.

It prints how it reads Stripe (`events: …`), one line per change (`ord_…: from -> to (why)`: a
status move, or a payment intent linked or amounts changed; `pi_…: orphan …`) and a summary, and
exits 1 if any item failed or a captured orphan was found. `--metrics-file` writes the summary's
counts in Prometheus's text format, for node_exporter's textfile collector.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

from sqlalchemy import ColumnElement, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from stripe.params import InvoiceListParams, PaymentIntentCancelParams, PaymentIntentListParams

from app import reconcile_cursor
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
from app.reconcile_cursor import EVENTS, ORPHANS, Position
from app.stripe_gateway import StripeGateway
from app.webhooks import handlers

SOURCE = "reconcile"
MAX_EVENT_DAYS = 30  # how far back Stripe keeps events
# A cursor this old may have lost events to Stripe's 30 days (an hour to spare for the run).
STALE_SECONDS = MAX_EVENT_DAYS * 86400 - 3600
# How far before the cursor a run reads again: an event (or intent) Stripe lists a moment after
# a newer one is still seen; the inbox skips what was already applied.
OVERLAP_SECONDS = 5
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
    full_pass: bool = False
    busy: bool = False  # another reconcile held the lock: nothing was done
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
        return {name: int(value) for name, value in vars(self).items() if isinstance(value, int)}


async def reconcile(
    settings: Settings,
    *,
    min_age_seconds: int,
    since_days: int = MAX_EVENT_DAYS,
    full: bool = False,
    out: Callable[[str], None] = lambda _line: None,
) -> Report:
    """Run the passes against `settings`' database and Stripe; `out` gets each line. `full`
    ignores the cursor (and leaves a new one)."""
    report = Report()

    def say(line: str) -> None:
        report.lines.append(line)
        out(line)

    async with (
        connected(settings) as (sessionmaker, gateway),
        reconcile_cursor.exclusive(sessionmaker) as held,
    ):
        if not held:
            report.busy = True
            say("reconcile: another reconcile is running (it holds the lock); nothing done")
            return report
        await _run(sessionmaker, gateway, min_age_seconds, since_days, full, report, say)
    say(report.summary())
    return report


async def _run(
    sessionmaker: async_sessionmaker[AsyncSession],
    gateway: StripeGateway,
    min_age: int,
    since_days: int,
    full: bool,
    report: Report,
    say: Callable[[str], None],
) -> None:
    now = int(time.time())
    oldest = now - min(since_days, MAX_EVENT_DAYS) * 86400
    until = now - min_age  # younger intents may belong to an order being created right now
    cursor = None if full else await reconcile_cursor.load(sessionmaker, EVENTS)
    read: EventsRead | None = None
    errors_before = report.errors
    why = "--full" if full else "no cursor yet: the first run"
    if cursor is not None:
        why = f"the cursor {cursor.stripe_id} is past the {MAX_EVENT_DAYS} days Stripe keeps events"
        if now - cursor.created < STALE_SECONDS:
            say(f"events: since the cursor {cursor.stripe_id} ({_when(cursor.created)})")
            # Orders with no intent first, as the full pass does: a line names what search links.
            await _orders(sessionmaker, gateway, min_age, _unlinked, report, say)
            read = await _events(
                sessionmaker, gateway, cursor.created - OVERLAP_SECONDS, cursor, report, say
            )
            if read.stale:
                read = None
    if read is None:
        report.full_pass = True
        say(f"events: full pass ({why}): every unsettled order's payment intent is retrieved")
        await _orders(sessionmaker, gateway, min_age, unsettled_order_ids, report, say)
        orphans_ok = await _orphans(sessionmaker, gateway, oldest, until, report, say)
        read = await _events(sessionmaker, gateway, oldest, None, report, say)
    else:
        if read.recheck:
            pick = partial(_linked_to, intents=read.recheck)
            await _orders(sessionmaker, gateway, min_age, pick, report, say)
        checked = await reconcile_cursor.load(sessionmaker, ORPHANS)
        since = oldest if checked is None else max(oldest, checked.created - OVERLAP_SECONDS)
        orphans_ok = await _orphans(sessionmaker, gateway, since, until, report, say)
    # An order or orphan that failed: the next run reads the same events again (the cursor
    # stays); an event that failed holds the cursor before it (`read.done`).
    item_errors = report.errors - errors_before - read.failed
    await _billing(sessionmaker, gateway, report, say)
    if orphans_ok:
        await reconcile_cursor.save(sessionmaker, ORPHANS, Position(None, until))
    if read.done is not None and not item_errors:
        await reconcile_cursor.save(sessionmaker, EVENTS, read.done)


def _when(created: int) -> str:
    return datetime.fromtimestamp(created, UTC).isoformat(timespec="seconds")


# Orders -------------------------------------------------------------------------------------


async def _orders(
    sessionmaker: async_sessionmaker[AsyncSession],
    gateway: StripeGateway,
    min_age_seconds: int,
    pick: Callable[[AsyncSession, datetime], Awaitable[list[str]]],
    report: Report,
    say: Callable[[str], None],
) -> None:
    """Bring the unsettled orders `pick` names (created before `--min-age`) to Stripe's state."""
    created_before = utcnow() - timedelta(seconds=min_age_seconds)
    async with sessionmaker() as session:
        order_ids = await pick(session, created_before)
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


async def _unlinked(session: AsyncSession, created_before: datetime) -> list[str]:
    """Unsettled orders with no payment intent (and no Checkout Session, whose events settle
    them): no event of Stripe's names them until they are linked; oldest first."""
    return await _unsettled(
        session, created_before, Order.payment_intent.is_(None), Order.checkout_session.is_(None)
    )


async def _linked_to(
    session: AsyncSession, created_before: datetime, *, intents: set[str]
) -> list[str]:
    """Unsettled orders linked to one of `intents` (whose events failed or were unmatched)."""
    return await _unsettled(session, created_before, Order.payment_intent.in_(sorted(intents)))


async def _unsettled(
    session: AsyncSession, created_before: datetime, *where: ColumnElement[bool]
) -> list[str]:
    rows = await session.scalars(
        select(Order.id)
        .where(
            Order.status.not_in([s.value for s in FINAL]),
            Order.created_at < created_before,
            *where,
        )
        .order_by(Order.created_at, Order.id)
    )
    return list(rows)


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
    since: int,
    until: int,
    report: Report,
    say: Callable[[str], None],
) -> bool:
    """Check Stripe's intents created in [since, until]; whether none is left to look at again
    (no failure, no captured or processing orphan)."""
    before = (report.errors, report.orphans_captured, report.orphans_processing)
    window: PaymentIntentListParams = {"created": {"gte": since, "lte": until}, "limit": PAGE}
    page: list[dict[str, Any]] = []
    async for listed in gateway.list_payment_intents(window):
        report.intents_listed += 1
        page.append(listed.to_dict())
        if len(page) == PAGE:
            await _check_page(sessionmaker, gateway, page, report, say)
            page = []
    await _check_page(sessionmaker, gateway, page, report, say)
    return (report.errors, report.orphans_captured, report.orphans_processing) == before


async def _check_page(
    sessionmaker: async_sessionmaker[AsyncSession],
    gateway: StripeGateway,
    intents: list[dict[str, Any]],
    report: Report,
    say: Callable[[str], None],
) -> None:
    named = {
        intent["id"]: order_id
        for intent in intents
        if (order_id := (intent.get("metadata") or {}).get(ORDER_KEY))
    }
    if not named:
        return
    async with sessionmaker() as session:
        linked = set(
            await session.scalars(
                select(Order.payment_intent).where(Order.id.in_(set(named.values())))
            )
        )
    for intent in intents:
        order_id = named.get(intent["id"])
        if order_id is None or intent["id"] in linked:
            continue  # not ours, or its order already holds it: the common case, no lock taken
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


@dataclass
class EventsRead:
    """What reading the events found: `done`, the newest event before any that failed (where the
    cursor may move); `recheck`, the intents whose events failed or were unmatched; `stale`, the
    cursor is older than what Stripe still lists (nothing was applied)."""

    done: Position | None = None
    recheck: set[str] = field(default_factory=set)
    stale: bool = False
    failed: int = 0  # events whose apply raised an error


async def _events(
    sessionmaker: async_sessionmaker[AsyncSession],
    gateway: StripeGateway,
    since: int,
    cursor: Position | None,
    report: Report,
    say: Callable[[str], None],
) -> EventsRead:
    """Apply the events created since `since` that the inbox lacks, oldest first."""
    read = EventsRead()
    listed: list[dict[str, Any]] = []
    async for event in gateway.list_events({"created": {"gte": since}, "limit": PAGE}):
        payload = event.to_dict(for_json=True)  # as a webhook delivers it: no Decimal
        if (
            cursor is not None
            and not listed
            and payload["created"] - cursor.created > STALE_SECONDS
        ):
            break  # Stripe's newest event: the cursor is further back than Stripe keeps events
        report.events_listed += 1
        listed.append(payload)
    if cursor is not None and cursor.stripe_id not in {payload["id"] for payload in listed}:
        # Stripe no longer lists the cursor's own event: what came after it may be gone too.
        read.stale = True
        return read
    outcomes: dict[str, str] = {}
    for start in range(0, len(listed), PAGE):
        outcomes |= await _inbox_outcomes(sessionmaker, listed[start : start + PAGE])
    blocked = False
    for payload in reversed(listed):  # Stripe lists newest first
        outcome = outcomes.get(payload["id"])
        if outcome is None:
            errors = report.errors
            outcome = await _apply_event(sessionmaker, gateway, payload, report, say)
            read.failed += report.errors - errors
        if outcome is None or outcome == handlers.Outcome.UNMATCHED.value:
            read.recheck |= _intent_of(payload)
        blocked = blocked or outcome is None
        if not blocked:
            read.done = Position(payload["id"], payload["created"])
    return read


def _intent_of(payload: dict[str, Any]) -> set[str]:
    """The payment intent an event is about (a charge or refund names its own), if any."""
    obj: dict[str, Any] = payload.get("data", {}).get("object") or {}
    intent = obj.get("id") if obj.get("object") == "payment_intent" else obj.get("payment_intent")
    return {intent} if isinstance(intent, str) else set()


async def _inbox_outcomes(
    sessionmaker: async_sessionmaker[AsyncSession], events: list[dict[str, Any]]
) -> dict[str, str]:
    """The inbox's outcome of each of `events` it holds."""
    if not events:
        return {}
    async with sessionmaker() as session:
        rows = await session.execute(
            select(WebhookEvent.stripe_event_id, WebhookEvent.outcome).where(
                WebhookEvent.stripe_event_id.in_([e["id"] for e in events])
            )
        )
    return {event_id: str(outcome) for event_id, outcome in rows}


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
) -> str | None:
    """Apply one event; its inbox outcome, or None if it could not be applied (its order is not
    here yet, or it failed)."""
    event_id, event_type = payload["id"], payload["type"]
    try:
        applied = await apply_event(sessionmaker, gateway, payload)
    except handlers.OrderNotReady:
        report.events_skipped += 1
        return None
    except AppError as exc:
        report.errors += 1
        say(f"{event_id} {event_type}: failed: {exc.code}: {exc.message}")
        return None
    if applied.duplicate:
        return "duplicate"  # its webhook delivery got there first
    report.events_applied += 1
    report.changes += len(applied.moves)
    for line in applied.moves:
        say(line)
    return applied.outcome or "applied"


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
        _row, changed = await mirror.record(session, kind, obj, cause=SOURCE, if_changed=True)
    if changed:
        after = obj.get("status")
        why = f"{kind} refreshed from Stripe: {', '.join(changed)}"
        say(f"{obj['id']}: {before or 'missing'} -> {after} ({why})")
    return bool(changed)
