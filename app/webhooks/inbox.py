"""The webhook inbox: every verified event is stored once (`webhook_events`, unique on the
Stripe event id) with what it did, in the transaction that applies it."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, cast

from sqlalchemy import Subquery, Table, bindparam, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.sql.dml import ReturningInsert

from app.models import WebhookEvent
from app.models.base import utcnow
from app.observability import record_webhook
from app.orders.state import Decision

log = logging.getLogger("app.webhooks")
LOCK_WAIT_MS = 2000
# The payment intent events the service acts on.
PAYMENT_INTENT_EVENTS = tuple(
    f"payment_intent.{kind}"
    for kind in (
        "created",
        "requires_action",
        "processing",
        "amount_capturable_updated",
        "succeeded",
        "payment_failed",
        "canceled",
    )
)


class Outcome(StrEnum):
    RECEIVED = "received"  # stored, not yet handled (only ever seen inside the transaction)
    APPLIED = "applied"  # recorded what it says
    IGNORED = "ignored"  # a type we do not handle, or an object that is not ours
    STALE = "stale"  # behind or equal to what the order already says
    # Names one of our orders that is not there (or an intent it is not linked to), past the
    # time a commit race could explain: kept for `python -m app audit`, not retried.
    UNMATCHED = "unmatched"


@dataclass(frozen=True)
class Receipt:
    duplicate: bool
    outcome: Outcome | None = None
    order_id: str | None = None


def outcome_of(decision: Decision) -> Outcome:
    return Outcome.APPLIED if decision is Decision.APPLY else Outcome.STALE


def lock_timeout() -> Subquery:
    """A one-row subquery that sets the transaction's lock_timeout (`set_config(…, true)` is
    SET LOCAL) when a statement reads it: an order whose creating transaction is still open (its
    Stripe call in flight), or that an API request holds, is waited for briefly, then answered
    with a 503 for Stripe to deliver again, rather than holding a connection for as long as the
    other transaction takes."""
    return select(
        func.set_config("lock_timeout", f"{LOCK_WAIT_MS}ms", True).label("value")
    ).subquery()


_INBOX = cast(Table, WebhookEvent.__table__)
_STORED = ("stripe_event_id", "type", "object_id", "outcome", "payload", "received_at")


def _store_statement(postgres: bool) -> ReturningInsert[tuple[int]]:
    """The inbox row's INSERT … ON CONFLICT DO NOTHING RETURNING id; on Postgres it sets the
    lock timeout first, in the same round trip."""
    values = {name: bindparam(f"p_{name}", type_=_INBOX.c[name].type) for name in _STORED}
    if not postgres:
        return (
            sqlite_insert(_INBOX)
            .values(values)
            .on_conflict_do_nothing(index_elements=["stripe_event_id"])
            .returning(_INBOX.c.id)
        )
    timeout = lock_timeout()
    row = select(*values.values()).where(timeout.c.value.is_not(None))
    return (
        pg_insert(_INBOX)
        .from_select(_STORED, row)
        .on_conflict_do_nothing(index_elements=["stripe_event_id"])
        .returning(_INBOX.c.id)
    )


STORE = {postgres: _store_statement(postgres) for postgres in (False, True)}
RECORD_OUTCOME = (
    update(_INBOX).where(_INBOX.c.id == bindparam("p_id")).values(outcome=bindparam("p_outcome"))
)


def store_params(payload: dict[str, Any], outcome: Outcome) -> dict[str, Any]:
    """STORE's parameters for a verified event."""
    obj: dict[str, Any] = payload.get("data", {}).get("object") or {}
    return {
        "p_stripe_event_id": payload["id"],
        "p_type": payload["type"],
        "p_object_id": obj.get("id"),
        "p_outcome": outcome,
        "p_payload": payload,
        "p_received_at": utcnow(),
    }


def log_outcome(
    event_id: str, event_type: str, order_id: str | None, outcome: str, level: int = logging.INFO
) -> None:
    log.log(
        level,
        "webhook %s %s order=%s outcome=%s",
        event_id,
        event_type,
        order_id,
        outcome,
        extra={
            "stripe_event_id": event_id,
            "event_type": event_type,
            "order_id": order_id,
            "outcome": outcome,
        },
    )
    record_webhook(event_type, "failed" if outcome == "retry" else outcome)
