"""`/webhook-endpoints`: where subscribers take the service's events, their secrets and their
delivery logs; and, beside `/events`, an event's redelivery and deliveries."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

from fastapi import APIRouter, Body, Path, Query, Request

from app.auth import Caller
from app.db import Session
from app.models import EventDelivery
from app.models.base import utcnow
from app.subscribers import service
from app.subscribers.schemas import (
    DeliveryList,
    DeliveryRead,
    DeliveryStatus,
    Redelivery,
    SecretRotation,
    WebhookEndpointCreate,
    WebhookEndpointDeleted,
    WebhookEndpointList,
    WebhookEndpointRead,
    WebhookEndpointUpdate,
    WebhookEndpointWithSecret,
)

router = APIRouter(prefix="/webhook-endpoints", tags=["webhook endpoints"])
event_deliveries = APIRouter(prefix="/events", tags=["events"])

EndpointId = Annotated[str, Path(max_length=32, examples=["we_Qm3x9Lk2Zp8sWq1Rt5Yb"])]
EventId = Annotated[str, Path(max_length=32, examples=["evt_Qm3x9Lk2Zp8sWq1Rt5Yb"])]
Limit = Annotated[int, Query(ge=1, le=100, description="Page size, 1 to 100.")]


async def _deliveries(session: Session, rows: Sequence[EventDelivery]) -> list[DeliveryRead]:
    attempts = await service.attempts_of(session, rows)
    return [DeliveryRead.of(row, attempts[row.id]) for row in rows]


@router.post("", summary="Create a webhook endpoint")
async def create_endpoint(
    body: WebhookEndpointCreate, request: Request, session: Session, _caller: Caller
) -> WebhookEndpointWithSecret:
    """Subscribe `url` to the event types in `enabled_events` (or `["*"]`, every type). The
    answer holds the endpoint's `secret` (`whsec_…`), which signs every delivery's
    `Payments-Signature` header: keep it, no other answer shows it (`rotate-secret` makes a new
    one). Deliveries are JSON POSTs of the event, as `GET /events/{id}` shows it."""
    row = await service.create_endpoint(session, body, request.app.state.settings)
    return WebhookEndpointWithSecret.of(row, utcnow())


@router.get("", summary="List webhook endpoints")
async def list_endpoints(
    session: Session,
    _caller: Caller,
    limit: Limit = 10,
    starting_after: Annotated[
        str | None,
        Query(max_length=32, description="The last endpoint id of the previous page."),
    ] = None,
) -> WebhookEndpointList:
    """The webhook endpoints, newest first, without their secrets. Paged like Stripe's lists:
    `has_more` says whether another page follows; fetch it with `starting_after` set to the
    last endpoint's id."""
    rows, has_more = await service.list_endpoints(
        session, limit=limit, starting_after=starting_after
    )
    now = utcnow()
    return WebhookEndpointList(
        data=[WebhookEndpointRead.of(row, now) for row in rows], has_more=has_more
    )


@router.get("/{endpoint_id}", summary="Retrieve a webhook endpoint")
async def get_endpoint(
    endpoint_id: EndpointId, session: Session, _caller: Caller
) -> WebhookEndpointRead:
    """The endpoint, without its secret. An unknown id is a 404."""
    return WebhookEndpointRead.of(await service.get_endpoint(session, endpoint_id), utcnow())


@router.post("/{endpoint_id}", summary="Update a webhook endpoint")
async def update_endpoint(
    endpoint_id: EndpointId,
    body: WebhookEndpointUpdate,
    request: Request,
    session: Session,
    _caller: Caller,
) -> WebhookEndpointRead:
    """Change the fields sent: `url`, `enabled_events`, `description`, `metadata` (merged key by
    key; a key set to `""` is removed), or `disabled` (`true`: no new delivery is made for it
    and none is attempted until `false`)."""
    row = await service.update_endpoint(session, endpoint_id, body, request.app.state.settings)
    return WebhookEndpointRead.of(row, utcnow())


@router.delete("/{endpoint_id}", summary="Delete a webhook endpoint")
async def delete_endpoint(
    endpoint_id: EndpointId, session: Session, _caller: Caller
) -> WebhookEndpointDeleted:
    """Delete the endpoint, with its deliveries and their attempts."""
    await service.delete_endpoint(session, endpoint_id)
    return WebhookEndpointDeleted(id=endpoint_id)


@router.post("/{endpoint_id}/rotate-secret", summary="Roll a webhook endpoint's secret")
async def rotate_secret(
    endpoint_id: EndpointId,
    session: Session,
    _caller: Caller,
    body: Annotated[SecretRotation | None, Body()] = None,
) -> WebhookEndpointWithSecret:
    """A new `secret`, shown in this answer only. The current one keeps signing deliveries
    beside it (a second `v1` in `Payments-Signature`) for `expires_in_seconds` (default a day,
    at most 7 days; 0: it stops at once), so the subscriber can switch without missing one. A
    secret kept from an earlier rotation stops now."""
    rotation = body or SecretRotation()
    row = await service.rotate_secret(session, endpoint_id, rotation.expires_in_seconds)
    return WebhookEndpointWithSecret.of(row, utcnow())


@router.get("/{endpoint_id}/deliveries", summary="List a webhook endpoint's deliveries")
async def list_endpoint_deliveries(
    endpoint_id: EndpointId,
    session: Session,
    _caller: Caller,
    status: Annotated[
        DeliveryStatus | None, Query(description="Only deliveries in this status.")
    ] = None,
    limit: Limit = 10,
    starting_after: Annotated[
        str | None,
        Query(max_length=32, description="The last delivery id of the previous page."),
    ] = None,
) -> DeliveryList:
    """The endpoint's deliveries, newest first, each with its attempts (when, the status code,
    how long, the start of the answer or what went wrong). Paged with `limit` and
    `starting_after`."""
    rows, has_more = await service.deliveries_of_endpoint(
        session, endpoint_id, status=status, limit=limit, starting_after=starting_after
    )
    return DeliveryList(
        data=await _deliveries(session, rows),
        has_more=has_more,
        url=f"/webhook-endpoints/{endpoint_id}/deliveries",
    )


@event_deliveries.post("/{event_id}/redeliver", summary="Deliver an event again")
async def redeliver(
    event_id: EventId,
    session: Session,
    _caller: Caller,
    body: Annotated[Redelivery | None, Body()] = None,
) -> DeliveryList:
    """A new delivery of the event, due now, to `endpoint` (which must be enabled and listen to
    the event's type), or without it to every enabled endpoint that listens to the type. The
    answer lists the deliveries made. An unknown event or endpoint is a 404; no endpoint to
    deliver to is a 400."""
    endpoint = body.endpoint if body is not None else None
    rows = await service.redeliver(session, event_id, endpoint)
    return DeliveryList(
        data=[DeliveryRead.of(row, []) for row in rows],
        has_more=False,
        url=f"/events/{event_id}/deliveries",
    )


@event_deliveries.get("/{event_id}/deliveries", summary="List an event's deliveries")
async def list_event_deliveries(
    event_id: EventId, session: Session, _caller: Caller
) -> DeliveryList:
    """Every delivery of the event, oldest first: its endpoint, status, attempt count, when the
    next attempt is due, when it completed, and each attempt (when, the status code, how long,
    the start of the answer or what went wrong)."""
    rows = await service.deliveries_of_event(session, event_id)
    return DeliveryList(
        data=await _deliveries(session, rows),
        has_more=False,
        url=f"/events/{event_id}/deliveries",
    )
