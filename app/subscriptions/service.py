"""Subscriptions: created on Stripe from a local row written first, changed and canceled on
Stripe, read from the local mirror (app.billing.mirror), which the webhooks keep current.

`create_subscription` follows `POST /customers` (app.customers.service): it opens no request
session, commits the row BEFORE it calls Stripe (with the caller, its `Idempotency-Key` and the
parameters' digest), holds no connection while Stripe answers, and records the answer in a
second transaction. A refusal (a decline under `error_if_incomplete`, an invalid request)
deletes the row; an unknown outcome keeps it and the 503 names it (`subscription_row`): the
same request with the same key finds it and sends Stripe the same key, so Stripe replays the
subscription it made, never a second one.

Stripe idempotency keys:
- create: `subscription:{row.id}`;
- update and cancel: from the caller's `Idempotency-Key` when there is one (as payment intent
  confirms and captures do), `subscription:{row.id}:{action}:key:{digest}`, so a retry of a
  request whose answer was lost is the same Stripe request even after the mirror moved on;
  without a key, an update is `subscription:{row.id}:update:{row.version}:{digest of the
  parameters}` (each applied change bumps `version`) and a cancel `subscription:{row.id}:cancel`
  (canceling twice is one cancel).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from stripe.params import SubscriptionCreateParams, SubscriptionUpdateParams

from app.billing import mirror
from app.billing.ordering import TERMINAL
from app.committed_rows import check_resumable, commit_or_find, create_on_stripe
from app.errors import (
    Conflict,
    IdempotencyKeyReused,
    InvalidRequest,
    NotFound,
)
from app.models import CheckoutSession, Subscription
from app.pages import newest_first
from app.stripe_gateway import StripeGateway
from app.subscriptions.schemas import SubscriptionCreate, SubscriptionUpdate

CONFIRMATION = "latest_invoice.confirmation_secret"


@dataclass(frozen=True, slots=True)
class Answer:
    """A subscription as kept, the Checkout Session that made it, and (on a create that needs
    the customer) the first invoice's client secret."""

    subscription: dict[str, Any]
    checkout_session: str | None = None
    client_secret: str | None = None


# The cause the outbox names for what the create records (app.billing.mirror).
CREATE = "api:POST /subscriptions"


def _digest(value: Any) -> str:
    return hashlib.sha256(
        json.dumps(value, sort_keys=True, separators=(",", ":")).encode()
    ).hexdigest()


async def create_subscription(
    sessions: async_sessionmaker[AsyncSession],
    stripe: StripeGateway,
    body: SubscriptionCreate,
    *,
    caller: str,
    idempotency_key: str | None = None,
) -> Answer:
    """Commit the row (or find the one this caller's `idempotency_key` made), create the
    subscription on Stripe and record it, each committed here."""
    params = body.model_dump(exclude_none=True)
    row_id, stripe_id = await _committed_row(sessions, body, params, caller, idempotency_key)
    if stripe_id is not None:
        # An earlier request with this key got Stripe's answer: the subscription as it is now.
        created = (await stripe.retrieve_subscription(stripe_id, [CONFIRMATION])).to_dict()
    else:
        created = await _create_on_stripe(sessions, stripe, params, row_id)
    invoice = created.get("latest_invoice")
    # Each try may lose a race with a webhook inserting the subscription or its invoice.
    for attempt in range(3):
        try:
            async with sessions.begin() as session:
                row = await session.get_one(Subscription, row_id)
                row = await mirror.adopt(session, row, created, cause=CREATE)
                if isinstance(invoice, dict) and invoice.get("id"):
                    await mirror.record(session, "invoice", invoice, cause=CREATE)
                link = await checkout_sessions_of(session, [created["id"]])
            break
        except IntegrityError:
            # A webhook mirrored the subscription or its invoice meanwhile: found next time.
            if attempt == 2:
                raise
    secret = None
    if created.get("status") == "incomplete" and isinstance(invoice, dict):
        secret = (invoice.get("confirmation_secret") or {}).get("client_secret")
    return Answer(row.data, link.get(created["id"]), secret)


