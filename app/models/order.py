"""Orders and their history: what a shop sells, moved through the PaymentIntent lifecycle."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.models.base import Base, Json, StripeId, Timestamps, new_id, utcnow


class OrderStatus(StrEnum):
    PENDING = "pending"
    REQUIRES_ACTION = "requires_action"
    PROCESSING = "processing"
    AUTHORIZED = "authorized"
    PAID = "paid"
    PARTIALLY_REFUNDED = "partially_refunded"
    REFUNDED = "refunded"
    PAYMENT_FAILED = "payment_failed"
    CANCELED = "canceled"
    EXPIRED = "expired"
    ABANDONED = "abandoned"  # no payment intent was ever made (set by `reconcile`)


class Order(Timestamps, Base):
    __tablename__ = "orders"
    __table_args__ = (
        # Lists filter by status and/or customer and page newest first by (created_at, id).
        Index("ix_orders_created_at_id", "created_at", "id"),
        Index("ix_orders_status_created_at_id", "status", "created_at", "id"),
        Index("ix_orders_customer_created_at_id", "customer", "created_at", "id"),
        Index("ix_orders_customer_status_created_at_id", "customer", "status", "created_at", "id"),
        UniqueConstraint("idempotency_owner", "idempotency_key"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=lambda: new_id("ord"))
    status: Mapped[OrderStatus] = mapped_column(String(32), default=OrderStatus.PENDING)
    amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    amount_received: Mapped[int] = mapped_column(BigInteger, default=0)
    amount_refunded: Mapped[int] = mapped_column(BigInteger, default=0)
    customer: Mapped[str | None] = mapped_column(StripeId)
    payment_intent: Mapped[str | None] = mapped_column(StripeId, unique=True)
    checkout_session: Mapped[str | None] = mapped_column(StripeId, unique=True)
    description: Mapped[str | None] = mapped_column(String(1000))
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", Json, default=dict)
    # Counts payment attempts, so each attempt gets its own Stripe idempotency key.
    attempts: Mapped[int] = mapped_column(default=0)
    # The caller (its API key's digest) and `Idempotency-Key` that created the order, if any: a
    # retry of that request finds this order instead of making another.
    idempotency_owner: Mapped[str | None] = mapped_column(String(64))
    idempotency_key: Mapped[str | None] = mapped_column(String(255))

    history: Mapped[list[OrderHistory]] = relationship(
        back_populates="order", lazy="raise", order_by="OrderHistory.id"
    )


class OrderHistory(Base):
    """One status change: from, to, when, and what caused it (a Stripe event id or an API call)."""

    __tablename__ = "order_history"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    order_id: Mapped[str] = mapped_column(ForeignKey("orders.id"), index=True)
    from_status: Mapped[str | None] = mapped_column(String(32))
    to_status: Mapped[str] = mapped_column(String(32))
    source: Mapped[str] = mapped_column(String(255))
    at: Mapped[datetime] = mapped_column(default=utcnow)

    order: Mapped[Order] = relationship(back_populates="history", lazy="raise")
