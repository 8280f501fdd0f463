"""The outbox: the service's own events, each written in the transaction of the change it
reports (an order's transition, a subscription's status, an invoice's outcome), for the relay
to deliver after they commit."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Index, String, text
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, Json, StripeId, new_id, utcnow


class Event(Base):
    """One change: `type` (`order.paid`, `subscription.active`, `invoice.paid`, …), the object
    as it stands after the change, and its `cause`: the Stripe event id or the API call (or
    `reconcile`) that made it, the same value an order's history entry names."""

    __tablename__ = "events"
    __table_args__ = (
        # `GET /events` pages newest first by (created, id), filtered by type or object.
        Index("ix_events_created_id", "created", "id"),
        Index("ix_events_type_created_id", "type", "created", "id"),
        Index("ix_events_object_id_created_id", "object_id", "created", "id"),
        # The relay's scan: the rows not published yet, oldest first (a small index).
        Index(
            "ix_events_unpublished",
            "created",
            "id",
            postgresql_where=text("published_at IS NULL"),
            sqlite_where=text("published_at IS NULL"),
        ),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=lambda: new_id("evt"))
    type: Mapped[str] = mapped_column(String(64))
    created: Mapped[datetime] = mapped_column(default=utcnow)
    object_type: Mapped[str] = mapped_column(String(32))
    object_id: Mapped[str] = mapped_column(StripeId)
    object: Mapped[dict[str, Any]] = mapped_column(Json)
    cause: Mapped[str] = mapped_column(String(255))
    # When the relay handed the event on (null: still to deliver).
    published_at: Mapped[datetime | None] = mapped_column()
