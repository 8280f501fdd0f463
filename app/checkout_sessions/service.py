"""Checkout Sessions. A payment-mode session pays for an order for the amount the service
computes from the line items (`price_data` as given, prices read from Stripe); the session gets
the order id as `client_reference_id` and in its and its payment intent's metadata. Subscription
and setup sessions have no order; they are mirrored all the same.

`create` opens no request session, as `POST /payment-intents` does (app.payment_intents.service):
it commits what the request makes in a short transaction of its own BEFORE it calls Stripe, holds
no connection while Stripe answers, and records the answer in a second one. What it makes, with
the caller and its `Idempotency-Key` (unique per caller), keys Stripe's idempotency key:
- payment mode: the `pending` order (after the line items are priced and checked), under
  `order:{id}:checkout`;
- subscription and setup modes: the session's row, `stripe_id` empty until Stripe answers, under
  `checkout:{row.id}`.

What Stripe answered decides (app.stripe_gateway):
- done: the session is recorded (and linked to the order);
- refused: nothing exists at Stripe; the order or row is deleted, and the refusal is the answer;
- unknown: the order or row stays, and the 503 names it (`order_id`, `checkout_row`). A retry with
  the same `Idempotency-Key` finds it, makes sure it is the same request (`IdempotencyKeyReused`
  otherwise: what the order or row keeps is compared here, and Stripe compares every parameter
  under its key), and sends Stripe the same key, so Stripe makes the session once or replays
  it: one order, one session. If it already has its session, that session answers, as Stripe
  has it now. A resumed order is touched first (`claim_unlinked_order`), so reconcile does not
  abandon it while the retry waits for Stripe; an order or row older than Stripe keeps
  idempotency keys is not resumed. Without a key, a kept order is settled by its session's
  webhooks or abandoned by reconcile; a kept row stays with `stripe_id` NULL, never found by a
  Stripe id.
A refusal of a resumed call deletes nothing unless Stripe would have replayed an earlier answer
under the key instead (an invalid request does; an authentication refusal comes before the key).

Should Stripe price a session other than the service did, the session is expired and the order
deleted: nothing payable is left, and the answer is a 502 `amount_mismatch`.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from stripe.params.checkout import SessionCreateParams

from app.checkout_sessions.schemas import CheckoutSessionCreate, LineItem
from app.committed_rows import RESUMABLE, check_resumable, commit_or_find
from app.db import engine_of
from app.errors import (
    AppError,
    Conflict,
    IdempotencyKeyReused,
    InvalidRequest,
    NotFound,
    StripeFailure,
)
from app.models import CheckoutSession, Order, OrderStatus
from app.models.base import aware, utcnow
from app.money import METADATA_MAX_KEYS, check_amount
from app.orders.service import (
    ORDER_KEY,
    claim_unlinked_order,
    discard_order,
    find_order_for_idempotency_key,
    get_order,
    history_of,
    insert_order,
    move,
    record_checkout_session,
)
from app.stripe_gateway import StripeGateway

MIN_EXPIRY = 30 * 60
MAX_EXPIRY = 24 * 60 * 60
CREATE_SOURCE = "api:POST /checkout-sessions"
# Stripe's definite refusals: nothing was created there.
REFUSED = (InvalidRequest, NotFound, StripeFailure)
# What a session shows of the parameters that made it, as they were given.
AS_GIVEN = ("mode", "success_url", "cancel_url", "client_reference_id", "customer_email")


@dataclass(frozen=True)
class Outcome:
    checkout: dict[str, Any]
    order_id: str | None
    # The subscription the session's mirror links it to (subscription mode, once completed).
    subscription: str | None = None


@dataclass(frozen=True)
class _Made:
    """What a request made for its session: the order or row, committed, and what Stripe knows
    of it so far."""

    name: str  # as the error of an unknown outcome names it: `order_id` or `checkout_row`
    id: str | int
    checkout_id: str | None = None  # its session, once known
    resumed: bool = False  # made by an earlier request with the same key


async def create(
    sessions: async_sessionmaker[AsyncSession],
    stripe: StripeGateway,
    body: CheckoutSessionCreate,
    *,
    caller: str = "anonymous",
    idempotency_key: str | None = None,
) -> Outcome:
    """Validate, commit the order or row (or find the one this caller's `idempotency_key` made),
    create the session on Stripe and record it, each committed here."""
    _check(body)
    params = body.model_dump(exclude_none=True)
    if body.mode != "payment":
        return await _create_without_order(sessions, stripe, body, params, caller, idempotency_key)
    assert body.line_items is not None
    amount, currency = await _price(stripe, body.line_items)
    order = {
        "amount": amount,
        "currency": currency,
        "customer": body.customer,
        "description": body.payment_intent_data.description if body.payment_intent_data else None,
        "metadata": body.metadata or {},
    }
    made = await _committed_order(sessions, order, caller, idempotency_key)
    order_id = str(made.id)
    intent_data = params.setdefault("payment_intent_data", {})
    intent_data["metadata"] = {**intent_data.get("metadata", {}), ORDER_KEY: order_id}
    params["metadata"] = {**params.get("metadata", {}), ORDER_KEY: order_id}
    params["client_reference_id"] = order_id
    if made.checkout_id is not None:
        checkout = await _made_before(stripe, made, params, idempotency_key)
        await _record(sessions, stripe, order_id, checkout)
        return Outcome(checkout, order_id)
    created = await _create_on_stripe(
        stripe,
        params,
        f"order:{order_id}:checkout",
        made,
        idempotency_key,
        discard=lambda: _discard_order(sessions, order_id),
    )
    if created.get("amount_total") != amount or created.get("currency") != currency:
        # Stripe priced the session differently: never leave a payable page for another amount.
        try:
            await stripe.expire_checkout_session(created["id"], f"order:{order_id}:checkout:expire")
        except AppError as exc:
            exc.extra["order_id"] = order_id
            raise
        await _discard_order(sessions, order_id)
        raise StripeFailure(
            f"Stripe priced the session at {created.get('amount_total')} "
            f"{created.get('currency')}, not the {amount} {currency} the service computed; the "
            "session was expired.",
            code="amount_mismatch",
        )
    await _record(sessions, stripe, order_id, created)
    return Outcome(created, order_id)


async def _create_without_order(
    sessions: async_sessionmaker[AsyncSession],
    stripe: StripeGateway,
    body: CheckoutSessionCreate,
    params: dict[str, Any],
    owner: str,
    key: str | None,
) -> Outcome:
    made = await _committed_row(sessions, body, owner, key)
    if made.checkout_id is not None:
        checkout = await _made_before(stripe, made, params, key)
    else:
        checkout = await _create_on_stripe(
            stripe,
            params,
            f"checkout:{made.id}",
            made,
            key,
            discard=lambda: _delete_row(sessions, int(made.id)),
        )
    async with sessions.begin() as session:
        row = await session.get_one(CheckoutSession, made.id)
        row.stripe_id = checkout["id"]
        await session.flush()
        await record_checkout_session(session, None, checkout)
    return Outcome(checkout, None)


async def _delete_row(sessions: async_sessionmaker[AsyncSession], row_id: int) -> None:
    """Delete a row whose session Stripe refused."""
    async with sessions.begin() as session:
        await session.execute(
            delete(CheckoutSession).where(
                CheckoutSession.id == row_id, CheckoutSession.stripe_id.is_(None)
            )
        )


async def _create_on_stripe(
    stripe: StripeGateway,
    params: dict[str, Any],
    stripe_key: str,
    made: _Made,
    key: str | None,
    *,
    discard: Callable[[], Awaitable[None]],
) -> dict[str, Any]:
    """The session Stripe created under `stripe_key` for what the request `made`, which is
    discarded when Stripe refuses and named in the error when the outcome is unknown."""
    try:
        created = await stripe.create_checkout_session(
            cast(SessionCreateParams, params), stripe_key
        )
    except REFUSED as exc:
        if not (made.resumed and isinstance(exc, StripeFailure)):
            await discard()
            raise
        exc.extra[made.name] = made.id
        raise
    except Conflict as exc:
        if exc.code == "idempotency_error":
            # Stripe's key was first used with other parameters: by another request.
            raise _reused(key, made, "other parameters") from exc
        exc.extra[made.name] = made.id
        raise
    except AppError as exc:
        # Maybe created, maybe not: what the request made stays for the retry.
        exc.extra[made.name] = made.id
        raise
    return created.to_dict()


async def _committed_order(
    sessions: async_sessionmaker[AsyncSession],
    order: dict[str, Any],
    owner: str,
    key: str | None,
) -> _Made:
    """The order for this request, committed: the one an earlier request with the caller's `key`
    made (claimed for this retry if it has no session yet), else a new `pending` one."""
    try:
        async with sessions.begin() as session:
            order_id = await insert_order(
                session,
                source=CREATE_SOURCE,
                idempotency_owner=owner,
                idempotency_key=key,
                **order,
            )
    except IntegrityError:
        # The caller's key is taken: by an earlier request (a retry) or a concurrent one.
        if key is None:
            raise
        async with sessions() as session:
            found = await find_order_for_idempotency_key(session, owner, key)
            first = (await history_of(session, found.id))[0] if found is not None else None
        if found is None or first is None:
            raise
        _same_order(found, first.source, order, key)
        if found.checkout_session is None:
            return await _resumable(engine_of(sessions), found)
        return _Made("order_id", found.id, found.checkout_session, resumed=True)
    return _Made("order_id", order_id)


def _same_order(found: Order, source: str, order: dict[str, Any], key: str) -> None:
    """Refuse the order unless a request like this one made it. Its customer may have come from
    its session since (a customer Stripe created at payment)."""
    kept = (found.amount, found.currency, found.description, found.metadata_)
    asked = (order["amount"], order["currency"], order["description"], order["metadata"])
    customer = found.customer == order["customer"] or (
        found.checkout_session is not None and order["customer"] is None
    )
    if source != CREATE_SOURCE:
        raise _reused(key, _Made("order_id", found.id), "another endpoint")
    if kept != asked or not customer:
        raise _reused(
            key, _Made("order_id", found.id), "another amount, currency, customer or metadata"
        )


async def _resumable(engine: AsyncEngine, order: Order) -> _Made:
    """An earlier request's order that has no session yet, claimed for this retry (a webhook may
    have linked its session meanwhile); refused when it can no longer be resumed safely."""
    if aware(order.created_at) < utcnow() - RESUMABLE:
        raise Conflict(
            f"Order {order.id} was created over {RESUMABLE.total_seconds() // 3600:.0f} hours "
            "ago and never got its checkout session; Stripe may no longer know its idempotency "
            "key, so it is not retried. Use a new Idempotency-Key for a new checkout session.",
            code="order_not_resumable",
            order_id=order.id,
        )
    if await claim_unlinked_order(engine, order.id, "checkout_session"):
        return _Made("order_id", order.id, resumed=True)
    async with AsyncSession(engine) as own:
        current = await get_order(own, order.id)
    if current.checkout_session is not None:
        return _Made("order_id", current.id, current.checkout_session, resumed=True)
    raise Conflict(
        f"Order {order.id} is {current.status}: no checkout session was made for it, and it can "
        "no longer be paid. Use a new Idempotency-Key for a new checkout session.",
        code="order_not_payable",
        order_id=order.id,
    )


async def _committed_row(
    sessions: async_sessionmaker[AsyncSession],
    body: CheckoutSessionCreate,
    owner: str,
    key: str | None,
) -> _Made:
    """The row for this request's order-less session, committed: the one an earlier request
    with the caller's `key` made, else a new one."""
    row, found = await commit_or_find(
        sessions,
        CheckoutSession(
            mode=body.mode,
            idempotency_owner=owner if key is not None else None,
            idempotency_key=key,
        ),
        owner,
        key,
    )
    if not found:
        return _Made("checkout_row", row.id)
    assert key is not None
    return _resumable_row(row, body, key)


