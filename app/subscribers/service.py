"""Webhook endpoints and their deliveries: every input is checked before anything is written; the
request's session is flushed, never committed, here."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from datetime import timedelta

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.errors import InvalidRequest, NotFound
from app.events.service import get_event
from app.events.types import ALL_EVENTS, EVENT_TYPES
from app.models import DeliveryAttempt, EventDelivery, WebhookEndpoint
from app.models.base import new_id, utcnow
from app.models.subscriber import new_delivery
from app.pages import newest_by_time
from app.subscribers.schemas import WebhookEndpointCreate, WebhookEndpointUpdate
from app.subscribers.urls import check_url

SECRET_PREFIX = "whsec_"
ENABLED, DISABLED = "enabled", "disabled"


def listens(enabled_events: Sequence[str], event_type: str) -> bool:
    """Whether an endpoint with these `enabled_events` takes events of `event_type`."""
    return ALL_EVENTS in enabled_events or event_type in enabled_events


def new_secret() -> str:
    """`whsec_` and 32 random URL-safe characters."""
    return SECRET_PREFIX + secrets.token_urlsafe(24)


def checked_events(enabled_events: Sequence[str]) -> list[str]:
    """`enabled_events` without repeats, in their order; a 400 naming the first that is not an
    event type (or a `*` beside others)."""
    for index, name in enumerate(enabled_events):
        if name == ALL_EVENTS and len(enabled_events) > 1:
            raise InvalidRequest(
                f"enabled_events[{index}]: '*' (every event) must be alone.",
                code="parameter_invalid",
                param=f"enabled_events[{index}]",
            )
        if name != ALL_EVENTS and name not in EVENT_TYPES:
            raise InvalidRequest(
                f"enabled_events[{index}]: '{name[:64]}' is not an event type; one of "
                f"{', '.join(sorted(EVENT_TYPES))}, or '*' alone.",
                code="parameter_invalid",
                param=f"enabled_events[{index}]",
            )
    return list(dict.fromkeys(enabled_events))


async def create_endpoint(
    session: AsyncSession, body: WebhookEndpointCreate, settings: Settings
) -> WebhookEndpoint:
    events = checked_events(body.enabled_events)
    await check_url(body.url, settings)
    row = WebhookEndpoint(
        id=new_id("we"),
        url=body.url,
        description=body.description or None,
        enabled_events=events,
        status=ENABLED,
        secret=new_secret(),
        metadata_=dict(body.metadata or {}),
        created=utcnow(),
    )
    session.add(row)
    await session.flush()
    return row


async def get_endpoint(
    session: AsyncSession, endpoint_id: str, *, param: str = "id", for_update: bool = False
) -> WebhookEndpoint:
    query = select(WebhookEndpoint).where(WebhookEndpoint.id == endpoint_id)
    if for_update:
        query = query.with_for_update()
    row = await session.scalar(query)
    if row is None:
        raise NotFound(f"No such webhook endpoint: '{endpoint_id}'", param=param)
    return row


async def list_endpoints(
    session: AsyncSession, *, limit: int, starting_after: str | None
) -> tuple[Sequence[WebhookEndpoint], bool]:
    return await newest_by_time(
        session,
        select(WebhookEndpoint),
        WebhookEndpoint,
        "webhook endpoint",
        limit=limit,
        starting_after=starting_after,
    )


async def update_endpoint(
    session: AsyncSession, endpoint_id: str, body: WebhookEndpointUpdate, settings: Settings
) -> WebhookEndpoint:
    events = None if body.enabled_events is None else checked_events(body.enabled_events)
    if body.url is not None:
        await check_url(body.url, settings)
    row = await get_endpoint(session, endpoint_id, for_update=True)
    if body.url is not None:
        row.url = body.url
    if events is not None:
        row.enabled_events = events
    if body.description is not None:
        row.description = body.description or None
    if body.metadata is not None:
        merged = {**(row.metadata_ or {}), **body.metadata}
        row.metadata_ = {key: value for key, value in merged.items() if value != ""}
    if body.disabled is not None:
        row.status = DISABLED if body.disabled else ENABLED
    await session.flush()
    return row


async def delete_endpoint(session: AsyncSession, endpoint_id: str) -> None:
    """Delete the endpoint; its deliveries and their attempts go with it (ON DELETE CASCADE)."""
    await get_endpoint(session, endpoint_id, for_update=True)
    await session.execute(delete(WebhookEndpoint).where(WebhookEndpoint.id == endpoint_id))


async def rotate_secret(
    session: AsyncSession, endpoint_id: str, expires_in_seconds: int
) -> WebhookEndpoint:
    """A new secret; the current one still signs for `expires_in_seconds` (0: not at all). A
    secret kept from an earlier rotation is dropped."""
    row = await get_endpoint(session, endpoint_id, for_update=True)
    if expires_in_seconds > 0:
        row.previous_secret = row.secret
        row.previous_secret_expires_at = utcnow() + timedelta(seconds=expires_in_seconds)
    else:
        row.previous_secret = None
        row.previous_secret_expires_at = None
    row.secret = new_secret()
    await session.flush()
    return row


async def redeliver(
    session: AsyncSession, event_id: str, endpoint_id: str | None
) -> list[EventDelivery]:
    """A new pending delivery of the event, due now, to the named endpoint or to every enabled
    endpoint that listens to its type."""
    event = await get_event(session, event_id)
    if endpoint_id is not None:
        endpoint = await get_endpoint(session, endpoint_id, param="endpoint")
        if endpoint.status != ENABLED:
            raise InvalidRequest(
                f"Webhook endpoint '{endpoint_id}' is disabled: enable it first "
                '(`POST /webhook-endpoints/{id}` with `"disabled": false`).',
                code="endpoint_disabled",
                param="endpoint",
            )
        if not listens(endpoint.enabled_events, event.type):
            raise InvalidRequest(
                f"Webhook endpoint '{endpoint_id}' does not listen to {event.type} events.",
                code="endpoint_not_listening",
                param="endpoint",
            )
        targets = [endpoint]
    else:
        enabled = await session.scalars(
            select(WebhookEndpoint)
            .where(WebhookEndpoint.status == ENABLED)
            .order_by(WebhookEndpoint.created, WebhookEndpoint.id)
        )
        targets = [e for e in enabled if listens(e.enabled_events, event.type)]
        if not targets:
            raise InvalidRequest(
                f"No enabled webhook endpoint listens to {event.type} events.",
                code="endpoint_not_listening",
            )
    now = utcnow()
    deliveries = [EventDelivery(**new_delivery(event, endpoint.id, now)) for endpoint in targets]
    session.add_all(deliveries)
    await session.flush()
    return deliveries


async def deliveries_of_event(session: AsyncSession, event_id: str) -> Sequence[EventDelivery]:
    """Every delivery of the event, oldest first."""
    await get_event(session, event_id)
    found = await session.scalars(
        select(EventDelivery)
        .where(EventDelivery.event_id == event_id)
        .order_by(EventDelivery.created, EventDelivery.id)
    )
    return found.all()


async def deliveries_of_endpoint(
    session: AsyncSession,
    endpoint_id: str,
    *,
    status: str | None,
    limit: int,
    starting_after: str | None,
) -> tuple[Sequence[EventDelivery], bool]:
    """A page of the endpoint's deliveries, newest first, and whether more follow."""
    await get_endpoint(session, endpoint_id)
    query = select(EventDelivery).where(EventDelivery.endpoint_id == endpoint_id)
    if status is not None:
        query = query.where(EventDelivery.status == status)
    return await newest_by_time(
        session, query, EventDelivery, "delivery", limit=limit, starting_after=starting_after
    )


async def attempts_of(
    session: AsyncSession, deliveries: Sequence[EventDelivery]
) -> dict[str, list[DeliveryAttempt]]:
    """Each delivery's attempts, oldest first."""
    found: dict[str, list[DeliveryAttempt]] = {d.id: [] for d in deliveries}
    if not found:
        return found
    rows = await session.scalars(
        select(DeliveryAttempt)
        .where(DeliveryAttempt.delivery_id.in_(list(found)))
        .order_by(DeliveryAttempt.at, DeliveryAttempt.id)
    )
    for attempt in rows:
        found[attempt.delivery_id].append(attempt)
    return found
