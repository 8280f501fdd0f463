"""Invoices: read from the local mirror, kept current by Stripe's webhooks."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query

from app.auth import Caller
from app.db import Session
from app.invoices import service
from app.invoices.schemas import InvoiceList, InvoiceRead

router = APIRouter(prefix="/invoices", tags=["invoices"])

Status = Literal["draft", "open", "paid", "uncollectible", "void"]


@router.get("", summary="List invoices", response_model=InvoiceList)
async def list_invoices(
    session: Session,
    caller: Caller,
    customer: Annotated[
        str | None, Query(max_length=255, description="Only this customer's (`cus_…`).")
    ] = None,
    subscription: Annotated[
        str | None, Query(max_length=255, description="Only this subscription's (`sub_…`).")
    ] = None,
    status: Annotated[Status | None, Query(description="Only in this status.")] = None,
    limit: Annotated[int, Query(ge=1, le=100, description="Page size, 1 to 100.")] = 10,
    starting_after: Annotated[
        str | None, Query(description="The last invoice id of the previous page.")
    ] = None,
) -> InvoiceList:
    """Every invoice of the Stripe account, newest first as the service learned of them, as the
    service last saw them: answered from its database, kept current by Stripe's webhooks. Page
    with `limit` and `starting_after`."""
    data, has_more = await service.list_invoices(
        session,
        customer=customer,
        subscription=subscription,
        status=status,
        limit=limit,
        starting_after=starting_after,
    )
    return InvoiceList(data=[InvoiceRead.model_validate(i) for i in data], has_more=has_more)


@router.get("/{invoice_id}", summary="Retrieve an invoice", response_model=InvoiceRead)
async def get_invoice(invoice_id: str, session: Session, caller: Caller) -> InvoiceRead:
    """The invoice as the service last saw it (from its database, kept current by Stripe's
    webhooks): `status` (`draft`, `open`, `paid`, `uncollectible`, `void`), the amounts due,
    paid and remaining, and `hosted_invoice_url`, the page where the customer can pay it."""
    return InvoiceRead.model_validate(await service.get_invoice(session, invoice_id))