def _resumable_row(row: CheckoutSession, body: CheckoutSessionCreate, key: str) -> _Made:
    """An earlier request's row, if a request like this one made it and it can still be
    resumed safely."""
    made = _Made("checkout_row", row.id, row.stripe_id, resumed=True)
    if row.mode != body.mode:
        raise _reused(key, made, "another mode")
    check_resumable(row, "checkout", "checkout session")
    return made


async def _made_before(
    stripe: StripeGateway, made: _Made, params: dict[str, Any], key: str | None
) -> dict[str, Any]:
    """The session an earlier request with the key made, as Stripe has it now, if this request
    asks for what it shows."""
    assert made.checkout_id is not None
    checkout = (await stripe.retrieve_checkout_session(made.checkout_id, [])).to_dict()
    differs = [name for name in AS_GIVEN if checkout.get(name) != params.get(name)]
    if (checkout.get("metadata") or {}) != params.get("metadata", {}):
        differs.append("metadata")
    if params.get("customer") not in (None, checkout.get("customer")):
        differs.append("customer")
    if differs:
        raise _reused(key, made, f"another {', '.join(differs)}")
    return checkout


def _reused(key: str | None, made: _Made, what: str) -> IdempotencyKeyReused:
    thing = f"order {made.id}" if made.name == "order_id" else f"checkout row {made.id}"
    return IdempotencyKeyReused(
        f"Idempotency-Key '{key}' was already used for {thing} with {what}; use a new key for a "
        "new checkout session."
    )


