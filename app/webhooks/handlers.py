"""Stripe events → order transitions, behind the inbox (`inbox`).

`receive` stores the event in the inbox (`webhook_events`, unique on the Stripe event id) with
INSERT … ON CONFLICT DO NOTHING and applies it only when the row is new, in one transaction of
its own: a redelivery changes nothing, and a failure leaves nothing half-applied, so Stripe's
retry finds the event unprocessed. On Postgres the usual delivery (a payment intent's event for
the order linked to it) is taken by `fast_path`, with the same guarantees; every other event is
applied here.

An event naming one of our orders (`service_order_id` in its object's metadata) that the service
does not hold, or whose order is linked to another object of its kind, is answered 503 while it
is young enough to be racing the order's commit (`WEBHOOK_UNMATCHED_AFTER_SECONDS` after its
`created`), so Stripe delivers it again; after that it is stored as `unmatched`, acknowledged,
counted, and listed by `python -m app audit`: an orphan of a lost or abandoned order is never
retried forever, and never applied to an order it does not belong to.

Stripe does not order its deliveries. Every handler is written so the order ends in Stripe's
final state whatever the order of arrival: the state machine refuses moves backwards, amounts
only grow, and a move out of `payment_failed` (a retry, or a late event from before the failure)
is checked against the payment intent as Stripe has it now.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.db import engine_of, is_postgres
from app.errors import AppError, InvalidRequest, NotFound
from app.models import CheckoutSession, Order, OrderStatus, PaymentIntent
from app.observability import record_webhook
from app.orders.service import (
    ORDER_KEY,
    apply_refunded_amount,
    find_order_for_checkout_session,
    find_order_for_payment_intent,
    get_order,
    move,
    record_checkout_session,
    record_refund,
    sync_payment_intent,
)
from app.orders.state import Decision, status_for_payment_intent
from app.stripe_gateway import StripeGateway
from app.webhooks import billing, fast_path
from app.webhooks.inbox import (
    LOCK_WAIT_MS,
    PAYMENT_INTENT_EVENTS,
    RECORD_OUTCOME,
    STORE,
    Outcome,
    Receipt,
    log,
    log_outcome,
    outcome_of,
    store_params,
)

__all__ = ["HANDLERS", "LOCK_WAIT_MS", "OrderNotReady", "Outcome", "Receipt", "receive"]


class OrderNotReady(AppError):
    """The event names one of our orders that is not visible yet (its creating transaction has
    not committed) or that another transaction holds for longer than LOCK_WAIT_MS. Answered
    with a 503 so Stripe delivers the event again."""

    status = 503
    type = "api_error"
    code = "order_not_ready"


class Unmatched(Exception):
    """The event names an order that is not there, or not linked to the event's object, and is
    too old for a commit race to explain it: stored as `unmatched`."""


class EventNotStored(AppError):
    """The database failed while storing or applying the event (it is down, or a write was
    refused): the transaction is rolled back and Stripe delivers the event again."""

    status = 503
    type = "api_error"
    code = "event_not_stored"


@dataclass(frozen=True)
class Result:
    outcome: Outcome
    order_id: str | None = None


@dataclass(frozen=True)
class Event:
    id: str
    type: str
    object: dict[str, Any]
    session: AsyncSession
    gateway: StripeGateway
    created: int | None = None

    @property
    def may_be_racing(self) -> bool:
        """Young enough that the order it names may still be committing."""
        if self.created is None:
            return False
        return time.time() - self.created < self.gateway.webhook_unmatched_after


Handler = Callable[[Event], Awaitable[Result]]


async def receive(
    sessions: async_sessionmaker[AsyncSession], gateway: StripeGateway, payload: dict[str, Any]
) -> Receipt:
    """Store a verified event once and, if it is new, apply it; committed when it returns."""
    event_id, event_type = payload["id"], payload["type"]
    try:
        engine = engine_of(sessions)
        if is_postgres(engine):
            receipt = await fast_path.receive(engine, payload)
            if receipt is not None:
                return receipt
        async with sessions.begin() as session:
            return await _store_and_apply(session, gateway, payload)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        # A signed event whose object has the right shape but fields that cannot be read (a
        # `status` that is a list, `metadata` that is a string): rolled back, and refused.
        log.exception(
            "webhook %s %s unreadable",
            event_id,
            event_type,
            extra={"stripe_event_id": event_id, "event_type": event_type, "outcome": "refused"},
        )
        raise InvalidRequest(
            f"The signed event's object is not a readable {event_type} object "
            f"({type(exc).__name__}); nothing of it was stored.",
            code="webhook_payload_invalid",
        ) from None
    except DBAPIError as exc:
        if not _lock_timeout(exc):
            # The database is unreachable or refused a write: nothing of the event was kept.
            # Answered here (not as an unhandled error, after which the server drops the
            # connection Stripe would reuse) so Stripe sees a 503 and delivers it again.
            log.exception(
                "webhook %s %s not stored",
                event_id,
                event_type,
                extra={"stripe_event_id": event_id, "event_type": event_type, "outcome": "failed"},
            )
            record_webhook(event_type, "failed")
            raise EventNotStored(
                "The event could not be stored; nothing of it was applied. Deliver it again.",
                headers={"Retry-After": "1"},
            ) from None
        log_outcome(event_id, event_type, None, "retry", level=logging.WARNING)
        raise OrderNotReady(
            "What this event names is being written by another transaction; deliver this "
            "event again.",
            headers={"Retry-After": "1"},
        ) from None


async def _store_and_apply(
    session: AsyncSession, gateway: StripeGateway, payload: dict[str, Any]
) -> Receipt:
    event_id, event_type = payload["id"], payload["type"]
    obj: dict[str, Any] = payload.get("data", {}).get("object") or {}
    inserted = await session.scalar(
        STORE[is_postgres(session)], store_params(payload, Outcome.RECEIVED)
    )
    if inserted is None:
        log_outcome(event_id, event_type, None, "duplicate")
        return Receipt(duplicate=True)
    handler = HANDLERS.get(event_type, _ignore)
    created = payload.get("created")
    event = Event(
        event_id, event_type, obj, session, gateway, created if isinstance(created, int) else None
    )
    try:
        result = await handler(event)
    except OrderNotReady:
        log_outcome(event_id, event_type, None, "retry", level=logging.WARNING)
        raise
    except Unmatched as exc:
        await session.execute(RECORD_OUTCOME, {"p_id": inserted, "p_outcome": Outcome.UNMATCHED})
        log_outcome(event_id, event_type, None, Outcome.UNMATCHED.value, level=logging.WARNING)
        log.warning("webhook %s %s unmatched: %s", event_id, event_type, exc)
        return Receipt(duplicate=False, outcome=Outcome.UNMATCHED)
    await session.execute(RECORD_OUTCOME, {"p_id": inserted, "p_outcome": result.outcome})
    log_outcome(event_id, event_type, result.order_id, result.outcome.value)
    return Receipt(duplicate=False, outcome=result.outcome, order_id=result.order_id)


def _lock_timeout(exc: DBAPIError) -> bool:
    """Postgres's lock_not_available (55P03): `lock_timeout` ran out."""
    orig = exc.orig
    codes = {getattr(orig, "sqlstate", None), getattr(orig, "pgcode", None)}
    cause = getattr(orig, "__cause__", None)
    codes.add(getattr(cause, "sqlstate", None))
    return "55P03" in codes


