"""Events, read from the outbox (app.models.Event)."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from app.errors import InvalidRequest, NotFound
from app.models import Event


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
    if starting_after is not None:
        cursor = await session.scalar(select(Event).where(Event.id == starting_after))
        if cursor is None:
            raise InvalidRequest(
                f"No such event: '{starting_after}'",
                code="resource_missing",
                param="starting_after",
            )
        # A row comparison, which the indexes ending in (created, id) answer as a range.
        query = query.where(tuple_(Event.created, Event.id) < tuple_(cursor.created, cursor.id))
    query = query.order_by(Event.created.desc(), Event.id.desc()).limit(limit + 1)
    rows = (await session.scalars(query)).all()
    return rows[:limit], len(rows) > limit
