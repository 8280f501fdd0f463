"""POSTing deliveries to subscribers' endpoints: claim the due ones, sign and send each, record
the attempt, and schedule the next one or settle the delivery.

A delivery is due when its time has come, its endpoint is enabled, no relay holds it, and no
older delivery of the same object to the same endpoint is still pending: per endpoint, each
object's events arrive in the order they were written, an event held back by a failing one until
that one succeeds or gives up. A held-back delivery's own time is moved to its predecessor's
next attempt (when that one fails, and when the relay writes the delivery), never later than it
could go: the time only keeps it out of the claim's scan, the "oldest pending" check decides.

A relay claims deliveries by leasing them (`FOR UPDATE SKIP LOCKED`, then `leased_until`,
committed) and sends them outside any transaction. Two relays never send one delivery at once
unless one outlived its lease (stalled past the timeout plus a margin); a relay killed mid-send
leaves a lease that expires, and the delivery is sent again: at least once, always.
"""

from __future__ import annotations

import functools
import logging
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, NamedTuple, Protocol, cast

import aiohttp
import orjson
from sqlalchemy import (
    ARRAY,
    Column,
    ColumnElement,
    Executable,
    Integer,
    Select,
    String,
    Table,
    Text,
    Update,
    and_,
    any_,
    bindparam,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy import cast as cast_
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app import pg_direct
from app.config import Settings
from app.db import engine_of, is_postgres
from app.events.schemas import EventRead
from app.models import DeliveryAttempt, Event, EventDelivery, WebhookEndpoint
from app.models.base import aware, utcnow
from app.relay.outbox import event_body
from app.relay.planner import INDEX_WALKS
from app.subscribers.signing import SIGNATURE_HEADER, active_secrets, sign
from app.subscribers.urls import PublicOnlyResolver, refused_reason

log = logging.getLogger("app.relay")

EXCERPT_CHARS = 500
# A line per attempt, by the delivery's status after it: a retry and a deletion at INFO, giving
# up at WARNING; a success at DEBUG only (the attempt's row and `event_deliveries_total` count
# it): at INFO, a line per success cost a fifth of the relay's CPU in a burst (bench/README.md).
_LOG_LEVELS = {
    "succeeded": logging.DEBUG,
    "pending": logging.INFO,
    "gone": logging.INFO,
    "failed": logging.WARNING,
}
# A lease outlives the POST's timeout by this much before another relay may take the delivery.
LEASE_MARGIN_SECONDS = 30.0
USER_AGENT = "payments-service-relay/1"

# The relay's statements are Core statements on the tables: no ORM state for rows it only moves.
_DELIVERIES = cast(Table, EventDelivery.__table__)
_ENDPOINTS = cast(Table, WebhookEndpoint.__table__)
_ATTEMPTS = cast(Table, DeliveryAttempt.__table__)
_EVENTS = cast(Table, Event.__table__)


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
    # The event's object and time: the deliveries of the same object to the same endpoint that
    # come after this one.
    object_id: str
    event_created: datetime


@dataclass(frozen=True)
class Outcome:
    status_code: int | None
    duration_ms: int
    excerpt: str | None
    error: str | None

    @property
    def succeeded(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def _due() -> Select[tuple[str]]:
    """Up to `:limit` due deliveries (see the module's docstring), oldest due first, locked;
    `:now` is the claim's time.

    Each condition is asked of the rows as the scan of the due index reaches them. Whether the
    delivery is its object's oldest pending one is a `LIMIT 1` subquery on the per-object
    index: as `NOT EXISTS`, the planner made it an anti-join over every pending delivery while
    the table's statistics were new. Whether its endpoint is enabled is a subquery too: as a
    join or `IN`, the planner could drive the scan from the endpoint through the per-object
    index and sort every pending delivery."""
    d = _DELIVERIES.c
    now = bindparam("now", type_=d.next_attempt_at.type)
    head = _DELIVERIES.alias("head")
    oldest_pending = (
        select(head.c.id)
        .where(
            head.c.endpoint_id == d.endpoint_id,
            head.c.object_id == d.object_id,
            head.c.status == "pending",
        )
        .order_by(head.c.event_created, head.c.event_id)
        .limit(1)
        .scalar_subquery()
    )
    endpoint_status = (
        select(_ENDPOINTS.c.status).where(_ENDPOINTS.c.id == d.endpoint_id).scalar_subquery()
    )
    return (
        select(d.id)
        .where(
            d.status == "pending",
            d.next_attempt_at <= now,
            or_(d.leased_until.is_(None), d.leased_until < now),
            d.id == oldest_pending,
            endpoint_status == "enabled",
        )
        .order_by(d.next_attempt_at, d.event_created, d.event_id)
        .limit(bindparam("limit", type_=Integer))
        .with_for_update(skip_locked=True)
    )


_DUE = _due()
# A condition on deliveries looked up by id. Not `status = 'pending'`: that matches the
# pending-only indexes, which the planner, from statistics that lag behind a backlog, preferred
# to the primary key, then read every pending delivery.
_UNSETTLED = and_(_DELIVERIES.c.status != "succeeded", _DELIVERIES.c.status != "failed")


def _among(column: Column[str], name: str, postgres: bool) -> ColumnElement[bool]:
    """`column` among the ids in `:name`: one array parameter on Postgres, where the direct pool
    runs each statement as compiled once; an `IN` expanded for each list elsewhere."""
    if postgres:
        return column == any_(bindparam(name, type_=ARRAY(String())))
    return column.in_(bindparam(name, expanding=True))


@dataclass(frozen=True)
class _ByIds:
    """The statements on the deliveries `:ids`, as each database takes a list of ids."""

    # Leased only while still unleased: on SQLite, which has no row locks, this condition is
    # what keeps a second relay from taking the same deliveries.
    lease: Update
    # What sending them needs: their events' columns (the object as JSON text) and their
    # endpoints'.
    read: Select[tuple[Any, ...]]
    # An attempt's outcome, for deliveries leased by this relay (no other writes them until the
    # lease ends); those it moved.
    move: Update


@functools.cache
def _by_ids(postgres: bool) -> _ByIds:
    d = _DELIVERIES.c
    ids = _among(d.id, "ids", postgres)
    return _ByIds(
        lease=update(_DELIVERIES)
        .where(ids, _UNSETTLED, or_(d.leased_until.is_(None), d.leased_until < bindparam("now")))
        .values(leased_until=bindparam("lease"))
        .returning(
            d.id,
            d.attempts,
            d.created,
            d.next_attempt_at,
            d.event_created,
            d.event_id,
            d.object_id,
            d.endpoint_id,
        ),
        read=select(
            d.id,
            _EVENTS.c.id,
            _EVENTS.c.type,
            _EVENTS.c.created,
            _EVENTS.c.cause,
            cast_(_EVENTS.c.object, Text),
            _ENDPOINTS.c.url,
            _ENDPOINTS.c.secret,
            _ENDPOINTS.c.previous_secret,
            _ENDPOINTS.c.previous_secret_expires_at,
        )
        .join(_EVENTS, _EVENTS.c.id == d.event_id)
        .join(_ENDPOINTS, _ENDPOINTS.c.id == d.endpoint_id)
        .where(ids),
        move=update(_DELIVERIES)
        .where(ids, _UNSETTLED)
        .values(
            status=bindparam("b_status"),
            attempts=d.attempts + 1,
            next_attempt_at=bindparam("b_next"),
            completed_at=bindparam("b_completed"),
            leased_until=None,
        )
        .returning(d.id),
    )


# After a failed attempt, the same object's later deliveries to the endpoint are not due before
# its retry (they cannot go before it), so that the claim's scan does not pass over them again
# and again while an endpoint is down.
_HOLD_BACK = (
    update(_DELIVERIES)
    .where(
        _DELIVERIES.c.endpoint_id == bindparam("b_endpoint"),
        _DELIVERIES.c.object_id == bindparam("b_object"),
        _DELIVERIES.c.status == "pending",
        _DELIVERIES.c.event_created > bindparam("b_created"),
        _DELIVERIES.c.next_attempt_at < bindparam("b_next"),
    )
    .values(next_attempt_at=bindparam("b_next"))
)
_ATTEMPT = insert(_ATTEMPTS).values(
    {
        name: bindparam(name)
        for name in ("delivery_id", "at", "status_code", "duration_ms", "excerpt", "error")
    }
)


class _Leased(NamedTuple):
    id: str
    attempts: int
    created: datetime
    next_attempt_at: datetime
    event_created: datetime
    event_id: str
    object_id: str
    endpoint_id: str


class _Transaction(Protocol):
    """The claim's or the record's statements, in one transaction."""

    by_ids: _ByIds

    async def rows(self, statement: Executable, params: Mapping[str, Any]) -> Sequence[Any]: ...

    async def each(self, statement: Executable, params: Sequence[Mapping[str, Any]]) -> None: ...


class _Direct:
    """On Postgres, on the direct pool: SQLAlchemy's execution of these statements cost the
    relay more CPU than their round trips (bench/README.md, "Events out")."""

    by_ids = _by_ids(postgres=True)

    def __init__(self, connection: pg_direct.Connection) -> None:
        self._connection = connection

    async def rows(self, statement: Executable, params: Mapping[str, Any]) -> Sequence[Any]:
        return await self._connection.fetch(statement, params)

    async def each(self, statement: Executable, params: Sequence[Mapping[str, Any]]) -> None:
        await self._connection.executemany(statement, params)


class _InSession:
    by_ids = _by_ids(postgres=False)

    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def rows(self, statement: Executable, params: Mapping[str, Any]) -> Sequence[Any]:
        return (await self._session.execute(statement, params)).all()

    async def each(self, statement: Executable, params: Sequence[Mapping[str, Any]]) -> None:
        await self._session.execute(statement, list(params))


@asynccontextmanager
async def _transaction(sessions: async_sessionmaker[AsyncSession]) -> AsyncIterator[_Transaction]:
    """On Postgres, its plans are index walks (app/relay/planner.py)."""
    engine = engine_of(sessions)
    if is_postgres(engine):
        async with pg_direct.transaction(engine) as connection:
            await connection.fetch(INDEX_WALKS, {})
            yield _Direct(connection)
    else:
        async with sessions() as session, session.begin():
            yield _InSession(session)


async def claim(
    sessions: async_sessionmaker[AsyncSession], settings: Settings, limit: int
) -> list[Claimed]:
    """Lease up to `limit` due deliveries, oldest due first."""
    now = utcnow()
    lease = now + timedelta(seconds=settings.events_delivery_timeout_seconds + LEASE_MARGIN_SECONDS)
    async with _transaction(sessions) as transaction:
        due = await transaction.rows(_DUE, {"now": now, "limit": limit})
        if not due:
            return []
        leased = [
            _Leased(*row)
            for row in await transaction.rows(
                transaction.by_ids.lease,
                {"ids": [row[0] for row in due], "now": now, "lease": lease},
            )
        ]
        if not leased:
            return []
        read = {
            delivery_id: (
                url,
                active_secrets(secret, previous, previous_expires, now),
                event_body(
                    EventRead.of_columns(event_id, event_type, created, cause, orjson.loads(obj))
                ),
            )
            for (
                delivery_id,
                event_id,
                event_type,
                created,
                cause,
                obj,
                url,
                secret,
                previous,
                previous_expires,
            ) in await transaction.rows(
                transaction.by_ids.read, {"ids": [row.id for row in leased]}
            )
        }
    leased.sort(key=lambda row: (row.next_attempt_at, row.event_created, row.event_id))
    return [
        Claimed(
            id=row.id,
            event_id=row.event_id,
            endpoint_id=row.endpoint_id,
            url=url,
            secrets=secrets,
            body=body,
            attempts=row.attempts,
            created=aware(row.created),
            object_id=row.object_id,
            event_created=row.event_created,
        )
        for row in leased
        for url, secrets, body in [read[row.id]]
    ]


def http_session(settings: Settings, connections: int) -> aiohttp.ClientSession:
    """The relay's HTTP client: at most `connections` at once; in live mode (unless
    `WEBHOOK_ENDPOINTS_ALLOW_PRIVATE`), connecting only to addresses it checked itself."""
    pinned = settings.live and not settings.webhook_endpoints_allow_private
    resolver = PublicOnlyResolver() if pinned else None
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=connections, resolver=resolver)
    )


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
    claimed = {delivery.id: delivery for delivery, _ in attempted}
    # Deliveries moving alike (all that succeeded, say) are written by one statement.
    moves: dict[tuple[str, datetime], list[str]] = defaultdict(list)
    for delivery, outcome in attempted:
        retry = None if outcome.succeeded else next_attempt(settings, delivery, now)
        status = "succeeded" if outcome.succeeded else ("failed" if retry is None else "pending")
        moves[(status, retry or now)].append(delivery.id)
    written: dict[str, str] = {}
    async with _transaction(sessions) as transaction:
        for (status, next_at), ids in moves.items():
            completed = None if status == "pending" else now
            moved = [
                row[0]
                for row in await transaction.rows(
                    transaction.by_ids.move,
                    {"ids": ids, "b_status": status, "b_next": next_at, "b_completed": completed},
                )
            ]
            written.update((delivery_id, status) for delivery_id in moved)
            if status == "pending" and moved:
                held_back = [
                    {
                        "b_endpoint": claimed[delivery_id].endpoint_id,
                        "b_object": claimed[delivery_id].object_id,
                        "b_created": claimed[delivery_id].event_created,
                        "b_next": next_at,
                    }
                    for delivery_id in moved
                ]
                await transaction.each(_HOLD_BACK, held_back)
        attempts = [
            {
                "delivery_id": delivery.id,
                "at": now,
                "status_code": outcome.status_code,
                "duration_ms": outcome.duration_ms,
                "excerpt": outcome.excerpt,
                "error": outcome.error,
            }
            for delivery, outcome in attempted
            if delivery.id in written
        ]
        if attempts:
            await transaction.each(_ATTEMPT, attempts)
    statuses = [written.get(delivery.id, "gone") for delivery, _ in attempted]
    for (delivery, outcome), status in zip(attempted, statuses, strict=True):
        log.log(
            _LOG_LEVELS[status],
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
