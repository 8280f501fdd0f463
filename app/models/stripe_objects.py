"""Local mirrors of the Stripe objects we track, each unique on its Stripe id."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    DDL,
    BigInteger,
    ForeignKey,
    Index,
    String,
    UniqueConstraint,
    event,
    func,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, Json, StripeId, Timestamps, utcnow


class Customer(Timestamps, Base):
    """A customer we created on Stripe. The row is committed before the Stripe call (its id keys
    that call), with the parameters sent in `data`; `stripe_id` stays empty when Stripe's answer
    was lost, until a retry with the same Idempotency-Key (app.customers.service)."""

    __tablename__ = "customers"
    __table_args__ = (
        UniqueConstraint("idempotency_owner", "idempotency_key"),
        # Never reuse the id of a rolled-back row on SQLite: it keys a Stripe call.
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    stripe_id: Mapped[str | None] = mapped_column(StripeId, unique=True)
    email: Mapped[str | None] = mapped_column(String(512), index=True)
    name: Mapped[str | None] = mapped_column(String(512))
    default_payment_method: Mapped[str | None] = mapped_column(StripeId)
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", Json, default=dict)
    # Counts the changes made through the service, so each change gets its own Stripe key.
    version: Mapped[int] = mapped_column(default=0, server_default="0")
    # The Stripe object as last seen.
    data: Mapped[dict[str, Any]] = mapped_column(Json, default=dict, server_default=text("'{}'"))
    # The caller (its API key's digest) and `Idempotency-Key` that created the customer, if any:
    # a retry of that request finds this row instead of making another.
    idempotency_owner: Mapped[str | None] = mapped_column(String(64))
    idempotency_key: Mapped[str | None] = mapped_column(String(255))


class PaymentIntent(Timestamps, Base):
    """What we last saw of a PaymentIntent; search and lists are answered from here."""

    __tablename__ = "payment_intents"
    __table_args__ = (
        # Lists and searches page newest first by (created, id); see also the Postgres-only
        # indexes below this class, which serve search's case-insensitive comparisons.
        Index("ix_payment_intents_created_id", "created", "id"),
        Index("ix_payment_intents_status_created_id", "status", "created", "id"),
        Index("ix_payment_intents_currency_created_id", "currency", "created", "id"),
        Index("ix_payment_intents_customer_created_id", "customer", "created", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    stripe_id: Mapped[str] = mapped_column(StripeId, unique=True)
    order_id: Mapped[str] = mapped_column(ForeignKey("orders.id"), index=True)
    status: Mapped[str] = mapped_column(String(32))
    amount: Mapped[int] = mapped_column(BigInteger)
    amount_received: Mapped[int] = mapped_column(BigInteger, default=0)
    amount_capturable: Mapped[int] = mapped_column(BigInteger, default=0)
    currency: Mapped[str] = mapped_column(String(3))
    customer: Mapped[str | None] = mapped_column(StripeId)
    capture_method: Mapped[str | None] = mapped_column(String(32))
    latest_charge: Mapped[str | None] = mapped_column(StripeId)
    created: Mapped[int] = mapped_column(BigInteger)  # Stripe's unix seconds
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", Json, default=dict)
    # The Stripe object as last seen, without its client secret.
    data: Mapped[dict[str, Any]] = mapped_column(Json, default=dict)


# Search (app.payment_intents.search) compares `status` and `currency` as `col = 'value'` (Stripe
# writes both in lower case), `customer` as `lower(col) = 'value'` and metadata as
# `metadata_lower @> {"key": "value"}`, where `metadata_lower` is a column Postgres generates
# from `metadata` with `metadata_lower_values`; the function and the column are the migrations'
# (20261204_7c3f19a0e5d2, 20261204_9b4d0e6c1f27), repeated here for `create_all`. The column is
# not mapped: nothing writes it but Postgres.
Index(
    "ix_payment_intents_lower_customer",
    func.lower(PaymentIntent.customer),
    PaymentIntent.created,
    PaymentIntent.id,
).ddl_if(dialect="postgresql")
event.listen(
    PaymentIntent.__table__,
    "before_create",
    DDL(  # type: ignore[no-untyped-call]
        "CREATE OR REPLACE FUNCTION metadata_lower_values(metadata jsonb) RETURNS jsonb "
        "LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT CASE WHEN jsonb_typeof(metadata) = "
        "'object' THEN coalesce((SELECT jsonb_object_agg(key, lower(value)) FROM "
        "jsonb_each_text(metadata)), '{}'::jsonb) ELSE '{}'::jsonb END $$"
    ).execute_if(dialect="postgresql"),
)
event.listen(
    PaymentIntent.__table__,
    "after_create",
    DDL(  # type: ignore[no-untyped-call]
        "ALTER TABLE payment_intents ADD COLUMN metadata_lower jsonb GENERATED ALWAYS AS "
        "(metadata_lower_values(metadata)) STORED; CREATE INDEX ix_payment_intents_metadata_lower "
        "ON payment_intents USING gin (metadata_lower jsonb_path_ops)"
    ).execute_if(dialect="postgresql"),
)
Index("ix_payment_intents_amount", PaymentIntent.amount).ddl_if(dialect="postgresql")


class CheckoutSession(Timestamps, Base):
    """A session we created. Without an order (subscription and setup modes) the row is committed
    before the Stripe call (its id keys that call); `stripe_id` stays empty when Stripe's answer
    was lost, until a retry with the same Idempotency-Key (app.checkout_sessions.service)."""

    __tablename__ = "checkout_sessions"
    __table_args__ = (
        UniqueConstraint("idempotency_owner", "idempotency_key"),
        # Never reuse the id of a rolled-back row on SQLite: it keys a Stripe call.
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    stripe_id: Mapped[str | None] = mapped_column(StripeId, unique=True)
    order_id: Mapped[str | None] = mapped_column(ForeignKey("orders.id"), index=True)
    mode: Mapped[str] = mapped_column(String(32))
    status: Mapped[str | None] = mapped_column(String(32))
    payment_status: Mapped[str | None] = mapped_column(String(32))
    customer: Mapped[str | None] = mapped_column(StripeId)
    payment_intent: Mapped[str | None] = mapped_column(StripeId)
    subscription: Mapped[str | None] = mapped_column(StripeId)
    amount_total: Mapped[int | None] = mapped_column(BigInteger)
    currency: Mapped[str | None] = mapped_column(String(3))
    url: Mapped[str | None] = mapped_column(String(2048))
    # The caller and `Idempotency-Key` that created a session without an order, if any: a retry
    # of that request finds this row instead of making another.
    idempotency_owner: Mapped[str | None] = mapped_column(String(64))
    idempotency_key: Mapped[str | None] = mapped_column(String(255))


class Refund(Timestamps, Base):
    __tablename__ = "refunds"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    stripe_id: Mapped[str] = mapped_column(StripeId, unique=True)
    order_id: Mapped[str] = mapped_column(ForeignKey("orders.id"), index=True)
    payment_intent: Mapped[str] = mapped_column(StripeId, index=True)
    amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[str | None] = mapped_column(String(32))
    reason: Mapped[str | None] = mapped_column(String(64))


class RefundRequest(Base):
    """A refund asked of Stripe, numbered and committed before the call. `stripe_key` is the
    idempotency key sent to Stripe (from the caller's `Idempotency-Key`, else from `number`), so
    the numbering never depends on which refunds the webhooks have recorded, and a retry with
    the same key sends Stripe the same one. `refund` is Stripe's refund once its answer arrived."""

    __tablename__ = "refund_requests"
    __table_args__ = (UniqueConstraint("order_id", "number"),)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    order_id: Mapped[str] = mapped_column(ForeignKey("orders.id"), index=True)
    number: Mapped[int] = mapped_column()
    stripe_key: Mapped[str] = mapped_column(String(255), unique=True)
    fingerprint: Mapped[str] = mapped_column(String(64))  # the refund's parameters, hashed
    refund: Mapped[str | None] = mapped_column(StripeId)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
