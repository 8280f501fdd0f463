"""Rows committed before the Stripe call that creates their object (customers, subscriptions,
order-less checkout sessions): the row's id keys that call, and the caller's `Idempotency-Key`
finds the row again, so a retry after a lost answer resumes the same Stripe request instead of
making a second object.

Each service keeps its own test of "is this retry the same request"; what they share is here:
committing the row or finding the one the caller's key holds, and refusing to resume a row older
than Stripe keeps idempotency keys.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import TypeVar

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.errors import AppError, CardDeclined, Conflict, InvalidRequest, NotFound, StripeFailure
from app.models import CheckoutSession, Customer, Subscription
from app.models.base import aware, utcnow

# Stripe keeps an idempotency key for at least 24 hours. A row whose create never got Stripe's
# answer is resumed (its Stripe key sent again) only within that: later, resending the key could
# make a second object if the first create did happen.
RESUMABLE = timedelta(hours=23)


# Stripe's definite refusals of a create: nothing was made there.
REFUSED = (InvalidRequest, NotFound, CardDeclined, StripeFailure)

Row = TypeVar("Row", Customer, Subscription, CheckoutSession)
T = TypeVar("T")


async def commit_or_find(
    sessions: async_sessionmaker[AsyncSession], row: Row, owner: str, key: str | None
) -> tuple[Row, bool]:
    """Commit the new `row`, keyed by the caller (`owner`) and its `key`; when that key is taken
    (an earlier request, or a concurrent one), the row holding it instead. The row, and whether
    it was found rather than made."""
    try:
        async with sessions.begin() as session:
            session.add(row)
    except IntegrityError:
        if key is None:
            raise
        model = type(row)
        async with sessions() as session:
            found: Row | None = await session.scalar(
                select(model).where(model.idempotency_owner == owner, model.idempotency_key == key)
            )
        if found is None:
            raise
        return found, True
    return row, False


async def create_on_stripe(
    sessions: async_sessionmaker[AsyncSession],
    model: type[Customer] | type[Subscription],
    row_id: int,
    kind: str,
    create: Callable[[], Awaitable[T]],
) -> T:
    """Stripe's create for the committed row `row_id`: when Stripe refuses, nothing was made and
    the row is deleted; when the outcome is unknown, the error names the row (`<kind>_row`),
    kept for the retry."""
    try:
        return await create()
    except REFUSED:
        async with sessions.begin() as session:
            await session.execute(
                delete(model).where(model.id == row_id, model.stripe_id.is_(None))
            )
        raise
    except AppError as exc:
        exc.extra[f"{kind}_row"] = row_id
        raise


def check_resumable(row: Customer | Subscription | CheckoutSession, kind: str, label: str) -> None:
    """Refuse to resume `row` (409 `<kind>_not_resumable`, naming `<kind>_row`) when its create
    never got Stripe's answer and it is older than Stripe keeps idempotency keys."""
    if row.stripe_id is None and aware(row.created_at) < utcnow() - RESUMABLE:
        refused = Conflict(
            f"{label.capitalize()} row {row.id} was created over "
            f"{RESUMABLE.total_seconds() // 3600:.0f} hours ago and never got Stripe's answer; "
            "Stripe may no longer know its idempotency key, so it is not retried. Use a new "
            f"Idempotency-Key for a new {label}.",
            code=f"{kind}_not_resumable",
        )
        refused.extra[f"{kind}_row"] = row.id
        raise refused
