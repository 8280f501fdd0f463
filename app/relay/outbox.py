"""Handing committed events on: `published_at`, RabbitMQ (when configured) and one delivery
row per listening endpoint, all or nothing.

One relay at a time hands events on (a transaction-scoped advisory lock on Postgres), oldest
first: with any number of relays, each object's events still leave in the order they were
written. The rows are also locked (`FOR UPDATE SKIP LOCKED`), so that a discarded order's events
are either handed on or deleted, never both; and on SQLite, choosing them and marking them
published in one statement keeps two relays from handing on the same events. A failure (the
broker down, a nack) rolls the whole batch back: its events stay unpublished and the next pass
hands them on again, so an event may reach RabbitMQ twice (after a crash between the broker's
confirm and the commit), never zero times.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import cast

from sqlalchemy import Integer, Table, bindparam, exists, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app import pg_direct
from app.db import engine_of, is_postgres
from app.events.schemas import EventRead
from app.models import Event, EventDelivery, WebhookEndpoint
from app.models.base import aware, utcnow
from app.models.subscriber import new_delivery
from app.relay.amqp import AmqpPublisher, Message
from app.relay.planner import walk_indexes
from app.subscribers.service import listens

# pg_advisory_xact_lock's key for "handing events on" (any constant unique to this use).
PUBLISH_LOCK = 0x5041_594D_4F55_5431
_DELIVERIES = cast(Table, EventDelivery.__table__)


def event_body(event: EventRead) -> bytes:
    """What subscribers and the broker receive: the event as `GET /events/{id}` shows it."""
    return event.model_dump_json().encode()


_WAITING = select(exists().where(Event.published_at.is_(None)))
# The oldest `:limit` unpublished events, marked published at `:now`, in one statement: on
# SQLite, which has no row locks, that is what keeps two relays from handing on the same events.
# The rows are chosen by walking the unpublished-only index and written by key, so the outer
# condition is the key alone (with `published_at IS NULL` there too, the planner went through
# that index again for every row it wrote).
_HAND_ON = (
    update(Event)
    .where(
        Event.id.in_(
            select(Event.id)
            .where(Event.published_at.is_(None))
            .order_by(Event.created, Event.id)
            .limit(bindparam("limit", type_=Integer))
            .with_for_update(skip_locked=True)
        )
    )
    .values(published_at=bindparam("now"))
    .returning(Event)
    .execution_options(synchronize_session=False)
)


async def waiting(sessions: async_sessionmaker[AsyncSession]) -> bool:
    """Whether any event is unpublished: what an idle relay asks twenty times a second, so in
    one statement, on Postgres through the direct pool (a few times cheaper than a session's
    transaction)."""
    engine = engine_of(sessions)
    if is_postgres(engine):
        rows = await pg_direct.fetch(engine, _WAITING, {})
        return bool(rows[0][0])
    async with sessions() as session:
        return bool(await session.scalar(_WAITING))


async def hand_on(
    sessions: async_sessionmaker[AsyncSession],
    publisher: AmqpPublisher | None,
    *,
    limit: int = 500,
) -> list[Event]:
    """Hand on up to `limit` of the oldest unpublished events; the events handed on (none when
    there are none, or another relay is handing events on). Raises what the publisher raises,
    having changed nothing."""
    async with sessions() as session, session.begin():
        if is_postgres(session) and not await session.scalar(
            select(func.pg_try_advisory_xact_lock(PUBLISH_LOCK))
        ):
            return []
        await walk_indexes(session)
        now = utcnow()
        events = sorted(
            await session.scalars(_HAND_ON, {"limit": limit, "now": now}),
            key=lambda event: (event.created, event.id),
        )
        if not events:
            return []
        if publisher is not None:
            await publisher.publish([_message(event) for event in events])
        await _fan_out(session, events, now)
    return events


def _message(event: Event) -> Message:
    return Message(
        id=event.id,
        type=event.type,
        object_id=event.object_id,
        created=aware(event.created),
        body=event_body(EventRead.of(event)),
    )


# The latest next attempt of the pending deliveries to `:endpoints` of `:objects`, per pair.
_HELD = (
    select(
        _DELIVERIES.c.endpoint_id,
        _DELIVERIES.c.object_id,
        func.max(_DELIVERIES.c.next_attempt_at),
    )
    .where(
        _DELIVERIES.c.status == "pending",
        _DELIVERIES.c.endpoint_id.in_(bindparam("endpoints", expanding=True)),
        _DELIVERIES.c.object_id.in_(bindparam("objects", expanding=True)),
    )
    .group_by(_DELIVERIES.c.endpoint_id, _DELIVERIES.c.object_id)
)


async def _fan_out(session: AsyncSession, events: Sequence[Event], now: datetime) -> None:
    """One pending delivery per event and enabled endpoint listening to its type."""
    endpoints = (
        await session.execute(
            select(WebhookEndpoint.id, WebhookEndpoint.enabled_events).where(
                WebhookEndpoint.status == "enabled"
            )
        )
    ).all()
    rows = [
        new_delivery(event, endpoint_id, now)
        for event in events
        for endpoint_id, enabled_events in endpoints
        if listens(enabled_events, event.type)
    ]
    if not rows:
        return
    # A delivery behind a pending one of the same object (an endpoint failing) is not due
    # before that one's next attempt: it stays out of the claim's scan meanwhile.
    held = await session.execute(
        _HELD,
        {
            "endpoints": sorted({row["endpoint_id"] for row in rows}),
            "objects": sorted({row["object_id"] for row in rows}),
        },
    )
    not_before = {(endpoint, object_id): aware(at) for endpoint, object_id, at in held}
    for row in rows:
        row["next_attempt_at"] = max(
            now, not_before.get((row["endpoint_id"], row["object_id"]), now)
        )
    await session.execute(insert(_DELIVERIES), rows)
