"""Payment intents: each one belongs to an order, written before Stripe is called and keyed into
Stripe's idempotency key, and moved by what Stripe answers (and later by its webhooks).

Our own order id goes into the intent's Stripe metadata as `service_order_id`; the caller's
metadata is stored as given, so a shop's own `order_id` stays searchable
(`metadata['order_id']:'12345'`).

A card declined by Stripe is an outcome to record, not an error to roll back: the order moves to
`payment_failed` (and a confirm's attempt counter moves on, so the next try is a new Stripe
request) in the committed transaction, and the router then answers 402 from `Outcome.error`.

`create` departs from DESIGN.md's one commit per request, on purpose, and opens no request
session: it commits the `pending` order in a short transaction of its own BEFORE it calls Stripe,
holds no database connection or lock while Stripe answers (so in-flight requests are not capped
by the pool), then records the answer in a second one (`_record`: on Postgres one statement while
the order is still unlinked). The order keys Stripe's idempotency key `order:{id}:pi`.

What Stripe answered decides what happens to the order (app.stripe_gateway):
- done: the intent is linked to the order;
- refused (a card error, an invalid request, auth): nothing exists at Stripe, the order is
  deleted again (a decline with an intent is recorded as `payment_failed`);
- unknown (a timeout, a dropped connection, a 5xx, 409 `idempotency_key_in_use`): the order
  stays, and the request fails with 503 `stripe_outcome_unknown`, the order id in its body. A
  retry with the same `Idempotency-Key` (the order keeps the caller's key, unique per caller)
  resumes that order and sends Stripe the same key, so Stripe creates the intent once or
  replays the one it created: one order, one intent, across processes and restarts. Without a
  key, or if no client retries, its webhook or `python -m app reconcile` links the intent, or
  reconcile marks the order `abandoned` when Stripe has none.
A resume touches the order first (`claim_unlinked_order`), so reconcile never abandons an order
while a retry may be creating its intent; an order older than Stripe keeps idempotency keys is
not resumed (a new intent could be made beside the first), reconcile settles it instead.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import select, tuple_
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from stripe.params import (
    PaymentIntentCancelParams,
    PaymentIntentCaptureParams,
    PaymentIntentConfirmParams,
    PaymentIntentCreateParams,
)

from app.committed_rows import RESUMABLE
from app.db import engine_of, is_postgres
from app.errors import (
    AppError,
    CardDeclined,
    Conflict,
    IdempotencyKeyReused,
    InvalidRequest,
    NotFound,
    StripeFailure,
    StripeUnavailable,
)
from app.idempotency import ANSWER, CLAIM, Claim, ClaimTaken
from app.models import Order, OrderStatus, PaymentIntent
from app.models.base import aware, utcnow
from app.money import METADATA_MAX_KEYS, check_amount
from app.orders.service import (
    ORDER_KEY,
    claim_unlinked_order,
    discard_order,
    find_order_for_idempotency_key,
    find_order_for_payment_intent,
    get_order,
    insert_order,
    link_payment_intent,
    sync_payment_intent,
)
from app.payment_intents import search
from app.payment_intents.schemas import (
    PaymentIntentCancel,
    PaymentIntentCapture,
    PaymentIntentConfirm,
    PaymentIntentCreate,
    PaymentIntentRead,
)
from app.stripe_gateway import StripeGateway

SOURCE_CREATE = "api:POST /payment-intents"


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a write did: the order's id, Stripe's intent, and Stripe's refusal if it refused
    (recorded and committed; the router renders it)."""

    order_id: str
    intent: dict[str, Any]
    error: AppError | None = None
    # The answer as rendered and stored with the request's Idempotency-Key, when it was.
    body: bytes | None = None


