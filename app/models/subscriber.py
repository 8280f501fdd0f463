"""Subscribers to the service's events: their webhook endpoints, one delivery per event and
endpoint (written by the relay when it hands the event on), and each attempt at a delivery."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, Integer, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, Json, StripeId, new_id, utcnow
from app.models.event import Event


class WebhookEndpoint(Base):
    """Where a subscriber takes events: `url`, the event types it listens to (`["*"]` for all),
    and the secret the deliveries are signed with. After a rotation, `previous_secret` still
    signs (as a second `v1`) until `previous_secret_expires_at`."""

    __tablename__ = "webhook_endpoints"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=lambda: new_id("we"))
    url: Mapped[str] = mapped_column(Text)
    description: Mapped[str | None] = mapped_column(String(500))
    enabled_events: Mapped[list[str]] = mapped_column(Json)
    # `enabled` or `disabled`: a disabled endpoint gets no new deliveries and none is attempted.
    status: Mapped[str] = mapped_column(String(16), default="enabled")
    secret: Mapped[str] = mapped_column(String(128))
    previous_secret: Mapped[str | None] = mapped_column(String(128))
    previous_secret_expires_at: Mapped[datetime | None] = mapped_column()
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", Json, default=dict)
    created: Mapped[datetime] = mapped_column(default=utcnow)


class EventDelivery(Base):
    """One event to one endpoint, until the endpoint answers 2xx (`succeeded`) or the retry
    window closes (`failed`). `object_id` and `event_created` are the event's, copied so that
    only the oldest pending delivery per endpoint and object is due (per object, in order)."""

    __tablename__ = "event_deliveries"
    __table_args__ = (
        # The relay's scan: pending deliveries by when they are due, then oldest event first,
        # so that the deliveries an older one holds back come after it.
        Index(
            "ix_event_deliveries_due",
            "next_attempt_at",
            "event_created",
            "event_id",
            postgresql_where=text("status = 'pending'"),
            sqlite_where=text("status = 'pending'"),
        ),
        # "Is an older delivery of this object to this endpoint still pending?"
        Index(
            "ix_event_deliveries_pending_per_object",
            "endpoint_id",
            "object_id",
            "event_created",
            postgresql_where=text("status = 'pending'"),
            sqlite_where=text("status = 'pending'"),
        ),
        Index("ix_event_deliveries_event_id", "event_id"),
        Index("ix_event_deliveries_endpoint_id_created", "endpoint_id", "created"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=lambda: new_id("del"))
    event_id: Mapped[str] = mapped_column(ForeignKey("events.id", ondelete="CASCADE"))
    endpoint_id: Mapped[str] = mapped_column(ForeignKey("webhook_endpoints.id", ondelete="CASCADE"))
    object_id: Mapped[str] = mapped_column(StripeId)
    event_created: Mapped[datetime] = mapped_column()
    # `pending`, `succeeded` or `failed` (no 2xx within the retry window).
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    # A relay holds a delivery it is attempting until then; past it, another relay may retry.
    leased_until: Mapped[datetime | None] = mapped_column()
    created: Mapped[datetime] = mapped_column(default=utcnow)
    completed_at: Mapped[datetime | None] = mapped_column()


def new_delivery(event: Event, endpoint_id: str, now: datetime) -> dict[str, Any]:
    """The row of a new delivery of `event` to the endpoint, due now: the relay's fan-out (which
    holds it back behind a pending delivery of the same object) and
    `POST /events/{id}/redeliver` both write it."""
    return {
        "id": new_id("del"),
        "event_id": event.id,
        "endpoint_id": endpoint_id,
        "object_id": event.object_id,
        "event_created": event.created,
        "status": "pending",
        "attempts": 0,
        "next_attempt_at": now,
        "created": now,
    }


class DeliveryAttempt(Base):
    """One POST of a delivery: the endpoint's status code (none if it never answered), how long
    it took, the start of its answer, or what went wrong (`timeout`, `connection refused`)."""

    __tablename__ = "delivery_attempts"
    __table_args__ = (Index("ix_delivery_attempts_delivery_id", "delivery_id", "at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    delivery_id: Mapped[str] = mapped_column(ForeignKey("event_deliveries.id", ondelete="CASCADE"))
    at: Mapped[datetime] = mapped_column(default=utcnow)
    status_code: Mapped[int | None] = mapped_column(Integer)
    duration_ms: Mapped[int] = mapped_column(Integer)
    excerpt: Mapped[str | None] = mapped_column(String(500))
    error: Mapped[str | None] = mapped_column(String(255))
