"""Health and metrics, for orchestrators and scrapers; none of these need an API key.

- `GET /health`: the process is up and the database answers (kept as it was).
- `GET /health/live`: the process is up (no I/O).
- `GET /health/ready`: database reachable, migrations at head, Stripe reachable, each reported.
- `GET /metrics`: Prometheus text.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Literal

from alembic.script import ScriptDirectory
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from app.db import Session
from app.models import WebhookEvent
from app.observability import CONTENT_TYPE_LATEST, Metrics
from app.relay.status import backlog
from app.stripe_gateway import Gateway, StripeGateway

router = APIRouter(tags=["health"])

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"
STRIPE_TIMEOUT_SECONDS = 2.0
DATABASE_TIMEOUT_SECONDS = 2.0
# Outcomes after which an inbox row needs nothing more; any other row is unprocessed.
FINAL_OUTCOMES = ("applied", "ignored", "stale")


class Health(BaseModel):
    status: str
    database: str


class Live(BaseModel):
    status: Literal["ok"] = "ok"


class Check(BaseModel):
    status: Literal["ok", "failing", "behind"] = Field(
        description="`behind` (the outbox only) reports without failing readiness."
    )
    detail: str | None = Field(default=None, description="Why the check fails or lags.")


class Readiness(BaseModel):
    status: Literal["ok", "unavailable"]
    failing: list[str] = Field(description="The names of the failing checks.")
    checks: dict[str, Check] = Field(
        description="`database`, `migrations`, `stripe`, and `outbox` once the schema is current."
    )


@router.get("/health", summary="Liveness and database readiness")
async def health(session: Session) -> Health:
    """`ok` when the process is up and the database answers a query."""
    await session.execute(text("SELECT 1"))
    return Health(status="ok", database="ok")


@router.get("/health/live", summary="Liveness")
async def live() -> Live:
    """`ok` whenever the process serves requests. No database or Stripe call: restart the
    process only when this fails."""
    return Live()


@router.get(
    "/health/ready",
    summary="Readiness",
    response_model=Readiness,
    response_model_exclude_none=True,
    responses={503: {"model": Readiness, "description": "A check fails: `failing` names it."}},
)
async def ready(request: Request, stripe: Gateway) -> Readiness | JSONResponse:
    """200 when the service can take traffic: the database answers within 2 s, its schema is
    at the migrations' head, and Stripe's API answers any HTTP response within 2 s. Otherwise
    503, with the same body naming the failing checks. The checks run on every call."""
    database, stripe_check = await asyncio.gather(
        _database(request), _stripe(stripe), return_exceptions=False
    )
    checks = {"database": database[0], "migrations": database[1], "stripe": stripe_check}
    if database[1].status == "ok":
        checks["outbox"] = await _outbox(request)
    failing = [name for name, check in checks.items() if check.status == "failing"]
    body = Readiness(status="unavailable" if failing else "ok", failing=failing, checks=checks)
    if failing:
        return JSONResponse(body.model_dump(exclude_none=True), status_code=503)
    return body


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text."}},
)
async def metrics(request: Request) -> Response:
    """Prometheus text exposition, with no API key (expose the port only to your scraper):
    `http_requests_total` and `http_request_duration_seconds` by method, route template and
    status; `stripe_request_duration_seconds` by operation and outcome and
    `stripe_errors_total` by operation and error; `webhook_events_total` by type and outcome
    (applied, duplicate, ignored, stale, failed); `order_transitions_total` by from and to
    status; `webhook_inbox_oldest_unprocessed_age_seconds`, computed at scrape time from the
    stored events not yet applied (0 when none: events are stored and applied in one
    transaction, so it only rises if that stops being true). The relay's:
    `events_handed_on_total`, `event_deliveries_total` by endpoint and outcome (succeeded,
    retry, failed), and, at scrape time, `outbox_unpublished_events`,
    `outbox_oldest_unpublished_age_seconds` and `event_deliveries_pending`. Counters are per
    process."""
    registry: Metrics = request.app.state.metrics
    try:
        async with request.app.state.sessionmaker() as session:
            oldest = await session.scalar(
                select(func.min(WebhookEvent.received_at)).where(
                    WebhookEvent.outcome.not_in(FINAL_OUTCOMES)
                )
            )
            behind = await backlog(session)
    except Exception:
        # The database is down: the other metrics are still worth scraping; the gauges keep
        # their last values.
        pass
    else:
        age = 0.0
        if oldest is not None:
            received = oldest if oldest.tzinfo else oldest.replace(tzinfo=UTC)
            age = max(0.0, (datetime.now(UTC) - received).total_seconds())
        registry.inbox_age.set(age)
        registry.outbox_depth.set(behind.unpublished)
        registry.outbox_age.set(behind.oldest_age_seconds)
        registry.deliveries_pending.set(behind.pending_deliveries)
    return Response(registry.render(), media_type=CONTENT_TYPE_LATEST)


async def _database(request: Request) -> tuple[Check, Check]:
    try:
        async with asyncio.timeout(DATABASE_TIMEOUT_SECONDS):
            async with request.app.state.sessionmaker() as session:
                current = await _current_revision(session)
    except TimeoutError:
        failed = Check(status="failing", detail=f"no answer within {DATABASE_TIMEOUT_SECONDS:g} s")
        return failed, Check(status="failing", detail="database unreachable")
    except Exception as exc:  # any failure means not ready
        failed = Check(status="failing", detail=f"unreachable: {type(exc).__name__}")
        return failed, Check(status="failing", detail="database unreachable")
    try:
        head = _head()
    except Exception as exc:  # the migration scripts are not where the service expects them
        return Check(status="ok"), Check(
            status="failing", detail=f"migration scripts unreadable: {type(exc).__name__}"
        )
    if current != head:
        return Check(status="ok"), Check(
            status="failing", detail=f"database at {current}, migrations head is {head}"
        )
    return Check(status="ok"), Check(status="ok")


async def _outbox(request: Request) -> Check:
    """`behind` when the oldest event not handed on is older than EVENTS_BACKLOG_ALERT_SECONDS:
    subscribers and RabbitMQ are not hearing of changes (the relay is down, or the broker). Not
    a reason to take the service out of rotation: payments still work."""
    settings = request.app.state.settings
    try:
        async with asyncio.timeout(DATABASE_TIMEOUT_SECONDS):
            async with request.app.state.sessionmaker() as session:
                behind = await backlog(session)
    except Exception as exc:  # reported by the database check already
        return Check(status="behind", detail=f"unknown: {type(exc).__name__}")
    if behind.oldest_age_seconds <= settings.events_backlog_alert_seconds:
        return Check(status="ok")
    return Check(
        status="behind",
        detail=f"events not handed on: {behind.unpublished}, the oldest "
        f"{behind.oldest_age_seconds:.0f} s old (alert at "
        f"{settings.events_backlog_alert_seconds:g} s); deliveries pending: "
        f"{behind.pending_deliveries}",
    )


async def _current_revision(session: AsyncSession) -> str | None:
    await session.execute(text("SELECT 1"))
    try:
        rows = (await session.execute(text("SELECT version_num FROM alembic_version"))).all()
    except Exception:  # no alembic_version table: never migrated
        return None
    return str(rows[0][0]) if len(rows) == 1 else None


@lru_cache(maxsize=1)
def _head() -> str | None:
    return ScriptDirectory(str(MIGRATIONS)).get_current_head()


async def _stripe(gateway: StripeGateway) -> Check:
    problem = await gateway.reachable(STRIPE_TIMEOUT_SECONDS)
    return Check(status="ok") if problem is None else Check(status="failing", detail=problem)
