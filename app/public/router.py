"""The browser's endpoints (no API key): a payment intent for a cart or an order, its amount
computed by the server; and where to load Stripe.js from, with which key."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from app.config import Settings
from app.db import Sessions
from app.errors import AppError
from app.payment_intents.router import ERROR, UNKNOWN
from app.public import service
from app.public.schemas import PublicConfig, PublicPaymentIntent, PublicPaymentIntentCreate
from app.stripe_gateway import Gateway

router = APIRouter(prefix="/api", tags=["frontend"])


@router.post(
    "/create-payment-intent",
    summary="Create a payment intent from the browser",
    response_model=PublicPaymentIntent,
    responses={400: ERROR, 404: ERROR, 409: ERROR, 503: UNKNOWN},
)
async def create_payment_intent(
    body: PublicPaymentIntentCreate, request: Request, sessions: Sessions, stripe: Gateway
) -> PublicPaymentIntent | JSONResponse:
    """For the shop's frontend, without an API key (CORS allows the origins in `CORS_ORIGINS`).

    Send a cart, `{"items": [{"price": "price_…", "quantity": n}]}` (1 to 100 items, quantity 1
    to 100, active one-time Stripe prices in one currency), or `{"order_id": "ord_…"}` for an
    order the shop's backend created (pending, or failed and being retried; its payment intent
    is reused).

    The amount is computed here from the Stripe prices or the stored order: a body with `amount`
    or `currency` is refused, because a browser must never decide what a customer pays.

    Answers `clientSecret` for Stripe.js (`stripe.confirmPayment`), with the intent, the order
    and the amount it is for. The order then follows the payment through Stripe's webhooks.

    Send an `Idempotency-Key` header (one per checkout attempt): if Stripe's answer is lost (503
    `stripe_outcome_unknown`), the same request with the same key from the same client IP gets
    the intent Stripe made for that order, never a second one.
    """
    key = (request.headers.get("idempotency-key") or "").strip() or None
    answer = await service.create_payment_intent(
        sessions,
        stripe,
        body,
        client_ip=request.client.host if request.client else "unknown",
        idempotency_key=key,
    )
    if isinstance(answer, AppError):
        return JSONResponse(
            status_code=answer.status, content=answer.body(), headers=answer.headers
        )
    return answer


@router.get("/config", summary="Stripe.js settings for the browser", response_model=PublicConfig)
async def config(request: Request) -> PublicConfig:
    """For the shop's frontend, without an API key (CORS allows the origins in `CORS_ORIGINS`).

    Load Stripe.js from `stripeJsUrl` and call `Stripe(publishableKey)`; then confirm the
    `clientSecret` that `POST /api/create-payment-intent` answers with `stripe.confirmPayment`.
    With a live key they are Stripe's own (`pk_live_…`, `https://js.stripe.com/v3/`); in sandbox,
    the emulator's key and its copy of Stripe.js, so the same page works offline.
    """
    settings: Settings = request.app.state.settings
    return PublicConfig(publishableKey=settings.publishable_key, stripeJsUrl=settings.js_url)
