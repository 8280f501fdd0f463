"""`python -m app reconcile`: bring the orders back to what Stripe holds when webhooks were lost.

Two passes, each item in its own short transaction (a failure costs that item only), safe to run
on a schedule next to the live service and its webhooks:

1. Every order not in a final state and older than `--min-age` seconds: its payment intent is
   fetched from Stripe and recorded (`sync_payment_intent`, source `reconcile`); an order with
   none (its create request lost Stripe's answer) is linked to the intent Stripe holds with its
   id in `metadata['service_order_id']`, if there is one.
2. Stripe events of the last `--since-days` days (`/v1/events`) that are not in the webhook
   inbox go through the webhook endpoint's own path (`app.webhooks.handlers.receive`): stored
   once in the inbox, applied by the same handlers and state machine, oldest first. This brings
   what a payment intent does not show: refunds, Checkout Sessions completed or expired. An
   event whose order does not exist here is skipped and left out of the inbox.

It prints one line per change (`ord_…: from -> to (why)`: a status move, or a payment intent
linked or amounts changed) and a summary, and exits 1 if any item failed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.config import Settings
from app.db import create_engine, create_sessionmaker
from app.errors import AppError
from app.models import OrderHistory, OrderStatus, WebhookEvent
from app.models.base import utcnow
from app.orders.service import (
    ORDER_KEY,
    apply_refunded_amount,
    get_order,
    sync_payment_intent,
    unsettled_order_ids,
)
from app.orders.state import FINAL
from app.stripe_gateway import StripeGateway
from app.webhooks import handlers

SOURCE = "reconcile"
MAX_EVENT_DAYS = 30  # how far back Stripe keeps events
PAGE = 100


@dataclass
class Report:
    orders_checked: int = 0
    orders_linked: int = 0
    changes: int = 0
    events_listed: int = 0
    events_applied: int = 0
    events_skipped: int = 0
    errors: int = 0
    lines: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (
            f"reconcile: {self.changes} changes; {self.orders_checked} orders checked, "
            f"{self.orders_linked} linked to their payment intent; {self.events_listed} events "
            f"listed, {self.events_applied} new to the inbox applied, {self.events_skipped} "
            f"skipped (no such order); {self.errors} errors"
        )


async def reconcile(
    settings: Settings,
    *,
    min_age_seconds: int,
    since_days: int = MAX_EVENT_DAYS,
    out: Callable[[str], None] = lambda _line: None,
) -> Report:
    """Run both passes against `settings`' database and Stripe; `out` gets each line."""
    engine = create_engine(
        settings.database_url,
        settings.database_pool_size,
        settings.database_direct_pool_size,
    )
    gateway = StripeGateway(settings)
    report = Report()

    def say(line: str) -> None:
        report.lines.append(line)
        out(line)

    try:
        sessionmaker = create_sessionmaker(engine)
        await _orders(sessionmaker, gateway, min_age_seconds, report, say)
        await _events(sessionmaker, gateway, since_days, report, say)
    finally:
        await gateway.close()
        await engine.dispose()
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
                line = await _reconcile_order(session, gateway, order_id, report)
        except AppError as exc:
            report.errors += 1
            say(f"{order_id}: failed: {exc.code}: {exc.message}")
            continue
        if line is not None:
            report.changes += 1
            say(line)


async def _reconcile_order(
    session: AsyncSession, gateway: StripeGateway, order_id: str, report: Report
) -> str | None:
    """Record the order's payment intent as Stripe has it; a line if the order changed."""
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
            return None
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
