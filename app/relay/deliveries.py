"""POSTing deliveries to subscribers' endpoints: claim the due ones, sign and send each, record
the attempt, and schedule the next one or settle the delivery.

A delivery is due when its time has come, its endpoint is enabled, no relay holds it, and no
older delivery of the same object to the same endpoint is still pending: per endpoint, each
object's events arrive in the order they were written, an event held back by a failing one until
that one succeeds or gives up. A relay claims deliveries by leasing them (`FOR UPDATE SKIP
LOCKED`, then `leased_until`, committed) and sends them outside any transaction. Two relays never
send one delivery at once unless one outlived its lease (stalled past the timeout plus a margin);
a relay killed mid-send leaves a lease that expires, and the delivery is sent again: at least
once, always.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

import httpx
from sqlalchemy import ColumnElement, CursorResult, and_, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import aliased

from app.config import Settings
from app.models import DeliveryAttempt, Event, EventDelivery, WebhookEndpoint
from app.models.base import aware, utcnow
from app.relay.outbox import event_body
from app.subscribers.signing import SIGNATURE_HEADER, active_secrets, sign
from app.subscribers.urls import refused_reason

log = logging.getLogger("app.relay")

EXCERPT_CHARS = 500
# A lease outlives the POST's timeout by this much before another relay may take the delivery.
LEASE_MARGIN_SECONDS = 30.0
USER_AGENT = "payments-service-relay/1"


@dataclass(frozen=True)
class Claimed:
    """A leased delivery and what sending it needs."""

    id: str
    event_id: str
    event_type: str
    endpoint_id: str
    url: str
    secrets: list[str]
    body: bytes
    attempts: int
    created: datetime
    leased_until: datetime


@dataclass(frozen=True)
class Outcome:
    status_code: int | None
    duration_ms: int
    excerpt: str | None
    error: str | None

    @property
    def succeeded(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def due(now: datetime) -> ColumnElement[bool]:
    """The condition of a due delivery (see the module's docstring)."""
    older = aliased(EventDelivery)
    return and_(
        EventDelivery.status == "pending",
        EventDelivery.next_attempt_at <= now,
        or_(EventDelivery.leased_until.is_(None), EventDelivery.leased_until < now),
        ~select(older.id)
        .where(
            older.endpoint_id == EventDelivery.endpoint_id,
            older.object_id == EventDelivery.object_id,
            older.status == "pending",
            or_(
                older.event_created < EventDelivery.event_created,
                and_(
                    older.event_created == EventDelivery.event_created,
                    older.event_id < EventDelivery.event_id,
                ),
            ),
        )
        .exists(),
    )


async def claim(
    sessions: async_sessionmaker[AsyncSession], settings: Settings, limit: int
) -> list[Claimed]:
    """Lease up to `limit` due deliveries, oldest due first."""
    now = utcnow()
    lease = now + timedelta(seconds=settings.events_delivery_timeout_seconds + LEASE_MARGIN_SECONDS)
    async with sessions() as session, session.begin():
        rows = (
            await session.execute(
                select(EventDelivery, Event, WebhookEndpoint)
                .join(Event, Event.id == EventDelivery.event_id)
                .join(WebhookEndpoint, WebhookEndpoint.id == EventDelivery.endpoint_id)
                .where(due(now), WebhookEndpoint.status == "enabled")
                .order_by(EventDelivery.next_attempt_at)
                .limit(limit)
                .with_for_update(of=EventDelivery, skip_locked=True)
            )
        ).all()
        if not rows:
            return []
        # Leased only while still unleased: on SQLite, which has no row locks, this write is what
        # keeps a second relay from taking the same deliveries.
        leased = set(
            await session.scalars(
                update(EventDelivery)
                .where(
                    EventDelivery.id.in_([delivery.id for delivery, _, _ in rows]),
                    EventDelivery.status == "pending",
                    or_(EventDelivery.leased_until.is_(None), EventDelivery.leased_until < now),
                )
                .values(leased_until=lease)
                .returning(EventDelivery.id),
                execution_options={"synchronize_session": False},
            )
        )
        return [
            Claimed(
                id=delivery.id,
                event_id=event.id,
                event_type=event.type,
                endpoint_id=endpoint.id,
                url=endpoint.url,
                secrets=active_secrets(endpoint, now),
                body=event_body(event),
                attempts=delivery.attempts,
                created=aware(delivery.created),
                leased_until=lease,
            )
            for delivery, event, endpoint in rows
            if delivery.id in leased
        ]


async def send(http: httpx.AsyncClient, settings: Settings, delivery: Claimed) -> Outcome:
    """One signed POST of the event to the endpoint; never raises."""
    started = time.perf_counter()

    def took() -> int:
        return round((time.perf_counter() - started) * 1000)

    refused = await refused_reason(delivery.url, settings)
    if refused is not None:
        return Outcome(None, took(), None, f"refused: {refused}"[:255])
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        SIGNATURE_HEADER: sign(delivery.body, delivery.secrets, int(time.time())),
    }
    try:
        answer = await http.post(
            delivery.url,
            content=delivery.body,
            headers=headers,
            timeout=settings.events_delivery_timeout_seconds,
            follow_redirects=False,
        )
    except httpx.TimeoutException:
        return Outcome(None, took(), None, "timeout")
    except httpx.HTTPError as exc:
        return Outcome(None, took(), None, f"{type(exc).__name__}: {exc}"[:255])
    return Outcome(answer.status_code, took(), answer.text[:EXCERPT_CHARS] or None, None)


