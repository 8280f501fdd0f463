"""How far behind the relay is: events not yet handed on, the oldest one's age, and deliveries
still pending; for `/metrics` and `/health/ready`."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import Event, EventDelivery
from app.models.base import aware, utcnow


@dataclass(frozen=True)
class Backlog:
    unpublished: int
    oldest_age_seconds: float
    pending_deliveries: int


async def backlog(session: AsyncSession) -> Backlog:
    """Read through the partial indexes of unpublished events and pending deliveries."""
    count, oldest = (
        await session.execute(
            select(func.count(), func.min(Event.created)).where(Event.published_at.is_(None))
        )
    ).one()
    pending = await session.scalar(
        select(func.count()).select_from(EventDelivery).where(EventDelivery.status == "pending")
    )
    age = 0.0 if oldest is None else max(0.0, (utcnow() - aware(oldest)).total_seconds())
    return Backlog(int(count), age, int(pending or 0))
