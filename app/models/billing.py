"""Local mirrors of Stripe Billing: subscriptions, invoices, and the test clocks that time them.

Filled by the webhooks (app.webhooks.billing), by the API's own answers and by `reconcile`,
all through app.billing.mirror, which never moves a row backwards (see app.billing.ordering).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import BigInteger, Index, String, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, Json, StripeId, Timestamps


class Subscription(Timestamps, Base):
    """A Stripe subscription as last seen. One made through `POST /subscriptions` is committed
    before the Stripe call (its id keys that call) with `stripe_id` and `status` empty until
    Stripe answers; one made elsewhere (Checkout, the Dashboard) arrives by webhook."""

    __tablename__ = "subscriptions"
    __table_args__ = (
        UniqueConstraint("idempotency_owner", "idempotency_key"),
        Index("ix_subscriptions_customer_status", "customer", "status"),
        # Never reuse the id of a rolled-back row on SQLite: it keys a Stripe call.
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    stripe_id: Mapped[str | None] = mapped_column(StripeId, unique=True)
    customer: Mapped[str | None] = mapped_column(StripeId)
    status: Mapped[str | None] = mapped_column(String(32))
    cancel_at_period_end: Mapped[bool] = mapped_column(default=False, server_default=text("false"))
    # Unix seconds, as Stripe has them; the period is the items' (one period for them all).
    current_period_start: Mapped[int | None] = mapped_column(BigInteger)
    current_period_end: Mapped[int | None] = mapped_column(BigInteger)
    trial_end: Mapped[int | None] = mapped_column(BigInteger)
    canceled_at: Mapped[int | None] = mapped_column(BigInteger)
    ended_at: Mapped[int | None] = mapped_column(BigInteger)
    latest_invoice: Mapped[str | None] = mapped_column(StripeId)
    default_payment_method: Mapped[str | None] = mapped_column(StripeId)
    test_clock: Mapped[str | None] = mapped_column(StripeId)
    # [{"id", "price", "product", "quantity", "current_period_start", "current_period_end"}]
    items: Mapped[list[dict[str, Any]]] = mapped_column(Json, default=list)
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", Json, default=dict)
    # The Stripe object as last seen (the parameters sent, until Stripe answers).
    data: Mapped[dict[str, Any]] = mapped_column(Json, default=dict)
    # When it went past_due (unix seconds, on its test clock if it has one); null otherwise.
    past_due_since: Mapped[int | None] = mapped_column(BigInteger)
    # The `created` of the last event applied; null when only an API answer (or reconcile)
    # wrote the row, so the next event makes the mirror read the subscription from Stripe.
    event_created: Mapped[int | None] = mapped_column(BigInteger)
    # Counts the changes made through the service without an Idempotency-Key, so each gets its
    # own Stripe key.
    version: Mapped[int] = mapped_column(default=0, server_default="0")
    # The caller (its API key's digest), `Idempotency-Key` and parameters (hashed) of the request
    # that created it, if any: a retry of that request finds this row instead of making another.
    idempotency_owner: Mapped[str | None] = mapped_column(String(64))
    idempotency_key: Mapped[str | None] = mapped_column(String(255))
    params_digest: Mapped[str | None] = mapped_column(String(64))


class Invoice(Timestamps, Base):
    """A Stripe invoice as last seen, from webhooks, API answers and `reconcile`."""

    __tablename__ = "invoices"
    __table_args__ = (Index("ix_invoices_customer_status", "customer", "status"),)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    stripe_id: Mapped[str] = mapped_column(StripeId, unique=True)
    customer: Mapped[str | None] = mapped_column(StripeId)
    # `parent.subscription_details.subscription`: an invoice has no `subscription` field.
    subscription: Mapped[str | None] = mapped_column(StripeId, index=True)
    status: Mapped[str | None] = mapped_column(String(32))
    amount_due: Mapped[int] = mapped_column(BigInteger, default=0)
    amount_paid: Mapped[int] = mapped_column(BigInteger, default=0)
    amount_remaining: Mapped[int] = mapped_column(BigInteger, default=0)
    currency: Mapped[str | None] = mapped_column(String(3))
    billing_reason: Mapped[str | None] = mapped_column(String(64))
    period_start: Mapped[int | None] = mapped_column(BigInteger)
    period_end: Mapped[int | None] = mapped_column(BigInteger)
    hosted_invoice_url: Mapped[str | None] = mapped_column(String(2048))
    attempt_count: Mapped[int] = mapped_column(default=0)
    next_payment_attempt: Mapped[int | None] = mapped_column(BigInteger)
    created: Mapped[int | None] = mapped_column(BigInteger)  # Stripe's unix seconds
    data: Mapped[dict[str, Any]] = mapped_column(Json, default=dict)
    event_created: Mapped[int | None] = mapped_column(BigInteger)


class SimulatedClock(Base):
    """A Stripe test clock's time as its last event said (`test_helpers.test_clock.*`): "now"
    for the entitlements of the customers it times."""

    __tablename__ = "test_clocks"

    id: Mapped[str] = mapped_column(StripeId, primary_key=True)
    frozen_time: Mapped[int] = mapped_column(BigInteger)
