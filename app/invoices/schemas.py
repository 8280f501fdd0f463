"""Response bodies for invoices: Stripe's Invoice object as the service last saw it."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class InvoiceRead(BaseModel):
    """Stripe's Invoice object as the service last saw it (without a client secret), plus its
    `subscription` (Stripe keeps it in `parent.subscription_details`)."""

    model_config = ConfigDict(extra="allow")

    id: str = Field(examples=["in_1MtHbELkdIwHu7ixl4OzzPMv"])
    object: Literal["invoice"] = "invoice"
    customer: str | None = None
    subscription: str | None = Field(default=None, examples=["sub_1MowQVLkdIwHu7ixeRlqHVzs"])
    status: str | None = Field(default=None, examples=["paid"])
    amount_due: int = 0
    amount_paid: int = 0
    amount_remaining: int = 0
    currency: str | None = Field(default=None, examples=["usd"])
    hosted_invoice_url: str | None = None


class InvoiceList(BaseModel):
    object: Literal["list"] = "list"
    data: list[InvoiceRead]
    has_more: bool
    url: str = "/invoices"
