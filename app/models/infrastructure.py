"""The webhook inbox, the Idempotency-Key store, and reconcile's cursor in Stripe's events."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, Json, utcnow


class WebhookEvent(Base):
    """Every Stripe event received, once: the unique event id makes a redelivery a no-op."""

    __tablename__ = "webhook_events"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    stripe_event_id: Mapped[str] = mapped_column(String(255), unique=True)
    type: Mapped[str] = mapped_column(String(255), index=True)
    object_id: Mapped[str | None] = mapped_column(String(255), index=True)
    outcome: Mapped[str] = mapped_column(String(32))  # applied | ignored | stale | unmatched
    payload: Mapped[dict[str, Any]] = mapped_column(Json)
    received_at: Mapped[datetime] = mapped_column(default=utcnow)


class IdempotencyKey(Base):
    """A response we served for an `Idempotency-Key`, replayed for 24 hours."""

    __tablename__ = "idempotency_keys"
    __table_args__ = (UniqueConstraint("owner", "key"),)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    owner: Mapped[str] = mapped_column(String(64))  # a hash of the caller's API key
    key: Mapped[str] = mapped_column(String(255))
    fingerprint: Mapped[str] = mapped_column(String(64))  # method, path and body, hashed
    status_code: Mapped[int | None] = mapped_column()
    response: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    # The process that claimed the key while its request runs (on Postgres, the key of a session
    # advisory lock it holds while it lives): a claim whose holder died is taken over at once.
    holder: Mapped[int | None] = mapped_column(BigInteger)


class ReconcileCursor(Base):
    """Where `reconcile` has got to in one of Stripe's lists, so that the next run reads only what
    is newer: `events`, the newest event fully processed; `orphans`, the end of the last window
    of payment intents checked for orphans."""

    __tablename__ = "reconcile_cursors"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    stripe_id: Mapped[str | None] = mapped_column(String(255))  # the event, for `events`
    created: Mapped[int] = mapped_column(BigInteger)  # Stripe's `created`, Unix seconds
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