async def _record(
    sessions: async_sessionmaker[AsyncSession],
    stripe: StripeGateway,
    order_id: str,
    checkout: dict[str, Any],
) -> None:
    """Link the session to its order; one whose order was abandoned meanwhile (reconcile) is
    expired instead, never handed out to be paid."""
    async with sessions.begin() as session:
        order = await get_order(session, order_id, for_update=True)
        abandoned = order.status == OrderStatus.ABANDONED
        if not abandoned:
            await record_checkout_session(session, order, checkout)
    if abandoned:
        await stripe.expire_checkout_session(checkout["id"], f"order:{order_id}:checkout:expire")
        raise Conflict(
            f"Order {order_id} was abandoned and not linked to {checkout['id']}, which was "
            "expired; it cannot be paid. Use a new Idempotency-Key for a new checkout session.",
            code="order_not_payable",
            order_id=order_id,
        )


async def _discard_order(sessions: async_sessionmaker[AsyncSession], order_id: str) -> None:
    """Delete an order whose session Stripe refused (or that was expired at once), with the
    mirror a webhook of that session may have written meanwhile."""
    async with sessions.begin() as session:
        order = await get_order(session, order_id, for_update=True)
        await session.execute(delete(CheckoutSession).where(CheckoutSession.order_id == order_id))
        await discard_order(session, order, CREATE_SOURCE)


