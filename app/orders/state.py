"""The order state machine: a transition table and the rules that read Stripe's statuses.
Pure: no I/O, no clock. Nothing moves backwards; a late or repeated status is `STALE`/`SAME`.

    pending → requires_action → processing → authorized → paid → partially_refunded → refunded
    side exits: payment_failed (the customer may try again), canceled, expired, abandoned (no
    payment intent was ever made: `reconcile` found none at Stripe)
"""

from __future__ import annotations

from enum import StrEnum

from app.models.order import OrderStatus as S

TRANSITIONS: dict[S, frozenset[S]] = {
    S.PENDING: frozenset(
        {S.REQUIRES_ACTION, S.PROCESSING, S.AUTHORIZED, S.PAID, S.PAYMENT_FAILED, S.CANCELED,
         S.EXPIRED, S.ABANDONED}
    ),
    S.REQUIRES_ACTION: frozenset(
        {S.PROCESSING, S.AUTHORIZED, S.PAID, S.PAYMENT_FAILED, S.CANCELED, S.EXPIRED}
    ),
    S.PROCESSING: frozenset({S.AUTHORIZED, S.PAID, S.PAYMENT_FAILED, S.CANCELED}),
    S.AUTHORIZED: frozenset({S.PAID, S.CANCELED}),
    S.PAID: frozenset({S.PARTIALLY_REFUNDED, S.REFUNDED}),
    S.PARTIALLY_REFUNDED: frozenset({S.REFUNDED}),
    S.PAYMENT_FAILED: frozenset(
        {S.REQUIRES_ACTION, S.PROCESSING, S.AUTHORIZED, S.PAID, S.CANCELED, S.EXPIRED}
    ),
    S.CANCELED: frozenset(),
    S.EXPIRED: frozenset(),
    S.ABANDONED: frozenset(),
    S.REFUNDED: frozenset(),
}  # fmt: skip
FINAL = frozenset(s for s, targets in TRANSITIONS.items() if not targets)


class Decision(StrEnum):
    APPLY = "apply"  # a move forward: record it
    SAME = "same"  # already there: nothing to do
    STALE = "stale"  # behind or beside where the order is: ignore it


def decide(current: S, target: S) -> Decision:
    if current == target:
        return Decision.SAME
    return Decision.APPLY if target in TRANSITIONS[current] else Decision.STALE


def status_for_payment_intent(pi_status: str, *, failed: bool) -> S | None:
    """The order status a PaymentIntent status means; None for one that says nothing new
    (`requires_payment_method` with no error is where every order starts)."""
    if pi_status == "requires_payment_method":
        return S.PAYMENT_FAILED if failed else None
    return {
        "requires_confirmation": None,
        "requires_action": S.REQUIRES_ACTION,
        "processing": S.PROCESSING,
        "requires_capture": S.AUTHORIZED,
        "succeeded": S.PAID,
        "canceled": S.CANCELED,
    }.get(pi_status)


def status_for_refunds(amount_received: int, amount_refunded: int) -> S | None:
    """PARTIALLY_REFUNDED or REFUNDED once money has gone back; None while nothing has."""
    if amount_refunded <= 0:
        return None
    return S.REFUNDED if amount_refunded >= amount_received else S.PARTIALLY_REFUNDED