async def create(
    sessions: async_sessionmaker[AsyncSession],
    gateway: StripeGateway,
    body: PaymentIntentCreate,
    *,
    source: str = SOURCE_CREATE,
    caller: str = "anonymous",
    idempotency_key: str | None = None,
    claim: Claim | None = None,
) -> Outcome:
    """Validate, commit the order (or find the one this caller's `idempotency_key` made), create
    its intent on Stripe and record it, each committed here. `claim`: the middleware's claim of
    the key, written with the order (see app.idempotency)."""
    check_amount(body.amount, body.currency)
    if body.statement_descriptor is not None:
        raise InvalidRequest(
            "Stripe no longer accepts `statement_descriptor` for card payments; use "
            "`statement_descriptor_suffix` (up to 22 characters, shown after your account's "
            "statement descriptor prefix) instead.",
            code="parameter_invalid",
            param="statement_descriptor",
        )
    metadata = dict(body.metadata or {})
    _check_metadata(metadata)
    order_id, intent_id = await _committed_order(
        engine_of(sessions),
        body,
        metadata,
        source=source,
        owner=caller,
        key=idempotency_key,
        claim=claim,
    )
    if intent_id is not None:
        # An earlier request with this key got as far as Stripe: answer with its intent.
        intent = (await gateway.retrieve_payment_intent(intent_id)).to_dict()
        return await _record(
            sessions, order_id, intent, source, failed=_failed(intent), claim=claim
        )
    params = {
        **body.model_dump(exclude_none=True, exclude={"statement_descriptor"}),
        "metadata": {**metadata, ORDER_KEY: order_id},
    }
    try:
        # No database connection or lock is held while Stripe answers: the order is committed
        # and keys the idempotency key.
        intent = await gateway.create_payment_intent(
            cast(PaymentIntentCreateParams, params), idempotency_key=f"order:{order_id}:pi"
        )
    except StripeUnavailable as exc:
        # Maybe created, maybe not: the order stays for the retry (or reconciliation).
        exc.extra["order_id"] = order_id
        raise
    except CardDeclined as exc:
        async with sessions.begin() as session:
            locked = await get_order(session, order_id, for_update=True)
            if exc.extra.get("payment_intent") or locked.payment_intent:
                return await _declined(session, gateway, locked, exc, source)
            await discard_order(session, locked, source)
        return Outcome(order_id, {}, error=exc)
    except (InvalidRequest, NotFound, StripeFailure) as exc:
        # Stripe refused to create anything: the order goes too.
        async with sessions.begin() as session:
            locked = await get_order(session, order_id, for_update=True)
            await discard_order(session, locked, source)
        return Outcome(order_id, {}, error=exc)
    return await _record(sessions, order_id, intent, source, claim=claim)


async def _record(
    sessions: async_sessionmaker[AsyncSession],
    order_id: str,
    intent: dict[str, Any],
    source: str,
    *,
    failed: bool = False,
    claim: Claim | None = None,
) -> Outcome:
    """Record what Stripe answered: linked to the still-unlinked order in one statement (with
    the answer for the Idempotency-Key `claim`, if it was written), or, when a webhook came first
    (or it is a decline), with the order locked."""
    if not failed:
        engine = engine_of(sessions)
        if is_postgres(engine):
            # One statement there, committed on its own (app.pg_direct).
            answer = also = None
            if claim is not None and claim.claimed:
                read = PaymentIntentRead.of(intent, order_id, secret=True)
                answer = read.model_dump_json().encode()
                also = (ANSWER, claim.answer(answer))
            linked = await link_payment_intent(engine, order_id, intent, source, also=also)
            if linked and claim is not None and answer is not None:
                claim.answered = True
                return Outcome(order_id, intent, body=answer)
        else:
            async with sessions.begin() as session:
                linked = await link_payment_intent(session, order_id, intent, source)
        if linked:
            return Outcome(order_id, intent)
    async with sessions.begin() as session:
        order = await get_order(session, order_id, for_update=True)
        await sync_payment_intent(session, order, intent, source, failed=failed)
    if order.payment_intent != intent["id"]:
        # The order moved on without this intent (reconcile abandoned it meanwhile): the intent
        # is an orphan, which reconcile cancels; it is not handed out to be paid.
        raise Conflict(
            f"Order {order_id} is {order.status} and not linked to {intent['id']}; it cannot be "
            "paid. Use a new Idempotency-Key for a new payment.",
            code="order_not_payable",
            order_id=order_id,
        )
    return Outcome(order_id, intent)


