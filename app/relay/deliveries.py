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
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import cast

import aiohttp
from sqlalchemy import ColumnElement, Table, and_, bindparam, insert, or_, select, update
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
    endpoint_id: str
    url: str
    secrets: list[str]
    body: bytes
    attempts: int
    created: datetime


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
    """The condition of a due delivery (see the module's docstring). Whether it is its object's
    oldest pending delivery is asked as a scalar subquery (`LIMIT 1` on the per-object index,
    run for each row the scan reaches): written as `NOT EXISTS`, the planner turned it into an
    anti-join over every pending delivery whenever the table's statistics were new."""
    head = aliased(EventDelivery)
    oldest_pending = (
        select(head.id)
        .where(
            head.endpoint_id == EventDelivery.endpoint_id,
            head.object_id == EventDelivery.object_id,
            head.status == "pending",
        )
        .order_by(head.event_created, head.event_id)
        .limit(1)
        .scalar_subquery()
    )
    return and_(
        EventDelivery.status == "pending",
        EventDelivery.next_attempt_at <= now,
        or_(EventDelivery.leased_until.is_(None), EventDelivery.leased_until < now),
        EventDelivery.id == oldest_pending,
    )


async def claim(
    sessions: async_sessionmaker[AsyncSession], settings: Settings, limit: int
) -> list[Claimed]:
    """Lease up to `limit` due deliveries, oldest due first."""
    now = utcnow()
    lease = now + timedelta(seconds=settings.events_delivery_timeout_seconds + LEASE_MARGIN_SECONDS)
    async with sessions() as session, session.begin():
        enabled = list(
            await session.scalars(
                select(WebhookEndpoint.id).where(WebhookEndpoint.status == "enabled")
            )
        )
        if not enabled:
            return []
        # The deliveries alone, walked in the due index's order: joined to their events and
        # endpoints here, the planner sorted every pending delivery for each claim.
        candidates = list(
            await session.scalars(
                select(EventDelivery.id)
                .where(due(now), EventDelivery.endpoint_id.in_(enabled))
                .order_by(
                    EventDelivery.next_attempt_at,
                    EventDelivery.event_created,
                    EventDelivery.event_id,
                )
                .limit(limit)
                .with_for_update(skip_locked=True)
            )
        )
        if not candidates:
            return []
        # Leased only while still unleased: on SQLite, which has no row locks, this write is what
        # keeps a second relay from taking the same deliveries.
        leased = list(
            await session.scalars(
                update(EventDelivery)
                .where(
                    EventDelivery.id.in_(candidates),
                    EventDelivery.status == "pending",
                    or_(EventDelivery.leased_until.is_(None), EventDelivery.leased_until < now),
                )
                .values(leased_until=lease)
                .returning(EventDelivery.id),
                execution_options={"synchronize_session": False},
            )
        )
        if not leased:
            return []
        rows = (
            await session.execute(
                select(EventDelivery, Event, WebhookEndpoint)
                .join(Event, Event.id == EventDelivery.event_id)
                .join(WebhookEndpoint, WebhookEndpoint.id == EventDelivery.endpoint_id)
                .where(EventDelivery.id.in_(leased))
                .order_by(
                    EventDelivery.next_attempt_at,
                    EventDelivery.event_created,
                    EventDelivery.event_id,
                )
            )
        ).all()
        return [
            Claimed(
                id=delivery.id,
                event_id=event.id,
                endpoint_id=endpoint.id,
                url=endpoint.url,
                secrets=active_secrets(endpoint, now),
                body=event_body(event),
                attempts=delivery.attempts,
                created=aware(delivery.created),
            )
            for delivery, event, endpoint in rows
        ]


async def send(http: aiohttp.ClientSession, settings: Settings, delivery: Claimed) -> Outcome:
    """One signed POST of the event to the endpoint, redirects not followed, at most the first
    bytes of the answer read; never raises."""
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
        async with http.post(
            delivery.url,
            data=delivery.body,
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=settings.events_delivery_timeout_seconds),
            allow_redirects=False,
        ) as answer:
            start = await answer.content.read(EXCERPT_CHARS * 4)
    except TimeoutError:
        return Outcome(None, took(), None, "timeout")
    except (aiohttp.ClientError, OSError, ValueError) as exc:
        return Outcome(None, took(), None, f"{type(exc).__name__}: {exc}"[:255])
    excerpt = start.decode("utf-8", errors="replace")[:EXCERPT_CHARS] or None
    return Outcome(answer.status, took(), excerpt, None)


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
    attempted: Sequence[tuple[Claimed, Outcome]],
) -> list[str]:
    """Write the attempts and the deliveries' new states in one transaction; each delivery's
    status afterwards, or `gone` when it was deleted meanwhile (its endpoint or event; nothing
    written for it)."""
    now = utcnow()
    async with sessions() as session, session.begin():
        present = set(
            await session.scalars(
                select(EventDelivery.id).where(
                    EventDelivery.id.in_([delivery.id for delivery, _ in attempted])
                )
            )
        )
        statuses, moves, attempts = [], [], []
        for delivery, outcome in attempted:
            if delivery.id not in present:
                statuses.append("gone")
                continue
            retry = None if outcome.succeeded else next_attempt(settings, delivery, now)
            status = (
                "succeeded" if outcome.succeeded else ("failed" if retry is None else "pending")
            )
            statuses.append(status)
            moves.append(
                {
                    "b_id": delivery.id,
                    "b_status": status,
                    "b_attempts": delivery.attempts + 1,
                    "b_next": retry or now,
                    "b_completed": None if status == "pending" else now,
                }
            )
            attempts.append(
                {
                    "delivery_id": delivery.id,
                    "at": now,
                    "status_code": outcome.status_code,
                    "duration_ms": outcome.duration_ms,
                    "excerpt": outcome.excerpt,
                    "error": outcome.error,
                }
            )
        if moves:
            await session.execute(_MOVE, moves)
            await session.execute(insert(DeliveryAttempt), attempts)
    for (delivery, outcome), status in zip(attempted, statuses, strict=True):
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
    return statuses


_DELIVERIES = cast(Table, EventDelivery.__table__)
# The delivery is leased by this relay: no other writes it until its lease ends.
_MOVE = (
    update(_DELIVERIES)
    .where(_DELIVERIES.c.id == bindparam("b_id"), _DELIVERIES.c.status == "pending")
    .values(
        status=bindparam("b_status"),
        attempts=bindparam("b_attempts"),
        next_attempt_at=bindparam("b_next"),
        completed_at=bindparam("b_completed"),
        leased_until=None,
    )
)
