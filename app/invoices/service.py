"""Invoices, answered from the local mirror (app.billing.mirror) alone."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.errors import InvalidRequest, NotFound
from app.models import Invoice


def as_read(row: Invoice) -> dict[str, Any]:
    return {**row.data, "subscription": row.subscription}


async def get_invoice(session: AsyncSession, invoice_id: str) -> dict[str, Any]:
    row = await session.scalar(select(Invoice).where(Invoice.stripe_id == invoice_id))
    if row is None:
        raise NotFound(f"No such invoice: '{invoice_id}'", param="id")
    return as_read(row)


async def list_invoices(
    session: AsyncSession,
    *,
    customer: str | None = None,
    subscription: str | None = None,
    status: str | None = None,
    limit: int = 10,
    starting_after: str | None = None,
) -> tuple[Sequence[dict[str, Any]], bool]:
    """A page of the mirrored invoices, newest first, and whether more follow."""
    query = select(Invoice)
    if customer is not None:
        query = query.where(Invoice.customer == customer)
    if subscription is not None:
        query = query.where(Invoice.subscription == subscription)
    if status is not None:
        query = query.where(Invoice.status == status)
    if starting_after is not None:
        cursor = await session.scalar(select(Invoice.id).where(Invoice.stripe_id == starting_after))
        if cursor is None:
            raise InvalidRequest(
                f"No such invoice: '{starting_after}'",
                code="resource_missing",
                param="starting_after",
            )
        query = query.where(Invoice.id < cursor)
    rows = (await session.scalars(query.order_by(Invoice.id.desc()).limit(limit + 1))).all()
    return [as_read(row) for row in rows[:limit]], len(rows) > limit
