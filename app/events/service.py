"""Events, read from the outbox (app.models.Event)."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.errors import NotFound
from app.models import Event
from app.pages import newest_by_time


async def get_event(session: AsyncSession, event_id: str) -> Event:
    row = await session.scalar(select(Event).where(Event.id == event_id))
    if row is None:
        raise NotFound(f"No such event: '{event_id}'", param="id")
    return row


async def list_events(
    session: AsyncSession,
    *,
    type: str | None = None,
    object_id: str | None = None,
    limit: int = 10,
    starting_after: str | None = None,
) -> tuple[Sequence[Event], bool]:
    """A page of events, newest first by (created, id), and whether more follow."""
    query = select(Event)
    if type is not None:
        query = query.where(Event.type == type)
    if object_id is not None:
        query = query.where(Event.object_id == object_id)
    return await newest_by_time(
        session, query, Event, "event", limit=limit, starting_after=starting_after
    )
