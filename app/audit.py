"""`python -m app audit`: the orders of a window held against Stripe; every difference named, and
the run fails when one affects money.

It reads, and changes nothing: Stripe's payment intents created in the window (the list API) and
the service's orders created in it (and those the intents name), the webhook inbox's `unmatched`
events. What it reports, each a `Finding`:

- `paid_here_not_there`: an order paid (or refunded) here whose intent has not succeeded at
  Stripe;
- `paid_there_not_here`: an intent that succeeded at Stripe whose order is not paid here;
- `amount_mismatch`: an order whose amount or amount received differs from its intent's (when
  both agree on whether it is paid);
- `orphan_intent`: an intent naming an order (`service_order_id`) that is missing, abandoned,
  not linked yet, or linked to another intent;
- `multiple_succeeded`: an order with more than one succeeded intent: a double charge;
- `unmatched_event`: a webhook event stored as `unmatched` (it named an order not here);
- `transition_without_event`: an order's history entry with no outbox event (same order, type,
  cause and time), so subscribers were never told of it;
- `event_without_transition`: an order's outbox event with no such history entry, but for the
  events of an order discarded after its `order.created` was published (no order row, and
  `order.discarded` its newest event): those outlive their history by design.

Money is affected by everything but an orphan that holds no money (canceled, or never paid), an
unmatched event of a type that moves none, and a difference between history and outbox (what
was told, not what was paid). Objects younger than `--min-age` seconds are left
out: their webhooks may be in flight. `reconcile` settles what it can of these (links, abandons,
cancels uncaptured orphans); what it cannot (a captured orphan, a double charge) needs a person:
a refund, or a word with the customer.

Exit status: 0 when nothing affects money, 1 when something does, 2 when the audit could not run.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import and_, case, literal, not_, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import aliased
from sqlalchemy.sql.selectable import Exists
from stripe.params import PaymentIntentListParams

from app.batch import connected
from app.config import Settings
from app.models import Event, Order, OrderHistory, OrderStatus, WebhookEvent
from app.orders.service import CREATED, DISCARDED, ORDER_KEY
from app.stripe_gateway import StripeGateway

PAID = frozenset({OrderStatus.PAID, OrderStatus.PARTIALLY_REFUNDED, OrderStatus.REFUNDED})
# An intent in these statuses holds or took the customer's money.
HOLDS_MONEY = frozenset({"succeeded", "requires_capture", "processing"})
# Unmatched events of these types are about money that moved.
MONEY_EVENTS = frozenset(
    {
        "payment_intent.succeeded",
        "payment_intent.amount_capturable_updated",
        "payment_intent.processing",
        "charge.succeeded",
        "charge.captured",
        "charge.refunded",
        "refund.created",
        "refund.updated",
        "checkout.session.completed",
        "checkout.session.async_payment_succeeded",
    }
)
PAGE = 100
LOOKUP_CHUNK = 500


@dataclass(frozen=True)
class Finding:
    kind: str
    money: bool
    detail: str
    order: str | None = None
    payment_intent: str | None = None
    event: str | None = None

    def line(self) -> str:
        subject = " ".join(x for x in (self.order, self.payment_intent, self.event) if x)
        return f"{'MONEY ' if self.money else ''}{self.kind}: {subject}: {self.detail}"


@dataclass
class Audit:
    since: int
    until: int
    orders_checked: int = 0
    intents_checked: int = 0
    findings: list[Finding] = field(default_factory=list)

    @property
    def money(self) -> int:
        return sum(finding.money for finding in self.findings)

    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = defaultdict(int)
        for finding in self.findings:
            counts[finding.kind] += 1
        return dict(counts)

    def as_json(self) -> dict[str, Any]:
        return {
            "since": self.since,
            "until": self.until,
            "orders_checked": self.orders_checked,
            "intents_checked": self.intents_checked,
            "findings": [asdict(finding) for finding in self.findings],
            "counts": self.counts(),
            "money": self.money,
        }

    def summary(self) -> str:
        since = datetime.fromtimestamp(self.since, UTC).isoformat(timespec="seconds")
        return (
            f"audit: {self.orders_checked} orders and {self.intents_checked} Stripe intents "
            f"checked since {since}; {len(self.findings)} findings, {self.money} affecting money"
        )


async def audit(settings: Settings, *, since_days: int, min_age_seconds: int) -> Audit:
    """Hold the window's orders against Stripe (see the module's doc)."""
    # Rounded up: with no minimum age, what was written in this second is in the window.
    now = math.ceil(time.time())
    report = Audit(since=now - since_days * 86400, until=now - min_age_seconds)
    async with connected(settings) as (sessions, gateway):
        intents = await _intents(gateway, report)
        orders = await _orders(sessions, report, intents.values())
        report.orders_checked = len(orders)
        for order in orders.values():
            await _check_order(gateway, report, order, intents)
        _check_intents(report, orders, intents.values())
        await _check_inbox(sessions, report)
        await _check_outbox(sessions, report, settings.events_retention_days)
    return report


async def _intents(gateway: StripeGateway, report: Audit) -> dict[str, dict[str, Any]]:
    window: PaymentIntentListParams = {
        "created": {"gte": report.since, "lte": report.until},
        "limit": PAGE,
    }
    intents = {}
    async for listed in gateway.list_payment_intents(window):
        intents[listed.id] = listed.to_dict()
    report.intents_checked = len(intents)
    return intents


async def _orders(
    sessions: async_sessionmaker[AsyncSession],
    report: Audit,
    intents: Iterable[dict[str, Any]],
) -> dict[str, Order]:
    """The orders created in the window, and those the window's intents name."""
    since = datetime.fromtimestamp(report.since, UTC)
    until = datetime.fromtimestamp(report.until, UTC)
    async with sessions() as session:
        rows = await session.scalars(
            select(Order).where(Order.created_at >= since, Order.created_at <= until)
        )
        orders = {order.id: order for order in rows}
        named = sorted({o for i in intents if (o := _order_named(i))} - set(orders))
        for start in range(0, len(named), LOOKUP_CHUNK):
            chunk = named[start : start + LOOKUP_CHUNK]
            orders.update(
                (order.id, order)
                for order in await session.scalars(select(Order).where(Order.id.in_(chunk)))
            )
    return orders