# Payment intents ----------------------------------------------------------------------------


async def payment_intent_event(event: Event) -> Result:
    intent = event.object
    order = await _order_for(
        event, await find_order_for_payment_intent(event.session, intent["id"]), "payment_intent"
    )
    if order is None:
        return Result(Outcome.IGNORED)
    if event.type == "payment_intent.created" and await _mirrored(event.session, intent["id"]):
        # The first event of an intent we already recorded (from the API's response) says
        # nothing new, and must not overwrite a newer snapshot if it arrives late.
        return Result(Outcome.STALE, order.id)
    failed = event.type == "payment_intent.payment_failed"
    target = status_for_payment_intent(intent["status"], failed=failed)
    if order.status == OrderStatus.PAYMENT_FAILED and target not in (
        None,
        OrderStatus.PAYMENT_FAILED,
    ):
        # A retry after the failure, or an event from before it delivered late: only Stripe's
        # current view of the intent can tell.
        current = await event.gateway.retrieve_payment_intent(intent["id"])
        intent = current.to_dict()
        failed = (
            intent["status"] == "requires_payment_method"
            and intent.get("last_payment_error") is not None
        )
        target = status_for_payment_intent(intent["status"], failed=failed)
    decision = await sync_payment_intent(event.session, order, intent, event.id, failed=failed)
    if order.amount_refunded > 0:
        # A refund delivered before the payment it refunds.
        await apply_refunded_amount(event.session, order, order.amount_refunded, event.id)
    if target is None:
        return Result(Outcome.APPLIED, order.id)
    return Result(outcome_of(decision), order.id)


# Refunds ------------------------------------------------------------------------------------


async def charge_refunded(event: Event) -> Result:
    charge = event.object
    order = await _order_of_intent(event.session, charge.get("payment_intent"))
    if order is None:
        return Result(Outcome.IGNORED)
    if not charge.get("captured"):
        # An authorization released by a cancel: no money came in, none goes back.
        return Result(Outcome.IGNORED, order.id)
    amount = int(charge["amount"])
    captured = int(charge.get("amount_captured") or amount)
    # Stripe counts the uncaptured rest of a partial capture as refunded.
    refunded = max(0, int(charge.get("amount_refunded") or 0) - (amount - captured))
    order.amount_received = max(order.amount_received, captured)
    decision = await apply_refunded_amount(event.session, order, refunded, event.id)
    return Result(outcome_of(decision), order.id)


