"""Response bodies for events: the service's own event, shaped like Stripe's, and lists."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from app.models import Event
from app.models.base import aware

EVENT_EXAMPLE: dict[str, Any] = {
    "id": "evt_Qm3x9Lk2Zp8sWq1Rt5Yb",
    "object": "event",
    "type": "order.paid",
    "created": 1796558403,
    "cause": "evt_3Nq8ZbHk2yW1xV0u",
    "data": {
        "object": {
            "object": "order",
            "id": "ord_x6Yt0qJk3mZp9sLwQe2R",
            "status": "paid",
            "amount": 2000,
            "currency": "usd",
            "amount_received": 2000,
            "amount_refunded": 0,
            "customer": "cus_123",
            "payment_intent": "pi_3Nq8ZbHk2yW1xV0u",
            "checkout_session": None,
            "description": "Software subscription",
            "metadata": {"order_id": "order_12345"},
        }
    },
}


class EventData(BaseModel):
    object: dict[str, Any] = Field(description="The object as it stood right after the change.")


class EventRead(BaseModel):
    """One change the service made: an order's transition (`order.created`, `order.paid`, …), a
    subscription's new status (`subscription.active`, …) or an invoice's outcome
    (`invoice.paid`, `invoice.payment_failed`, `invoice.voided`,
    `invoice.marked_uncollectible`). `order.discarded`: a create Stripe refused after its
    `order.created` went out; the order is gone, its object shows it as `discarded`."""

    id: str = Field(examples=["evt_Qm3x9Lk2Zp8sWq1Rt5Yb"])
    object: Literal["event"] = "event"
    type: str = Field(examples=["order.paid"])
    created: int = Field(description="When the change was made, in unix seconds.")
    cause: str = Field(
        description="What made the change: a Stripe event id (`evt_…`), an API call "
        "(`api:POST /payment-intents`) or `reconcile`, as the order's history names it.",
        examples=["evt_3Nq8ZbHk2yW1xV0u", "api:POST /payment-intents"],
    )
    data: EventData

    @classmethod
    def of(cls, row: Event) -> EventRead:
        return cls.of_columns(row.id, row.type, row.created, row.cause, row.object)

    @classmethod
    def of_columns(
        cls, event_id: str, event_type: str, created: datetime, cause: str, obj: dict[str, Any]
    ) -> EventRead:
        """From the event's columns, as a statement that reads no `Event` returns them."""
        return cls(
            id=event_id,
            type=event_type,
            created=int(aware(created).timestamp()),
            cause=cause,
            data=EventData(object=obj),
        )


class EventList(BaseModel):
    object: Literal["list"] = "list"
    data: list[EventRead]
    has_more: bool
    url: str = "/events"