async def _check_order(
    gateway: StripeGateway, report: Audit, order: Order, intents: dict[str, dict[str, Any]]
) -> None:
    paid = order.status in PAID
    if order.payment_intent is None:
        if paid:
            report.findings.append(
                Finding("paid_here_not_there", True, f"{order.status} with no intent", order.id)
            )
        return
    intent = intents.get(order.payment_intent)
    if intent is None:
        # Created outside the window (the order inside it): read it on its own.
        intent = (await gateway.retrieve_payment_intent(order.payment_intent)).to_dict()
    pi = intent["id"]
    received = intent.get("amount_received") or 0
    if paid and intent["status"] != "succeeded":
        detail = f"{order.status} here, {intent['status']} at Stripe"
        report.findings.append(Finding("paid_here_not_there", True, detail, order.id, pi))
    elif intent["status"] == "succeeded" and not paid:
        detail = f"succeeded at Stripe ({received} received), {order.status} here"
        report.findings.append(Finding("paid_there_not_here", True, detail, order.id, pi))
    elif (order.amount, order.amount_received) != (intent["amount"], received):
        detail = (
            f"amount {order.amount}, received {order.amount_received} here; amount "
            f"{intent['amount']}, received {received} at Stripe"
        )
        report.findings.append(Finding("amount_mismatch", True, detail, order.id, pi))


def _check_intents(
    report: Audit, orders: dict[str, Order], intents: Iterable[dict[str, Any]]
) -> None:
    succeeded: dict[str, list[str]] = defaultdict(list)
    for intent in intents:
        order_id = _order_named(intent)
        if order_id is None:
            continue
        if intent["status"] == "succeeded":
            succeeded[order_id].append(intent["id"])
        order = orders.get(order_id)
        if order is not None and order.payment_intent == intent["id"]:
            continue
        if order is None:
            why = "its order does not exist"
        elif order.payment_intent is not None:
            why = f"its order is linked to {order.payment_intent}"
        else:
            why = f"its order is {order.status} and not linked to it"
        kind = "orphan_intent"
        if intent["status"] == "succeeded" and order is not None and order.payment_intent is None:
            kind = "paid_there_not_here"
        detail = f"{intent['status']} at Stripe ({intent['amount']} {intent['currency']}); {why}"
        money = intent["status"] in HOLDS_MONEY
        report.findings.append(Finding(kind, money, detail, order_id, intent["id"]))
    for order_id, ids in succeeded.items():
        if len(ids) > 1:
            detail = f"{len(ids)} succeeded intents: {', '.join(sorted(ids))}"
            report.findings.append(Finding("multiple_succeeded", True, detail, order_id))