async def refund_event(event: Event) -> Result:
    refund = event.object
    order = await _order_of_intent(event.session, refund.get("payment_intent"))
    if order is None:
        return Result(Outcome.IGNORED)
    await record_refund(event.session, order, refund)
    return Result(Outcome.APPLIED, order.id)


# Checkout sessions --------------------------------------------------------------------------

CHECKOUT_TARGETS = {
    "checkout.session.expired": OrderStatus.EXPIRED,
    "checkout.session.async_payment_succeeded": OrderStatus.PAID,
    "checkout.session.async_payment_failed": OrderStatus.PAYMENT_FAILED,
}


async def checkout_session_event(event: Event) -> Result:
    checkout = event.object
    order = await _order_for(
        event,
        await find_order_for_checkout_session(event.session, checkout["id"]),
        "checkout_session",
    )
    if order is None:
        # Subscription and setup sessions have no order: keep the mirror of the ones we made.
        known = await event.session.scalar(
            select(CheckoutSession.id).where(CheckoutSession.stripe_id == checkout["id"])
        )
        if known is None:
            return Result(Outcome.IGNORED)
        await record_checkout_session(event.session, None, checkout)
        return Result(Outcome.APPLIED)
    await record_checkout_session(event.session, order, checkout)
    if event.type == "checkout.session.completed":
        if checkout.get("payment_status") != "paid":
            # Paid later (or never): the intent's events and async_payment_* will say.
            return Result(Outcome.APPLIED, order.id)
        target = OrderStatus.PAID
    else:
        target = CHECKOUT_TARGETS[event.type]
    if target is OrderStatus.PAID and checkout.get("amount_total"):
        order.amount_received = max(order.amount_received, int(checkout["amount_total"]))
    decision = await move(event.session, order, target, event.id)
    if decision is Decision.APPLY and target is OrderStatus.PAID and order.amount_refunded > 0:
        await apply_refunded_amount(event.session, order, order.amount_refunded, event.id)
    return Result(outcome_of(decision), order.id)


# Subscriptions, invoices, test clocks -------------------------------------------------------


async def billing_event(event: Event) -> Result:
    """Mirrored whoever made the object; no order is involved (app.webhooks.billing)."""
    return Result(
        await billing.apply(
            event.session, event.gateway, event.type, event.object, event.created, event.id
        )
    )


# Everything else ----------------------------------------------------------------------------


async def _ignore(_event: Event) -> Result:
    return Result(Outcome.IGNORED)


HANDLERS: dict[str, Handler] = {
    **dict.fromkeys(PAYMENT_INTENT_EVENTS, payment_intent_event),
    "charge.refunded": charge_refunded,
    "refund.created": refund_event,
    "refund.updated": refund_event,
    **{
        f"checkout.session.{kind}": checkout_session_event
        for kind in ("completed", "expired", "async_payment_succeeded", "async_payment_failed")
    },
    **dict.fromkeys(billing.EVENT_TYPES, billing_event),
}


# ---------------------------------------------------------------------------------------------


async def _order_for(event: Event, found: Order | None, linked_by: str) -> Order | None:
    """The order found by the event's object (its column `linked_by`), else the one the
    object's metadata names (under ORDER_KEY; a shop's own `order_id` is not ours), which must
    be linked to that object or to none yet (and not abandoned). None: not ours. Naming an
    order that is not there, or that belongs to another object, raises OrderNotReady (503)
    while the event may be racing its commit, Unmatched after."""
    if found is not None:
        return found
    order_id = (event.object.get("metadata") or {}).get(ORDER_KEY)
    if not isinstance(order_id, str) or not order_id:
        return None
    try:
        order = await get_order(event.session, order_id, for_update=True)
    except NotFound:
        if event.may_be_racing:
            raise OrderNotReady(
                f"Order '{order_id}' is not there yet; deliver this event again.",
                headers={"Retry-After": "1"},
            ) from None
        raise Unmatched(f"order {order_id} does not exist") from None
    linked = getattr(order, linked_by)
    if linked is not None and linked != event.object.get("id"):
        raise Unmatched(f"order {order_id} belongs to {linked}")
    if order.status == OrderStatus.ABANDONED:
        raise Unmatched(f"order {order_id} was abandoned with no payment intent")
    return order


async def _order_of_intent(session: AsyncSession, intent: Any) -> Order | None:
    intent_id = intent.get("id") if isinstance(intent, dict) else intent
    if not intent_id:
        return None
    return await find_order_for_payment_intent(session, str(intent_id))


async def _mirrored(session: AsyncSession, intent_id: str) -> bool:
    found = await session.scalar(
        select(PaymentIntent.id).where(PaymentIntent.stripe_id == intent_id)
    )
    return found is not None