async def _committed_order(
    engine: AsyncEngine,
    body: PaymentIntentCreate,
    metadata: dict[str, str],
    *,
    source: str,
    owner: str,
    key: str | None,
    claim: Claim | None,
) -> tuple[str, str | None]:
    """The order for this request, committed on its own (one statement on Postgres, with the
    `claim` of the key): the one an earlier request with the caller's `key`
    made, else a new `pending` one. Its id and payment intent's."""
    order: dict[str, Any] = {
        "amount": body.amount,
        "currency": body.currency,
        "source": source,
        "customer": body.customer,
        "description": body.description,
        "metadata": metadata,
        "idempotency_owner": owner,
        "idempotency_key": key,
        "attempts": 1 if body.confirm else 0,
    }
    also = (CLAIM, claim.params()) if claim is not None else None
    try:
        if is_postgres(engine):
            order_id = await insert_order(engine, **order, also=also)
        else:
            async with engine.begin() as connection:
                order_id = await insert_order(connection, **order)
    except IntegrityError:
        if claim is not None:
            raise ClaimTaken from None
        # The caller's key is taken: by an earlier request (a retry) or a concurrent one.
        if key is None:
            raise
        async with AsyncSession(engine) as own:
            found = await find_order_for_idempotency_key(own, owner, key)
        if found is None:
            raise
        order_id, intent_id = _same_request(found, body, metadata, key)
        if intent_id is None:
            return await _resumable(engine, found)
        return order_id, intent_id
    if claim is not None:
        claim.claimed = True
    return order_id, None


async def _resumable(engine: AsyncEngine, order: Order) -> tuple[str, str | None]:
    """An earlier request's order that has no intent yet, claimed for this retry (a webhook may
    have linked its intent meanwhile); refused when it can no longer be resumed safely."""
    if order.status == OrderStatus.PENDING and aware(order.created_at) < utcnow() - RESUMABLE:
        raise Conflict(
            f"Order {order.id} was created over {RESUMABLE.total_seconds() // 3600:.0f} hours "
            "ago and never got its payment intent; Stripe may no longer know its idempotency "
            "key, so it is not retried (`python -m app reconcile` settles it). Use a new "
            "Idempotency-Key for a new payment.",
            code="order_not_resumable",
            order_id=order.id,
        )
    if await claim_unlinked_order(engine, order.id):
        return order.id, None
    async with AsyncSession(engine) as own:
        current = await get_order(own, order.id)
    if current.payment_intent is not None:
        return current.id, current.payment_intent
    raise Conflict(
        f"Order {order.id} is {current.status}: no payment intent was made for it, and it can no "
        "longer be paid. Use a new Idempotency-Key for a new payment.",
        code="order_not_payable",
        order_id=order.id,
    )


def _same_request(
    order: Order, body: PaymentIntentCreate, metadata: dict[str, str], key: str | None
) -> tuple[str, str | None]:
    """The order's id and payment intent's, if it was made by a request like this one."""
    if (order.amount, order.currency, order.customer, order.description, order.metadata_) != (
        body.amount,
        body.currency,
        body.customer,
        body.description,
        metadata,
    ):
        raise IdempotencyKeyReused(
            f"Idempotency-Key '{key}' was already used for order {order.id} with another amount, "
            "currency, customer, description or metadata; use a new key for a new payment."
        )
    return order.id, order.payment_intent


def _check_metadata(metadata: dict[str, str]) -> None:
    if ORDER_KEY in metadata:
        raise InvalidRequest(
            f"The metadata key `{ORDER_KEY}` is reserved: the service stores its order id there.",
            code="parameter_invalid",
            param=f"metadata[{ORDER_KEY}]",
        )
    if len(metadata) >= METADATA_MAX_KEYS:
        raise InvalidRequest(
            f"metadata can have at most {METADATA_MAX_KEYS - 1} keys here: Stripe allows "
            f"{METADATA_MAX_KEYS} and the service uses one (`{ORDER_KEY}`).",
            code="parameter_invalid",
            param="metadata",
        )


async def create_for_order(
    session: AsyncSession,
    gateway: StripeGateway,
    order: Order,
    params: dict[str, Any],
    *,
    source: str,
) -> Outcome:
    """Create the payment intent of an order the request's transaction holds locked (one per
    order: the idempotency key is the order's) and record it. `params` are Stripe's create
    params; amount, currency and metadata come from the order."""
    params = {
        **params,
        "amount": order.amount,
        "currency": order.currency,
        "metadata": {**order.metadata_, ORDER_KEY: order.id},
    }
    if params.get("confirm"):
        order.attempts += 1
        await session.flush()
    try:
        intent = await gateway.create_payment_intent(
            cast(PaymentIntentCreateParams, params), idempotency_key=f"order:{order.id}:pi"
        )
    except CardDeclined as exc:
        return await _declined(session, gateway, order, exc, source)
    await sync_payment_intent(session, order, intent, source)
    return Outcome(order.id, intent)


