"""The one rule that keeps the billing mirrors from moving backwards, with no I/O.

Stripe does not order its deliveries, and the events of a test clock's advance all carry the
clock's time as their `created`. So, for a subscription or an invoice already mirrored:
- a terminal state never changes (subscription `canceled`/`incomplete_expired`, invoice
  `paid`/`void`; an `uncollectible` invoice can still be paid);
- an event older than the last one applied is stale;
- an event as old as the last one applied, or any event for a row only an API answer (or
  reconcile) wrote, cannot be placed: the object is read from Stripe, whose answer is current;
- a newer event applies its object.
"""

from __future__ import annotations

from enum import StrEnum

TERMINAL = {
    "subscription": frozenset({"canceled", "incomplete_expired"}),
    "invoice": frozenset({"paid", "void"}),
}


class Placement(StrEnum):
    APPLY = "apply"  # the event's object is newer than the row: store it
    REFETCH = "refetch"  # cannot tell: store the object as Stripe has it now
    STALE = "stale"  # older than the row, or the row is final: leave it


def place(
    kind: str, status: str | None, row_event_created: int | None, event_created: int | None
) -> Placement:
    """Where an event about a mirrored `kind` ("subscription", "invoice") falls against the row:
    its `status`, the `created` of the last event applied to it (None: written by an API answer
    or reconcile only), and the event's `created` (None: unknown)."""
    if status in TERMINAL[kind]:
        return Placement.STALE
    if row_event_created is None or event_created is None:
        return Placement.REFETCH
    if event_created < row_event_created:
        return Placement.STALE
    if event_created == row_event_created:
        return Placement.REFETCH
    return Placement.APPLY


def may_overwrite(kind: str, status: str | None) -> bool:
    """Whether a row in `status` may take a state Stripe answered (an API answer, a refetch,
    reconcile): anything but a terminal state."""
    return status not in TERMINAL[kind]
