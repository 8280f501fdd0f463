"""`GET /events` and `GET /events/{id}`: the service's own events, from its outbox."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from app.auth import Caller
from app.db import Session
from app.events import service
from app.events.schemas import EVENT_EXAMPLE, EventList, EventRead

router = APIRouter(prefix="/events", tags=["events"])


@router.get(
    "/{event_id}",
    summary="Retrieve an event",
    responses={200: {"content": {"application/json": {"example": EVENT_EXAMPLE}}}},
)
async def get_event(
    event_id: Annotated[str, Path(examples=["evt_Qm3x9Lk2Zp8sWq1Rt5Yb"])],
    session: Session,
    _caller: Caller,
) -> EventRead:
    """One of the service's own events (ids `evt_` and 20 characters; Stripe's own events, which
    orders' histories name as causes, are not here): its `type`, when it happened, its `cause`
    and `data.object`, the order, subscription or invoice as it stood right after the change.
    An unknown id is a 404."""
    return EventRead.of(await service.get_event(session, event_id))


@router.get("", summary="List events")
async def list_events(
    session: Session,
    _caller: Caller,
    type: Annotated[
        str | None,
        Query(max_length=64, description="Only events of this type.", examples=["order.paid"]),
    ] = None,
    order: Annotated[
        str | None,
        Query(
            max_length=255,
            description="Only the events of this order (or subscription, or invoice) id.",
            examples=["ord_x6Yt0qJk3mZp9sLwQe2R"],
        ),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=100, description="Page size, 1 to 100.")] = 10,
    starting_after: Annotated[
        str | None,
        Query(description="The last event id of the previous page.", examples=["evt_Qm3x9Lk2"]),
    ] = None,
) -> EventList:
    """Every order transition, subscription status change and invoice outcome, newest first,
    each written in the same transaction as the change it reports: an order's events match its
    `history` one to one. Paged like Stripe's lists: `has_more` says whether another page
    follows; fetch it with `starting_after` set to the last event's id."""
    rows, has_more = await service.list_events(
        session, type=type, object_id=order, limit=limit, starting_after=starting_after
    )
    return EventList(data=[EventRead.of(row) for row in rows], has_more=has_more)
