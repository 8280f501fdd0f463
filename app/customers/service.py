"""Customers: created on Stripe from a local row written first (its id keys the Stripe call),
read fresh from Stripe, and mirrored locally (email, name, default payment method, metadata and
the object as last seen).

Stripe idempotency keys:
- create: `customer:{row.id}`;
- update: `customer:{row.id}:update:{row.version}:{hash of the parameters}`: a retry of the same
  change replays, another change is a new call, and the same change made again after others
  (A, B, A) is applied again because each applied change bumps `version`;
- attach: `customer:{row.id}:attach:{payment_method}`: attaching the same payment method twice
  is one attachment.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any, cast

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from stripe.params import CustomerCreateParams, CustomerUpdateParams

from app.customers.schemas import CustomerCreate, CustomerUpdate, PaymentMethodAttach
from app.errors import InvalidRequest, NotFound
from app.models import Customer
from app.stripe_gateway import StripeGateway


async def create_customer(
    session: AsyncSession, stripe: StripeGateway, body: CustomerCreate
) -> dict[str, Any]:
    row = Customer(email=body.email, name=body.name, metadata_=body.metadata or {})
    session.add(row)
    await session.flush()
    params = cast(CustomerCreateParams, body.model_dump(exclude_unset=True, exclude_none=True))
    customer = (await stripe.create_customer(params, f"customer:{row.id}")).to_dict()
    _refresh(row, customer)
    await session.flush()
    return customer


async def get_customer(
    session: AsyncSession, stripe: StripeGateway, customer_id: str
) -> dict[str, Any]:
    row = await _row(session, customer_id)
    customer = (await stripe.retrieve_customer(customer_id)).to_dict()
    if not customer.get("deleted"):
        _refresh(row, customer)
        await session.flush()
    return customer


async def update_customer(
    session: AsyncSession, stripe: StripeGateway, customer_id: str, body: CustomerUpdate
) -> dict[str, Any]:
    row = await _row(session, customer_id, for_update=True)
    params = body.model_dump(exclude_unset=True, exclude_none=True)
    digest = hashlib.sha256(
        json.dumps(params, sort_keys=True, separators=(",", ":")).encode()
    ).hexdigest()[:32]
    key = f"customer:{row.id}:update:{row.version}:{digest}"
    customer = (
        await stripe.update_customer(customer_id, cast(CustomerUpdateParams, params), key)
    ).to_dict()
    _refresh(row, customer)
    row.version += 1
    await session.flush()
    return customer


async def list_customers(
    session: AsyncSession,
    *,
    email: str | None = None,
    limit: int = 10,
    starting_after: str | None = None,
) -> tuple[Sequence[dict[str, Any]], bool]:
    """A page of our customers as last seen on Stripe, newest first, and whether more follow."""
    query = select(Customer).where(Customer.stripe_id.is_not(None))
    if email is not None:
        query = query.where(Customer.email == email)
    if starting_after is not None:
        cursor = await session.scalar(select(Customer).where(Customer.stripe_id == starting_after))
        if cursor is None:
            raise InvalidRequest(
                f"No such customer: '{starting_after}'",
                code="resource_missing",
                param="starting_after",
            )
        query = query.where(Customer.id < cursor.id)
    rows = (await session.scalars(query.order_by(Customer.id.desc()).limit(limit + 1))).all()
    return [row.data for row in rows[:limit]], len(rows) > limit


async def attach_payment_method(
    session: AsyncSession, stripe: StripeGateway, customer_id: str, body: PaymentMethodAttach
) -> dict[str, Any]:
    row = await _row(session, customer_id)
    method = await stripe.attach_payment_method(
        body.payment_method,
        {"customer": customer_id},
        f"customer:{row.id}:attach:{body.payment_method}",
    )
    return method.to_dict()


async def list_payment_methods(
    session: AsyncSession, stripe: StripeGateway, customer_id: str
) -> dict[str, Any]:
    await _row(session, customer_id)
    return (await stripe.list_customer_payment_methods(customer_id)).to_dict()


async def _row(session: AsyncSession, customer_id: str, *, for_update: bool = False) -> Customer:
    """Our row for a Stripe customer id: customers this service did not create are not found."""
    query = select(Customer).where(Customer.stripe_id == customer_id)
    if for_update:
        query = query.with_for_update()
    row = await session.scalar(query)
    if row is None:
        raise NotFound(f"No such customer: '{customer_id}'", param="id")
    return row


def _refresh(row: Customer, customer: dict[str, Any]) -> None:
    settings = customer.get("invoice_settings") or {}
    default = settings.get("default_payment_method")
    row.stripe_id = customer["id"]
    row.email = customer.get("email")
    row.name = customer.get("name")
    row.default_payment_method = default["id"] if isinstance(default, dict) else default
    row.metadata_ = dict(customer.get("metadata") or {})
    row.data = customer