async def _declined(
    session: AsyncSession,
    gateway: StripeGateway,
    order: Order,
    exc: CardDeclined,
    source: str,
) -> Outcome:
    """Record a decline: the intent as Stripe now has it, and the order as `payment_failed`."""
    intent_id = exc.extra.get("payment_intent") or order.payment_intent
    if not intent_id:
        raise exc
    intent = (await gateway.retrieve_payment_intent(intent_id)).to_dict()
    await sync_payment_intent(session, order, intent, source, failed=True)
    exc.extra["order_id"] = order.id
    return Outcome(order.id, intent, error=exc)


async def _order_of(session: AsyncSession, intent_id: str) -> Order:
    order = await find_order_for_payment_intent(session, intent_id, for_update=True)
    if order is None:
        raise NotFound(f"No such payment intent: '{intent_id}'", param="id")
    return order


def _failed(intent: dict[str, Any]) -> bool:
    return intent.get("last_payment_error") is not None


async def retrieve(session: AsyncSession, gateway: StripeGateway, intent_id: str) -> Outcome:
    """The intent fresh from Stripe; the mirror and the order catch up with it."""
    order = await _order_of(session, intent_id)
    intent = (await gateway.retrieve_payment_intent(intent_id)).to_dict()
    await sync_payment_intent(
        session, order, intent, f"api:GET /payment-intents/{intent_id}", failed=_failed(intent)
    )
    return Outcome(order.id, intent)


async def confirm(
    session: AsyncSession,
    gateway: StripeGateway,
    intent_id: str,
    body: PaymentIntentConfirm,
    *,
    caller: str = "anonymous",
    idempotency_key: str | None = None,
) -> Outcome:
    """A new payment attempt: its own Stripe idempotency key, so a retry after a decline is sent
    to Stripe again rather than answered with the stored decline. With the caller's
    `idempotency_key` the Stripe key is derived from it (as refunds do), so a retry of the same
    attempt is the same Stripe request even when the first one's transaction had committed and
    only its answer was lost; without one, from the attempt counter."""
    order = await _order_of(session, intent_id)
    source = f"api:POST /payment-intents/{intent_id}/confirm"
    order.attempts += 1
    await session.flush()
    key = _stripe_key(order, "confirm", caller, idempotency_key, str(order.attempts))
    params = cast(PaymentIntentConfirmParams, body.model_dump(exclude_none=True))
    try:
        confirmed = await gateway.confirm_payment_intent(intent_id, params, key)
    except CardDeclined as exc:
        return await _declined(session, gateway, order, exc, source)
    except InvalidRequest as exc:
        # Stripe keeps its answer under the key: the next attempt needs a new one.
        return Outcome(order.id, {}, error=exc)
    intent = confirmed.to_dict()
    await sync_payment_intent(session, order, intent, source)
    return Outcome(order.id, intent)


def _stripe_key(
    order: Order, action: str, caller: str, idempotency_key: str | None, fallback: str
) -> str:
    """Stripe's idempotency key for an action on the order's intent: from the caller's
    `Idempotency-Key` when there is one (as refunds do), so a retry of the request is the same
    Stripe request even when the first one's transaction committed and only its answer was lost
    (a process killed in between); else from `fallback` (the order's state)."""
    if idempotency_key is None:
        return f"order:{order.id}:{action}:{fallback}"
    digest = hashlib.sha256((caller + idempotency_key).encode()).hexdigest()[:32]
    return f"order:{order.id}:{action}:key:{digest}"


async def _mirror_status(session: AsyncSession, intent_id: str) -> str:
    status = await session.scalar(
        select(PaymentIntent.status).where(PaymentIntent.stripe_id == intent_id)
    )
    return status or "unknown"


