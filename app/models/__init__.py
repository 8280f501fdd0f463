"""SQLAlchemy models, one module per table family; importing this registers them all."""

from app.models.base import Base
from app.models.billing import Invoice, SimulatedClock, Subscription
from app.models.event import Event
from app.models.infrastructure import IdempotencyKey, WebhookEvent
from app.models.order import Order, OrderHistory, OrderStatus
from app.models.stripe_objects import (
    CheckoutSession,
    Customer,
    PaymentIntent,
    Refund,
    RefundRequest,
)
from app.models.subscriber import DeliveryAttempt, EventDelivery, WebhookEndpoint

__all__ = [
    "Base",
    "CheckoutSession",
    "Customer",
    "DeliveryAttempt",
    "Event",
    "EventDelivery",
    "IdempotencyKey",
    "Invoice",
    "Order",
    "OrderHistory",
    "OrderStatus",
    "PaymentIntent",
    "Refund",
    "RefundRequest",
    "SimulatedClock",
    "Subscription",
    "WebhookEndpoint",
    "WebhookEvent",
]
