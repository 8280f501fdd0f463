"""A demo checkout in sandbox mode only (404 otherwise): `/demo` lists the catalogue, its form
posts to `/demo/checkout`, which creates a Checkout Session server side (no API key in the
browser) and sends the visitor to the hosted page; `/demo/success` follows the order live.

`/demo/elements` is the seed's own frontend instead: the cart priced by
`POST /api/create-payment-intent`, the card in Stripe.js's Payment Element (`app.demo.elements`),
`/demo/elements/complete` its `return_url`.

Its plans: `/demo/subscribe` makes a customer on a test clock of its own and a subscription-mode
Checkout Session; `/demo/plan` shows the subscription and its invoices as the webhooks mirror
them, with buttons that advance the clock past the next renewal and switch to a declining card."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from app.config import Settings
from app.db import Session, Sessions
from app.demo import elements, pages, plans, service
from app.errors import InvalidRequest, NotFound
from app.orders.schemas import OrderRead
from app.stripe_gateway import Gateway, StripeGateway

MAX_FORM_BYTES = 16 * 1024


def _sandbox_only(request: Request) -> None:
    settings: Settings = request.app.state.settings
    if not settings.sandbox:
        raise NotFound("Not Found")


router = APIRouter(prefix="/demo", include_in_schema=False, dependencies=[Depends(_sandbox_only)])


def _html(text: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(
        text, status, headers={"Content-Security-Policy": pages.CONTENT_SECURITY_POLICY}
    )


@router.get("", summary="Demo shop")
async def shop(stripe: Gateway) -> HTMLResponse:
    """The catalogue with a quantity for each item and a Pay button."""
    return _html(pages.shop_page(await service.catalogue(stripe), await plans.plans(stripe)))


@router.post("/checkout", summary="Demo checkout")
async def checkout(request: Request, sessions: Sessions, stripe: Gateway) -> Response:
    """The form's quantities (`<price id>=<n>`) → a Checkout Session; 303 to its hosted page."""
    try:
        quantities = _quantities(await request.body())
        url = await service.checkout(
            sessions,
            stripe,
            quantities,
            success_url=f"{request.url_for('demo_success')}?session_id={{CHECKOUT_SESSION_ID}}",
            cancel_url=str(request.url_for("shop")),
        )
    except InvalidRequest as error:
        return await _shop_with_error(stripe, error)
    return RedirectResponse(url, status_code=303)


@router.post("/subscribe", summary="Demo subscription")
async def subscribe(request: Request, sessions: Sessions, stripe: Gateway) -> Response:
    """The form's `price` (a plan) → a customer on a new test clock and a subscription-mode
    Checkout Session; 303 to its hosted page."""
    try:
        body = await request.body()
        if len(body) > MAX_FORM_BYTES:
            raise InvalidRequest("The form is too large.", param="price")
        price = dict(parse_qsl(body.decode("utf-8", "replace"))).get("price", "")
        url = await plans.subscribe(
            sessions,
            stripe,
            price,
            success_url=f"{request.url_for('demo_plan')}?session_id={{CHECKOUT_SESSION_ID}}",
            cancel_url=str(request.url_for("shop")),
        )
    except InvalidRequest as error:
        return await _shop_with_error(stripe, error)
    return RedirectResponse(url, status_code=303)


@router.get("/plan", summary="Demo plan", name="demo_plan")
async def plan(
    request: Request, session: Session, session_id: Annotated[str, Query(max_length=255)]
) -> HTMLResponse:
    """The subscription Checkout Session `session_id` made, its invoices, kept live."""
    return _html(pages.plan_page(await plans.state(session, session_id, _grace(request))))


@router.get("/plans/{session_id}", summary="Demo plan state")
async def plan_state(request: Request, session_id: str, session: Session) -> dict[str, Any]:
    return await plans.state(session, session_id, _grace(request))


@router.post("/plans/{session_id}/advance", summary="Advance a demo plan's clock")
async def advance(session_id: str, session: Session, stripe: Gateway) -> dict[str, bool]:
    """Advance the plan's test clock past its next renewal (the page polls for the outcome)."""
    await plans.advance(session, stripe, session_id)
    return {"advancing": True}


