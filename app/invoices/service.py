"""Invoices, answered from the local mirror (app.billing.mirror) alone."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.errors import NotFound
from app.models import Invoice
from app.pages import newest_first


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
    rows, has_more = await newest_first(
        session, query, Invoice, "invoice", limit=limit, starting_after=starting_after
    )
    return [as_read(row) for row in rows], has_more