async def get_checkout_session(
    session: AsyncSession, stripe: StripeGateway, session_id: str, expand: list[str]
) -> Outcome:
    row = await _row(session, session_id)
    order = await _order_of(session, row)
    checkout = (await stripe.retrieve_checkout_session(session_id, expand)).to_dict()
    await record_checkout_session(session, order, checkout)
    return Outcome(checkout, row.order_id, row.subscription)


async def expire_checkout_session(
    session: AsyncSession, stripe: StripeGateway, session_id: str
) -> Outcome:
    row = await _row(session, session_id)
    order = await _order_of(session, row, to_move=True)
    key = f"order:{order.id}:checkout:expire" if order else f"checkout:{row.id}:expire"
    checkout = (await stripe.expire_checkout_session(session_id, key)).to_dict()
    await record_checkout_session(session, order, checkout)
    if order is not None:
        await move(
            session, order, OrderStatus.EXPIRED, f"api:POST /checkout-sessions/{session_id}/expire"
        )
    return Outcome(checkout, row.order_id)


# ---------------------------------------------------------------------------------------------


def _check(body: CheckoutSessionCreate) -> None:
    """Stripe's rules across parameters, checked before anything is written or called."""
    if body.customer is not None and body.customer_email is not None:
        raise InvalidRequest(
            "You may only specify one of these parameters: customer, customer_email.",
            param="customer_email",
        )
    only = {"payment_intent_data": "payment", "subscription_data": "subscription"}
    for name, mode in only.items():
        if getattr(body, name) is not None and body.mode != mode:
            raise InvalidRequest(f"You can not pass `{name}` in `{body.mode}` mode.", param=name)
    if body.mode == "setup":
        if body.line_items is not None:
            raise InvalidRequest(
                "You can not pass `line_items` in `setup` mode.", param="line_items"
            )
        if body.currency is None:
            raise InvalidRequest(
                "Missing required param: currency (setup mode needs one).",
                code="parameter_missing",
                param="currency",
            )
    elif body.line_items is None:
        raise InvalidRequest(
            f"The `line_items` parameter is required in {body.mode} mode.",
            code="parameter_missing",
            param="line_items",
        )
    if body.mode == "payment":
        _check_payment(body)
    if body.expires_at is not None:
        now = int(time.time())
        if not now + MIN_EXPIRY <= body.expires_at <= now + MAX_EXPIRY:
            raise InvalidRequest(
                "The `expires_at` timestamp must be between 30 minutes and 24 hours from now.",
                param="expires_at",
            )