async def capture(
    session: AsyncSession,
    gateway: StripeGateway,
    intent_id: str,
    body: PaymentIntentCapture,
    *,
    caller: str = "anonymous",
    idempotency_key: str | None = None,
) -> Outcome:
    """Capture held funds, all or `amount_to_capture` of them."""
    order = await _order_of(session, intent_id)
    if body.amount_to_capture is not None and body.amount_to_capture > order.amount:
        raise InvalidRequest(
            f"amount_to_capture ({body.amount_to_capture}) cannot exceed the payment intent's "
            f"amount ({order.amount}).",
            code="amount_too_large",
            param="amount_to_capture",
        )
    # Without the caller's key: keyed by the state we last saw and the request, so a retry of
    # this capture replays it; a capture after it (the status has moved on) reaches Stripe.
    status = await _mirror_status(session, intent_id)
    fallback = f"{status}:{body.amount_to_capture or 'all'}"
    key = _stripe_key(order, "capture", caller, idempotency_key, fallback)
    params = cast(PaymentIntentCaptureParams, body.model_dump(exclude_none=True))
    captured = await gateway.capture_payment_intent(intent_id, params, key)
    intent = captured.to_dict()
    await sync_payment_intent(
        session, order, intent, f"api:POST /payment-intents/{intent_id}/capture"
    )
    return Outcome(order.id, intent)


async def cancel(
    session: AsyncSession,
    gateway: StripeGateway,
    intent_id: str,
    body: PaymentIntentCancel,
    *,
    caller: str = "anonymous",
    idempotency_key: str | None = None,
) -> Outcome:
    order = await _order_of(session, intent_id)
    status = await _mirror_status(session, intent_id)
    fallback = f"{status}:{body.cancellation_reason or 'none'}"
    key = _stripe_key(order, "cancel", caller, idempotency_key, fallback)
    params = cast(PaymentIntentCancelParams, body.model_dump(exclude_none=True))
    canceled = await gateway.cancel_payment_intent(intent_id, params, key)
    intent = canceled.to_dict()
    await sync_payment_intent(
        session, order, intent, f"api:POST /payment-intents/{intent_id}/cancel"
    )
    return Outcome(order.id, intent)


@dataclass(frozen=True, slots=True)
class Page:
    rows: list[PaymentIntent]
    has_more: bool
    next_page: str | None = None


async def list_intents(
    session: AsyncSession,
    *,
    status: str | None,
    customer: str | None,
    order: str | None,
    limit: int,
    starting_after: str | None,
) -> Page:
    """Our mirror, newest first, filtered; `starting_after` is the last id of the previous page."""
    query = select(PaymentIntent)
    if status is not None:
        query = query.where(PaymentIntent.status == status)
    if customer is not None:
        query = query.where(PaymentIntent.customer == customer)
    if order is not None:
        query = query.where(PaymentIntent.order_id == order)
    if starting_after is not None:
        cursor = await session.scalar(
            select(PaymentIntent).where(PaymentIntent.stripe_id == starting_after)
        )
        if cursor is None:
            raise InvalidRequest(
                f"No such payment intent: '{starting_after}'",
                code="resource_missing",
                param="starting_after",
            )
        query = query.where(_below(cursor.created, cursor.id))
    rows = list(await session.scalars(_newest_first(query).limit(limit + 1)))
    return Page(rows[:limit], len(rows) > limit)


async def search_intents(
    session: AsyncSession, query_text: str | None, *, limit: int, page: str | None
) -> Page:
    """Stripe's search language over our mirror; `page` is a previous result's `next_page`."""
    if query_text is None:
        raise InvalidRequest(
            "Missing required param: query.", code="parameter_missing", param="query"
        )
    query = select(PaymentIntent).where(search.where(query_text))
    if page:
        created, row_id = search.page_position(query_text, page)
        query = query.where(_below(created, row_id))
    rows = list(await session.scalars(_newest_first(query).limit(limit + 1)))
    has_more = len(rows) > limit
    rows = rows[:limit]
    next_page = search.page_token(query_text, rows[-1].created, rows[-1].id) if has_more else None
    return Page(rows, has_more, next_page)


def _newest_first(query: Any) -> Any:
    return query.order_by(PaymentIntent.created.desc(), PaymentIntent.id.desc())


def _below(created: int, row_id: int) -> Any:
    # A row comparison, which an index ending in (created, id) answers as a range.
    return tuple_(PaymentIntent.created, PaymentIntent.id) < tuple_(created, row_id)
