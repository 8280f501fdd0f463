"""Newest-first pages of the service's own records, keyed by their Stripe id (`starting_after`),
as Stripe pages its lists."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.errors import InvalidRequest
from app.models import Customer, Invoice, Refund, Subscription

Row = TypeVar("Row", Customer, Invoice, Refund, Subscription)


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