async def _create_on_stripe(
    sessions: async_sessionmaker[AsyncSession],
    stripe: StripeGateway,
    params: dict[str, Any],
    row_id: int,
) -> dict[str, Any]:
    """The subscription Stripe created for the row, keyed by its id; the row is deleted when
    Stripe refuses, and named in the error when the outcome is unknown."""
    created = await create_on_stripe(
        sessions,
        Subscription,
        row_id,
        "subscription",
        lambda: stripe.create_subscription(
            cast(SubscriptionCreateParams, {**params, "expand": [CONFIRMATION]}),
            f"subscription:{row_id}",
        ),
    )
    return created.to_dict()


async def _committed_row(
    sessions: async_sessionmaker[AsyncSession],
    body: SubscriptionCreate,
    params: dict[str, Any],
    owner: str,
    key: str | None,
) -> tuple[int, str | None]:
    """The row for this request, committed: the one an earlier request with the caller's `key`
    made (with the same parameters), else a new one. Its id and Stripe id."""
    digest = _digest(params)
    row, found = await commit_or_find(
        sessions,
        Subscription(
            customer=body.customer,
            metadata_=body.metadata or {},
            data=params,
            items=[],
            idempotency_owner=owner,
            idempotency_key=key,
            params_digest=digest,
        ),
        owner,
        key,
    )
    if found:
        if row.params_digest != digest:
            raise IdempotencyKeyReused(
                f"Idempotency-Key '{key}' was already used to create subscription row "
                f"{row.id} with other parameters; use a new key for a new subscription."
            )
        check_resumable(row, "subscription", "subscription")
        return row.id, row.stripe_id
    return row.id, None


async def get_subscription(session: AsyncSession, subscription_id: str) -> Answer:
    row = await _row(session, subscription_id)
    link = await checkout_sessions_of(session, [subscription_id])
    return Answer(row.data, link.get(subscription_id))


async def list_subscriptions(
    session: AsyncSession,
    *,
    customer: str | None = None,
    status: str | None = None,
    limit: int = 10,
    starting_after: str | None = None,
) -> tuple[Sequence[Answer], bool]:
    """A page of the mirrored subscriptions, newest first, and whether more follow."""
    query = select(Subscription).where(Subscription.stripe_id.is_not(None))
    if customer is not None:
        query = query.where(Subscription.customer == customer)
    if status is not None:
        query = query.where(Subscription.status == status)
    page, has_more = await newest_first(
        session, query, Subscription, "subscription", limit=limit, starting_after=starting_after
    )
    links = await checkout_sessions_of(session, [row.stripe_id for row in page if row.stripe_id])
    return [Answer(row.data, links.get(row.stripe_id or "")) for row in page], has_more


async def update_subscription(
    session: AsyncSession,
    stripe: StripeGateway,
    subscription_id: str,
    body: SubscriptionUpdate,
    *,
    caller: str,
    idempotency_key: str | None = None,
) -> Answer:
    row = await _row(session, subscription_id, for_update=True)
    _check_open(row)
    params = _update_params(row, body)
    fallback = f"{row.version}:{_digest(params)[:32]}"
    key = _stripe_key(row, "update", caller, idempotency_key, fallback)
    updated = await stripe.update_subscription(
        subscription_id, cast(SubscriptionUpdateParams, params), key
    )
    cause = f"api:POST /subscriptions/{subscription_id}"
    await mirror.record(session, "subscription", updated.to_dict(), cause=cause)
    row.version += 1
    await session.flush()
    link = await checkout_sessions_of(session, [subscription_id])
    return Answer(row.data, link.get(subscription_id))