def next_attempt(settings: Settings, delivery: Claimed, now: datetime) -> datetime | None:
    """When to try again after a failed attempt, or None: the retry window is over."""
    attempts = delivery.attempts + 1
    delay = min(
        settings.events_retry_base_seconds * 2 ** (attempts - 1),
        settings.events_retry_max_interval_seconds,
    )
    when = now + timedelta(seconds=delay)
    if when > delivery.created + timedelta(seconds=settings.events_retry_window_seconds):
        return None
    return when


async def record(
    sessions: async_sessionmaker[AsyncSession],
    settings: Settings,
    delivery: Claimed,
    outcome: Outcome,
) -> str:
    """Write the attempt and the delivery's new state; the delivery's status afterwards, or
    `gone` when the delivery was deleted meanwhile (nothing written)."""
    now = utcnow()
    if outcome.succeeded:
        status, values = "succeeded", {"completed_at": now}
    else:
        retry = next_attempt(settings, delivery, now)
        if retry is None:
            status, values = "failed", {"completed_at": now}
        else:
            status, values = "pending", {"next_attempt_at": retry}
    async with sessions() as session, session.begin():
        moved = await session.execute(
            update(EventDelivery)
            .where(EventDelivery.id == delivery.id, EventDelivery.status == "pending")
            .values(
                status=status,
                attempts=EventDelivery.attempts + 1,
                leased_until=None,
                **values,
            )
        )
        if cast(CursorResult[Any], moved).rowcount == 0 and not await session.scalar(
            select(EventDelivery.id).where(EventDelivery.id == delivery.id)
        ):
            return "gone"  # its endpoint or event was deleted while it was being sent
        await session.execute(
            insert(DeliveryAttempt).values(
                delivery_id=delivery.id,
                at=now,
                status_code=outcome.status_code,
                duration_ms=outcome.duration_ms,
                excerpt=outcome.excerpt,
                error=outcome.error,
            )
        )
    log.info(
        "delivery %s of %s to %s: %s (%s)",
        delivery.id,
        delivery.event_id,
        delivery.endpoint_id,
        status,
        outcome.status_code if outcome.error is None else outcome.error,
        extra={
            "delivery_id": delivery.id,
            "event_id": delivery.event_id,
            "endpoint_id": delivery.endpoint_id,
            "status_code": outcome.status_code,
            "duration_ms": outcome.duration_ms,
        },
    )
    return status
