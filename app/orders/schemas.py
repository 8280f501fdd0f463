"""Response bodies for orders: the order, its status history, and Stripe-like lists."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from app.models import Order, OrderHistory, OrderStatus
from app.models.base import aware

ORDER_EXAMPLE: dict[str, Any] = {
    "id": "ord_x6Yt0qJk3mZp9sLwQe2R",
    "object": "order",
    "status": "paid",
    "amount": 2000,
    "currency": "usd",
    "amount_received": 2000,
    "amount_refunded": 0,
    "payment_intent": "pi_3Nq8ZbHk2yW1xV0u",
    "checkout_session": None,
    "customer": "cus_123",
    "description": "Software subscription",
    "metadata": {"order_id": "order_12345"},
    "created_at": "2026-11-26T12:00:00Z",
    "updated_at": "2026-11-26T12:00:03Z",
    "history": [
        {
            "from": None,
            "to": "pending",
            "at": "2026-11-26T12:00:00Z",
            "source": "api:POST /payment-intents",
        },
        {
            "from": "pending",
            "to": "paid",
            "at": "2026-11-26T12:00:03Z",
            "source": "evt_3Nq8ZbHk2yW1xV0u",
        },
    ],
}


class OrderHistoryRead(BaseModel):
    """One status change, and what caused it: a Stripe event id (`evt_…`) or an API call."""

    model_config = ConfigDict(populate_by_name=True)

    from_: OrderStatus | None = Field(
        alias="from", description="The status before; null for the order's creation."
    )
    to: OrderStatus
    at: datetime
    source: str = Field(examples=["evt_3Nq8ZbHk2yW1xV0u", "api:POST /payment-intents"])

    @classmethod
    def of(cls, entry: OrderHistory) -> OrderHistoryRead:
        return cls(
            from_=OrderStatus(entry.from_status) if entry.from_status else None,
            to=OrderStatus(entry.to_status),
            at=aware(entry.at),
            source=entry.source,
        )


class OrderRead(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [ORDER_EXAMPLE]})

    id: str
    object: Literal["order"] = "order"
    status: OrderStatus
    amount: int = Field(description="In the currency's minor unit.")
    currency: str
    amount_received: int
    amount_refunded: int
    payment_intent: str | None
    checkout_session: str | None
    customer: str | None
    description: str | None
    metadata: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    history: list[OrderHistoryRead] = Field(description="Every status change, oldest first.")

    @classmethod
    def of(cls, order: Order) -> OrderRead:
        return cls(
            id=order.id,
            status=OrderStatus(order.status),
            amount=order.amount,
            currency=order.currency,
            amount_received=order.amount_received,
            amount_refunded=order.amount_refunded,
            payment_intent=order.payment_intent,
            checkout_session=order.checkout_session,
            customer=order.customer,
            description=order.description,
            metadata=dict(order.metadata_ or {}),
            created_at=aware(order.created_at),
            updated_at=aware(order.updated_at),
            history=[OrderHistoryRead.of(entry) for entry in order.history],
        )


class OrderList(BaseModel):
    """A page of orders, newest first; pass the last id as `starting_after` for the next."""

    object: Literal["list"] = "list"
    data: list[OrderRead]
    has_more: bool
    url: str = "/orders"
