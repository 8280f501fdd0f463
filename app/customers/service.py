"""Customers: created on Stripe from a local row written first (its id keys the Stripe call),
read fresh from Stripe, and mirrored locally (email, name, default payment method, metadata and
the object as last seen).

`create_customer` opens no request session: it commits the row in a short transaction of its own
BEFORE it calls Stripe (with the caller and its `Idempotency-Key`, if any, and the parameters
sent in `data` until Stripe's object replaces them), holds no connection while Stripe answers,
and records the answer in a second one. When Stripe refuses (a 4xx, an authentication failure),
nothing exists there: the row is deleted and the refusal is the answer. When the outcome is
unknown (a timeout, a dropped connection, a 5xx, a 409 while the key is in use), the row stays
and the 503 names it (`customer_row`): a retry with the same `Idempotency-Key` finds it and sends
Stripe the same key, so Stripe replays the customer it made, never a second one. Without a key
the row stays with `stripe_id` NULL: never listed nor found by a Stripe id, a record (with what
was asked) of a customer Stripe may or may not have made, for an operator to settle; a retry
without a key is a new row and a new customer.

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
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from stripe.params import CustomerCreateParams, CustomerUpdateParams

from app.committed_rows import check_resumable, commit_or_find, create_on_stripe
from app.customers.schemas import CustomerCreate, CustomerUpdate, PaymentMethodAttach
from app.errors import (
    IdempotencyKeyReused,
    InvalidRequest,
    NotFound,
)
from app.models import Customer
from app.pages import newest_first
from app.stripe_gateway import StripeGateway


async def create_customer(
    sessions: async_sessionmaker[AsyncSession],
    stripe: StripeGateway,
    body: CustomerCreate,
    *,
    caller: str,
    idempotency_key: str | None = None,
    live: bool = False,
) -> dict[str, Any]:
    """Commit the row (or find the one this caller's `idempotency_key` made), create the
    customer on Stripe and record it, each committed here. A test clock with a `live` key is
    refused before anything is written."""
    if body.test_clock is not None and live:
        raise InvalidRequest(
            "test_clock: test clocks exist in test mode only; this service runs with a live "
            "Stripe key.",
            code="parameter_invalid",
            param="test_clock",
        )
    params = body.model_dump(exclude_unset=True, exclude_none=True)
    row_id, stripe_id = await _committed_row(sessions, body, params, caller, idempotency_key)
    if stripe_id is not None:
        # An earlier request with this key got Stripe's answer: the customer as Stripe has it.
        customer = (await stripe.retrieve_customer(stripe_id)).to_dict()
    else:
        customer = await _create_on_stripe(sessions, stripe, params, row_id)
    if not customer.get("deleted"):
        async with sessions.begin() as session:
            _refresh(await session.get_one(Customer, row_id), customer)
    return customer


async def _create_on_stripe(
    sessions: async_sessionmaker[AsyncSession],
    stripe: StripeGateway,
    params: dict[str, Any],
    row_id: int,
) -> dict[str, Any]:
    """The customer Stripe created for the row, keyed by its id; the row is deleted when Stripe
    refuses, and named in the error when the outcome is unknown."""
    created = await create_on_stripe(
        sessions,
        Customer,
        row_id,
        "customer",
        lambda: stripe.create_customer(cast(CustomerCreateParams, params), f"customer:{row_id}"),
    )
    return created.to_dict()


async def _committed_row(
    sessions: async_sessionmaker[AsyncSession],
    body: CustomerCreate,
    params: dict[str, Any],
    owner: str,
    key: str | None,
) -> tuple[int, str | None]:
    """The row for this request, committed: the one an earlier request with the caller's `key`
    made, else a new one. Its id and Stripe id."""
    row, found = await commit_or_find(
        sessions,
        Customer(
            email=body.email,
            name=body.name,
            metadata_=body.metadata or {},
            data=params,
            idempotency_owner=owner,
            idempotency_key=key,
        ),
        owner,
        key,
    )
    if not found:
        return row.id, None
    assert key is not None
    return _same_request(row, body, params, key)


def _same_request(
    row: Customer, body: CustomerCreate, params: dict[str, Any], key: str
) -> tuple[int, str | None]:
    """The row's id and Stripe id, if it was made by a request like this one: with the same
    parameters while Stripe's answer is awaited, then with the same email, name and metadata
    (Stripe's object has replaced the parameters)."""
    if row.stripe_id is None:
        same = row.data == params
    else:
        same = (row.email, row.name, row.metadata_) == (body.email, body.name, body.metadata or {})
    if same:
        check_resumable(row, "customer", "customer")
    else:
        raise IdempotencyKeyReused(
            f"Idempotency-Key '{key}' was already used to create customer row {row.id} with "
            "other parameters; use a new key for a new customer."
        )
    return row.id, row.stripe_id


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
    rows, has_more = await newest_first(
        session, query, Customer, "customer", limit=limit, starting_after=starting_after
    )
    return [row.data for row in rows], has_more


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
