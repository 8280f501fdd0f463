"""`/payment-intents`: create, read, list, search, confirm, capture, cancel."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Path, Query, Request
from fastapi.responses import JSONResponse, Response

from app.auth import Caller
from app.db import Session, Sessions
from app.errors import AppError
from app.idempotency import claim_of
from app.payment_intents import service
from app.payment_intents.schemas import (
    PaymentIntentCancel,
    PaymentIntentCapture,
    PaymentIntentConfirm,
    PaymentIntentCreate,
    PaymentIntentList,
    PaymentIntentRead,
    PaymentIntentSearchResult,
)
from app.stripe_gateway import Gateway

router = APIRouter(prefix="/payment-intents", tags=["payment intents"])

ERROR: dict[str, Any] = {
    "description": 'The error envelope: `{"error": {"type", "code", "message", "param"}}`.'
}
DECLINED: dict[int | str, dict[str, Any]] = {
    402: {
        "description": "Stripe declined the card: `card_error` with Stripe's `code` and "
        "`decline_code`, the `payment_intent` and the `order_id` (now `payment_failed`)."
    }
}
UNKNOWN: dict[str, Any] = {
    "description": "Stripe could not be reached or rate limited the service "
    "(`stripe_unavailable`), or its answer was lost (`stripe_outcome_unknown`): retry after "
    "`Retry-After` seconds with the same `Idempotency-Key`. `order_id` names the order kept."
}
CONFLICT: dict[str, Any] = {
    "description": "A request with this `Idempotency-Key` is still running "
    "(`idempotency_key_in_use`: retry after `Retry-After`), or the key's order can no longer be "
    "paid (`order_not_payable`, `order_not_resumable`: use a new key)."
}
IntentId = Annotated[str, Path(description="The Stripe PaymentIntent id.", examples=["pi_123"])]
IntentStatus = Literal[
    "requires_payment_method",
    "requires_confirmation",
    "requires_action",
    "processing",
    "requires_capture",
    "canceled",
    "succeeded",
]


def _answer(outcome: service.Outcome, *, secret: bool = False) -> PaymentIntentRead | Response:
    """The intent and its order id (as already rendered, when the answer was stored for the
    Idempotency-Key with it); or, for a refusal recorded in the (committed) transaction, its
    error envelope."""
    if outcome.error is not None:
        return _error(outcome.error)
    if outcome.body is not None:
        return Response(outcome.body, media_type="application/json")
    return PaymentIntentRead.of(outcome.intent, outcome.order_id, secret=secret)


def _error(error: AppError) -> JSONResponse:
    return JSONResponse(status_code=error.status, content=error.body(), headers=error.headers)


@router.post(
    "",
    summary="Create a payment intent (and its order)",
    response_model=PaymentIntentRead,
    responses={400: ERROR, **DECLINED, 409: CONFLICT, 503: UNKNOWN},
)
async def create_payment_intent(
    body: PaymentIntentCreate,
    request: Request,
    sessions: Sessions,
    caller: Caller,
    stripe: Gateway,
) -> PaymentIntentRead | Response:
    """Creates an order and its Stripe PaymentIntent, with Stripe's own parameters.

    The amount, currency and metadata are checked before Stripe is called (positive integer in
    the currency's minor unit, the currency's minimum, at most 99,999,999; metadata at most 49
    keys, as the service adds `service_order_id` with its order id). `statement_descriptor` is
    refused: Stripe no longer accepts it for card payments; use `statement_descriptor_suffix`.

    The response is Stripe's PaymentIntent, `client_secret` included (hand it to Stripe.js), plus
    `order_id`. With `confirm: true` a declined card is a 402 and the order is kept as
    `payment_failed`; confirm again with another payment method.

    Send an `Idempotency-Key` header: if Stripe's answer is lost (503 `stripe_outcome_unknown`,
    naming the `order_id`), the same request with the same key finds that order and links the
    intent Stripe made, never a second one.
    """
    key = (request.headers.get("idempotency-key") or "").strip() or None
    outcome = await service.create(
        sessions, stripe, body, caller=caller, idempotency_key=key, claim=claim_of(request)
    )
    return _answer(outcome, secret=True)


@router.get(
    "",
    summary="List payment intents",
    response_model=PaymentIntentList,
)
async def list_payment_intents(
    session: Session,
    caller: Caller,
    status: Annotated[IntentStatus | None, Query(description="Only this status.")] = None,
    customer: Annotated[str | None, Query(description="Only this Stripe customer.")] = None,
    order: Annotated[str | None, Query(description="Only this order's intents.")] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 10,
    starting_after: Annotated[
        str | None, Query(description="The last id of the previous page.")
    ] = None,
) -> PaymentIntentList:
    """Payment intents as the service last saw them (kept current by Stripe's webhooks), newest
    first, in Stripe's list shape. Page with `starting_after`."""
    page = await service.list_intents(
        session,
        status=status,
        customer=customer,
        order=order,
        limit=limit,
        starting_after=starting_after,
    )
    return PaymentIntentList(
        data=[PaymentIntentRead.of(row.data, row.order_id) for row in page.rows],
        has_more=page.has_more,
    )


@router.get(
    "/search",
    summary="Search payment intents",
    response_model=PaymentIntentSearchResult,
    responses={400: ERROR},
)
async def search_payment_intents(
    session: Session,
    caller: Caller,
    query: Annotated[
        str | None,
        Query(
            max_length=1000,
            description="Stripe's search query language.",
            examples=["status:'succeeded' AND metadata['order_id']:'12345'"],
        ),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 10,
    page: Annotated[str | None, Query(description="`next_page` of the previous result.")] = None,
) -> PaymentIntentSearchResult:
    """Stripe's search language, answered from the service's own database, so a search sees a
    write the moment it has returned (Stripe's own search lags up to a minute).

    Fields: `status`, `currency`, `customer`, `metadata['key']` (exact, case-insensitive, with
    `:`), `amount` and `created` (unix seconds; `:` `=` `>` `<` `>=` `<=`). Values in quotes;
    `null` matches a missing value; `-` negates a clause; clauses are joined by `AND` (or a
    space) or by `OR`, not both. Example: `status:'succeeded' AND metadata['order_id']:'12345'`.
    The service's own order id is in `metadata['service_order_id']`.

    A malformed query is a 400 on `query` whose message (and `position`) says where.
    """
    result = await service.search_intents(session, query, limit=limit, page=page)
    return PaymentIntentSearchResult(
        data=[PaymentIntentRead.of(row.data, row.order_id) for row in result.rows],
        has_more=result.has_more,
        next_page=result.next_page,
    )


@router.get(
    "/{intent_id}",
    summary="Retrieve a payment intent",
    response_model=PaymentIntentRead,
    responses={404: ERROR},
)
async def retrieve_payment_intent(
    intent_id: IntentId, session: Session, caller: Caller, stripe: Gateway
) -> PaymentIntentRead | Response:
    """The payment intent fresh from Stripe, with its `order_id`; the order and the service's
    copy catch up with what Stripe says."""
    return _answer(await service.retrieve(session, stripe, intent_id))


@router.post(
    "/{intent_id}/confirm",
    summary="Confirm a payment intent (server-side)",
    response_model=PaymentIntentRead,
    responses={400: ERROR, 404: ERROR, **DECLINED, 503: UNKNOWN},
)
async def confirm_payment_intent(
    intent_id: IntentId,
    request: Request,
    session: Session,
    caller: Caller,
    stripe: Gateway,
    body: Annotated[PaymentIntentConfirm | None, Body()] = None,
) -> PaymentIntentRead | Response:
    """Confirms the intent with `payment_method` (and `return_url`, which Stripe requires when
    the intent allows redirect-based payment methods).

    Each call is a new attempt: after a decline (402, the order `payment_failed`), confirm again
    with another card. With 3-D Secure the intent answers `requires_action` and the order waits
    in `requires_action` until the customer authenticates.

    Send an `Idempotency-Key` header: a retry with it (after a 503, or an answer that never
    arrived) is the same attempt, sent to Stripe with the same key, so it answers with what that
    attempt did and never confirms twice."""
    key = (request.headers.get("idempotency-key") or "").strip() or None
    outcome = await service.confirm(
        session,
        stripe,
        intent_id,
        body or PaymentIntentConfirm(),
        caller=caller,
        idempotency_key=key,
    )
    return _answer(outcome)


@router.post(
    "/{intent_id}/capture",
    summary="Capture a payment intent (manual capture)",
    response_model=PaymentIntentRead,
    responses={400: ERROR, 404: ERROR, 503: UNKNOWN},
)
async def capture_payment_intent(
    intent_id: IntentId,
    request: Request,
    session: Session,
    caller: Caller,
    stripe: Gateway,
    body: Annotated[PaymentIntentCapture | None, Body()] = None,
) -> PaymentIntentRead | Response:
    """Captures the funds held by an intent created with `capture_method: manual` (status
    `requires_capture`, order `authorized`): all of them, or `amount_to_capture` (at most the
    amount; the rest is released). A second capture is Stripe's 400; a retry with the same
    `Idempotency-Key` is the same capture, answered with what it did."""
    key = (request.headers.get("idempotency-key") or "").strip() or None
    outcome = await service.capture(
        session,
        stripe,
        intent_id,
        body or PaymentIntentCapture(),
        caller=caller,
        idempotency_key=key,
    )
    return _answer(outcome)


@router.post(
    "/{intent_id}/cancel",
    summary="Cancel a payment intent",
    response_model=PaymentIntentRead,
    responses={400: ERROR, 404: ERROR, 503: UNKNOWN},
)
async def cancel_payment_intent(
    intent_id: IntentId,
    request: Request,
    session: Session,
    caller: Caller,
    stripe: Gateway,
    body: Annotated[PaymentIntentCancel | None, Body()] = None,
) -> PaymentIntentRead | Response:
    """Cancels the intent (with an optional `cancellation_reason`); the order becomes
    `canceled`. Stripe refuses to cancel an intent that has succeeded. A retry with the same
    `Idempotency-Key` is the same cancel, answered with what it did."""
    key = (request.headers.get("idempotency-key") or "").strip() or None
    outcome = await service.cancel(
        session,
        stripe,
        intent_id,
        body or PaymentIntentCancel(),
        caller=caller,
        idempotency_key=key,
    )
    return _answer(outcome)