@router.post("/plans/{session_id}/failing-card", summary="Give a demo plan a declining card")
async def failing_card(session_id: str, session: Session, stripe: Gateway) -> dict[str, bool]:
    """Make a card that declines every charge the plan's default payment method."""
    await plans.use_failing_card(session, stripe, session_id)
    return {"failing_card": True}


@router.get("/success", summary="Demo order status", name="demo_success")
async def success(
    session: Session, session_id: Annotated[str, Query(max_length=255)]
) -> HTMLResponse:
    """The order paid by Checkout Session `session_id`, its status and history, kept live."""
    return _html(pages.success_page(await service.order_for_checkout_session(session, session_id)))


@router.get("/orders/{order_id}", summary="Demo order")
async def order(order_id: str, session: Session) -> OrderRead:
    """A demo order as `GET /orders/{id}` has it (orders the demo did not make are 404)."""
    return OrderRead.of(await service.order(session, order_id))


def _elements_html(request: Request, text: str) -> HTMLResponse:
    settings: Settings = request.app.state.settings
    return HTMLResponse(
        text, headers={"Content-Security-Policy": elements.content_security_policy(settings)}
    )


@router.get("/elements", summary="Demo checkout with Stripe.js")
async def elements_checkout(request: Request, stripe: Gateway) -> HTMLResponse:
    """The catalogue, priced by `POST /api/create-payment-intent`, paid in the Payment Element."""
    return _elements_html(request, elements.checkout_page(await service.catalogue(stripe)))


@router.get("/elements/complete", summary="Demo payment status", name="demo_elements_complete")
async def elements_complete(request: Request) -> HTMLResponse:
    """The `return_url` Stripe.js sends the customer to, with `payment_intent` and
    `payment_intent_client_secret` in the query."""
    return _elements_html(request, elements.complete_page())


@router.get("/elements/order", summary="Demo order of a payment")
async def elements_order(
    session: Session,
    stripe: Gateway,
    payment_intent: Annotated[str, Query(max_length=255)],
    payment_intent_client_secret: Annotated[str, Query(max_length=255)],
) -> OrderRead:
    """The order the payment intent pays, for the holder of its client secret (404 otherwise)."""
    found = await elements.order_for_payment(
        session, stripe, payment_intent, payment_intent_client_secret
    )
    return OrderRead.of(found)


@router.get("/elements.js", summary="Demo Stripe.js checkout script")
async def elements_script() -> Response:
    return Response(elements.SCRIPT, media_type="text/javascript")


@router.get("/demo.css", summary="Demo stylesheet")
async def stylesheet() -> Response:
    return Response(pages.STYLESHEET, media_type="text/css")


@router.get("/demo.js", summary="Demo script")
async def script() -> Response:
    return Response(pages.SCRIPT, media_type="text/javascript")


async def _shop_with_error(stripe: StripeGateway, error: InvalidRequest) -> HTMLResponse:
    shop_page = pages.shop_page(
        await service.catalogue(stripe), await plans.plans(stripe), error=error.message
    )
    return _html(shop_page, 400)


def _grace(request: Request) -> int:
    settings: Settings = request.app.state.settings
    return settings.subscription_grace_seconds


def _quantities(body: bytes) -> dict[str, int]:
    if len(body) > MAX_FORM_BYTES:
        raise InvalidRequest("The form is too large.", param="items")
    quantities: dict[str, int] = {}
    for price, value in parse_qsl(body.decode("utf-8", "replace")):
        try:
            quantity = int(value or "0")
        except ValueError:
            raise InvalidRequest(
                "Quantities are whole numbers.", code="parameter_invalid", param=price
            ) from None
        if quantity < 0:
            raise InvalidRequest(
                "Quantities cannot be negative.", code="parameter_invalid", param=price
            )
        quantities[price] = quantities.get(price, 0) + quantity
    return quantities