async def cancel_subscription(
    session: AsyncSession,
    stripe: StripeGateway,
    subscription_id: str,
    *,
    caller: str,
    idempotency_key: str | None = None,
) -> Answer:
    row = await _row(session, subscription_id, for_update=True)
    if row.status not in TERMINAL["subscription"]:
        key = _stripe_key(row, "cancel", caller, idempotency_key, "once")
        canceled = await stripe.cancel_subscription(subscription_id, {}, key)
        cause = f"api:POST /subscriptions/{subscription_id}/cancel"
        await mirror.record(session, "subscription", canceled.to_dict(), cause=cause)
    link = await checkout_sessions_of(session, [subscription_id])
    return Answer(row.data, link.get(subscription_id))


def _update_params(row: Subscription, body: SubscriptionUpdate) -> dict[str, Any]:
    """Stripe's update parameters for the change asked, checked against the subscription."""
    params = body.model_dump(exclude_none=True, exclude={"items", "proration_behavior"})
    if body.items is not None:
        known = [item["id"] for item in row.items]
        items = []
        for index, item in enumerate(body.items):
            if item.price is None and item.quantity is None:
                raise InvalidRequest(
                    f"items[{index}]: give a `price`, a `quantity`, or both.",
                    code="parameter_missing",
                    param=f"items[{index}]",
                )
            item_id = item.id
            if item_id is None:
                if len(known) != 1:
                    raise InvalidRequest(
                        f"items[{index}][id]: this subscription has {len(known)} items; name "
                        "the one to change.",
                        code="parameter_missing",
                        param=f"items[{index}][id]",
                    )
                item_id = known[0]
            if item_id not in known:
                raise InvalidRequest(
                    f"items[{index}][id]: '{item_id}' is not an item of {row.stripe_id}.",
                    code="resource_missing",
                    param=f"items[{index}][id]",
                )
            items.append(item.model_dump(exclude_none=True) | {"id": item_id})
        if len({item["id"] for item in items}) != len(items):
            raise InvalidRequest(
                "items: each subscription item may be changed once per request.",
                code="parameter_invalid",
                param="items",
            )
        params["items"] = items
        params["proration_behavior"] = body.proration_behavior
    if not params:
        raise InvalidRequest(
            "Nothing to change: send `items`, `default_payment_method`, "
            "`cancel_at_period_end` or `metadata`.",
            code="parameter_missing",
        )
    return params


def _check_open(row: Subscription) -> None:
    if row.status in TERMINAL["subscription"]:
        raise Conflict(
            f"Subscription {row.stripe_id} is {row.status}: it can no longer be changed.",
            code="subscription_ended",
        )


def _stripe_key(
    row: Subscription, action: str, caller: str, idempotency_key: str | None, fallback: str
) -> str:
    """Stripe's idempotency key for a change of the subscription (see the module's doc)."""
    if idempotency_key is None:
        return f"subscription:{row.id}:{action}:{fallback}"
    digest = hashlib.sha256((caller + idempotency_key).encode()).hexdigest()[:32]
    return f"subscription:{row.id}:{action}:key:{digest}"


async def _row(
    session: AsyncSession, subscription_id: str, *, for_update: bool = False
) -> Subscription:
    query = select(Subscription).where(Subscription.stripe_id == subscription_id)
    if for_update:
        query = query.with_for_update()
    row = await session.scalar(query)
    if row is None:
        raise NotFound(f"No such subscription: '{subscription_id}'", param="id")
    return row


async def checkout_sessions_of(session: AsyncSession, subscriptions: list[str]) -> dict[str, str]:
    """The Checkout Session that made each subscription, if one did: read from the sessions'
    mirror, so it holds whichever of their webhooks arrived first."""
    if not subscriptions:
        return {}
    rows = await session.execute(
        select(CheckoutSession.subscription, CheckoutSession.stripe_id)
        .where(
            CheckoutSession.subscription.in_(subscriptions),
            CheckoutSession.stripe_id.is_not(None),
        )
        .order_by(CheckoutSession.id.desc())
    )
    return {sub: cs for sub, cs in rows.tuples() if sub is not None and cs is not None}