async def _check_inbox(sessions: async_sessionmaker[AsyncSession], report: Audit) -> None:
    since = datetime.fromtimestamp(report.since, UTC)
    async with sessions() as session:
        events = await session.scalars(
            select(WebhookEvent)
            .where(WebhookEvent.outcome == "unmatched", WebhookEvent.received_at >= since)
            .order_by(WebhookEvent.received_at)
        )
        for event in events:
            obj = (event.payload.get("data") or {}).get("object") or {}
            order_id = (obj.get("metadata") or {}).get(ORDER_KEY)
            detail = f"{event.type} for {event.object_id}, naming an order not here to match"
            report.findings.append(
                Finding(
                    "unmatched_event",
                    event.type in MONEY_EVENTS,
                    detail,
                    order_id if isinstance(order_id, str) else None,
                    event=event.stripe_event_id,
                )
            )


async def _check_outbox(
    sessions: async_sessionmaker[AsyncSession], report: Audit, retention_days: float
) -> None:
    """The window's order history entries and order events, held against each other: each
    transition's event is written with it (app.orders.service), same order, type, cause and
    time. History older than the events' retention is not held against events the relay may
    have pruned."""
    since = datetime.fromtimestamp(report.since, UTC)
    until = datetime.fromtimestamp(report.until, UTC)
    retained = max(since, datetime.now(UTC) - timedelta(days=retention_days))
    event_type = case(
        (OrderHistory.from_status.is_(None), literal(CREATED)),
        else_=literal("order.") + OrderHistory.to_status,
    )
    pair = and_(
        Event.object_type == "order",
        Event.object_id == OrderHistory.order_id,
        Event.type == event_type,
        Event.cause == OrderHistory.source,
        Event.created == OrderHistory.at,
    )
    async with sessions() as session:
        lonely = await session.execute(
            select(OrderHistory.order_id, event_type, OrderHistory.source)
            .where(
                OrderHistory.at.between(retained, until),
                not_(select(Event.id).where(pair).exists()),
            )
            .order_by(OrderHistory.id)
        )
        for order_id, type_, source in lonely:
            detail = f"{type_} caused by {source} has no event"
            report.findings.append(Finding("transition_without_event", False, detail, order_id))
        orphans = await session.execute(
            select(Event.id, Event.object_id, Event.type, Event.cause)
            .where(
                Event.object_type == "order",
                Event.created.between(since, until),
                not_(select(OrderHistory.id).where(pair).exists()),
                not_(_of_a_discarded_order()),
            )
            .order_by(Event.created, Event.id)
        )
        for event_id, order_id, type_, cause in orphans:
            detail = f"{type_} caused by {cause} has no history entry"
            report.findings.append(
                Finding("event_without_transition", False, detail, order_id, event=event_id)
            )


def _of_a_discarded_order() -> Exists:
    """Whether the enclosing query's `Event` is of an order discarded after its `order.created`
    went out: no order row, and `order.discarded` its newest event."""
    discarded, later = aliased(Event), aliased(Event)
    newer = select(later.id).where(
        later.object_type == "order",
        later.object_id == discarded.object_id,
        later.created > discarded.created,
    )
    return (
        select(discarded.id)
        .where(
            discarded.object_type == "order",
            discarded.object_id == Event.object_id,
            discarded.type == DISCARDED,
            not_(newer.exists()),
            not_(select(Order.id).where(Order.id == discarded.object_id).exists()),
        )
        .exists()
    )


def _order_named(intent: dict[str, Any]) -> str | None:
    order_id = (intent.get("metadata") or {}).get(ORDER_KEY)
    return order_id if isinstance(order_id, str) and order_id else None