def _check_payment(body: CheckoutSessionCreate) -> None:
    if body.client_reference_id is not None:
        raise InvalidRequest(
            "In payment mode the service sets `client_reference_id` to its order id; put your "
            "own reference in `metadata`.",
            param="client_reference_id",
        )
    assert body.line_items is not None
    for i, item in enumerate(body.line_items):
        if item.price_data is not None and item.price_data.recurring is not None:
            raise InvalidRequest(
                "You specified `payment` mode but passed a recurring price. Either switch to "
                "`subscription` mode or use only one-time prices.",
                param=f"line_items[{i}][price_data][recurring]",
            )
    metadata = {
        "metadata": body.metadata or {},
        "payment_intent_data[metadata]": (
            body.payment_intent_data.metadata if body.payment_intent_data else None
        )
        or {},
    }
    for param, given in metadata.items():
        if ORDER_KEY in given:
            raise InvalidRequest(
                f"The metadata key `{ORDER_KEY}` is reserved: the service stores its order id "
                "there.",
                param=f"{param}[{ORDER_KEY}]",
            )
        if len(given) >= METADATA_MAX_KEYS:
            raise InvalidRequest(
                f"{param} can have at most {METADATA_MAX_KEYS - 1} keys here: Stripe allows "
                f"{METADATA_MAX_KEYS} and the service uses one (`{ORDER_KEY}`).",
                param=param,
            )


async def _price(stripe: StripeGateway, items: list[LineItem]) -> tuple[int, str]:
    """The total and currency of one-time line items, as Stripe will charge them."""
    total = 0
    currencies: set[str] = set()
    for i, item in enumerate(items):
        if item.price_data is not None:
            unit, currency = item.price_data.unit_amount, item.price_data.currency
        else:
            assert item.price is not None
            param = f"line_items[{i}][price]"
            try:
                price = await stripe.retrieve_price(item.price)
            except NotFound:
                raise InvalidRequest(
                    f"No such price: '{item.price}'", code="resource_missing", param=param
                ) from None
            if not price.active:
                raise InvalidRequest(
                    "The price specified is inactive. This field only accepts active prices.",
                    param=param,
                )
            if price.type == "recurring":
                raise InvalidRequest(
                    "You specified `payment` mode but passed a recurring price. Either switch "
                    "to `subscription` mode or use only one-time prices.",
                    param=param,
                )
            if price.unit_amount is None:
                raise InvalidRequest(
                    "Only prices with a fixed `unit_amount` can be sold in payment mode here.",
                    param=param,
                )
            unit, currency = price.unit_amount, price.currency
        total += unit * item.quantity
        currencies.add(currency)
    if len(currencies) > 1:
        raise InvalidRequest(
            "All line items must use the same currency: Checkout does not support line items "
            "with different currencies.",
            param="line_items",
        )
    currency = currencies.pop()
    check_amount(total, currency, param="line_items")
    return total, currency


async def _row(session: AsyncSession, session_id: str) -> CheckoutSession:
    """Our mirror of a session: sessions this service did not create are not found."""
    row = await session.scalar(
        select(CheckoutSession).where(CheckoutSession.stripe_id == session_id)
    )
    if row is None:
        raise NotFound(f"No such checkout session: '{session_id}'", param="id")
    return row


async def _order_of(
    session: AsyncSession, row: CheckoutSession, *, to_move: bool = False
) -> Order | None:
    """The session's order; locked until the transaction ends when it is `to_move`."""
    if row.order_id is None:
        return None
    return await get_order(session, row.order_id, for_update=to_move)
