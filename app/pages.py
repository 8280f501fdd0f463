"""Newest-first pages of the service's own records, as Stripe pages its lists: the Stripe mirrors
keyed by their Stripe id (`newest_first`); orders, events, webhook endpoints and deliveries by
their own id and time (`newest_by_time`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

from sqlalchemy import Select, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from app.errors import InvalidRequest
from app.models import (
    Customer,
    Event,
    EventDelivery,
    Invoice,
    Order,
    Refund,
    Subscription,
    WebhookEndpoint,
)

Row = TypeVar("Row", Customer, Invoice, Refund, Subscription)
Timed = TypeVar("Timed", Order, Event, WebhookEndpoint, EventDelivery)
# Each timed record's time column.
_TIMES = {
    Order: Order.created_at,
    Event: Event.created,
    WebhookEndpoint: WebhookEndpoint.created,
    EventDelivery: EventDelivery.created,
}


async def newest_first(
    session: AsyncSession,
    query: Select[Row],
    model: type[Row],
    noun: str,
    *,
    limit: int,
    starting_after: str | None,
) -> tuple[Sequence[Row], bool]:
    """The page of `query`'s rows after the one whose Stripe id is `starting_after` (a 400 on
    that parameter when there is none), newest first, and whether more follow."""
    if starting_after is not None:
        cursor = await session.scalar(select(model.id).where(model.stripe_id == starting_after))
        if cursor is None:
            raise InvalidRequest(
                f"No such {noun}: '{starting_after}'",
                code="resource_missing",
                param="starting_after",
            )
        query = query.where(model.id < cursor)
    rows = (await session.scalars(query.order_by(model.id.desc()).limit(limit + 1))).all()
    return rows[:limit], len(rows) > limit


async def newest_by_time(
    session: AsyncSession,
    query: Select[Timed],
    model: type[Timed],
    noun: str,
    *,
    limit: int,
    starting_after: str | None,
) -> tuple[Sequence[Timed], bool]:
    """The page of `query`'s rows after the one whose id is `starting_after` (a 400 on that
    parameter when there is none), newest first by (time, id), and whether more follow. The
    keyset is a row comparison, which an index ending in (time, id) answers as a range."""
    at = _TIMES[model]
    if starting_after is not None:
        cursor = (
            await session.execute(select(at, model.id).where(model.id == starting_after))
        ).first()
        if cursor is None:
            raise InvalidRequest(
                f"No such {noun}: '{starting_after}'",
                code="resource_missing",
                param="starting_after",
            )
        query = query.where(tuple_(at, model.id) < tuple_(*cursor))
    rows = (
        await session.scalars(query.order_by(at.desc(), model.id.desc()).limit(limit + 1))
    ).all()
    return rows[:limit], len(rows) > limit
