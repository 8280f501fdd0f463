"""The browser's payment intent: the amount comes from Stripe prices or a stored order, never
from the request, and the order and intent are made exactly as `POST /payment-intents` makes
them.

A cart's order is made by `POST /payment-intents`' own `create`: committed before Stripe is called
and keyed into Stripe's idempotency key, so when Stripe's answer is lost (503
`stripe_outcome_unknown`) a retry with the same `Idempotency-Key` finds that order and links the
intent Stripe made, never a second one. The browser has no API key: its key is scoped by its
client IP (hashed), so another browser sending the same key never gets this order's client
secret."""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.errors import AppError, Conflict, InvalidRequest, NotFound
from app.models import OrderStatus
from app.money import check_amount
from app.orders.service import get_order, sync_payment_intent
from app.payment_intents import service as payment_intents
from app.payment_intents.schemas import PaymentIntentCreate
from app.payment_intents.service import create_for_order
from app.public.schemas import CartItem, PublicPaymentIntent, PublicPaymentIntentCreate
from app.stripe_gateway import StripeGateway

SOURCE = "api:POST /api/create-payment-intent"
PAYABLE = frozenset({OrderStatus.PENDING, OrderStatus.PAYMENT_FAILED})
INTENT_PAYABLE = frozenset({"requires_payment_method", "requires_confirmation", "requires_action"})


async def create_payment_intent(
    sessions: async_sessionmaker[AsyncSession],
    gateway: StripeGateway,
    body: PublicPaymentIntentCreate,
    *,
    client_ip: str,
    idempotency_key: str | None = None,
) -> PublicPaymentIntent | AppError:
    """The intent for a cart or an order, committed; or Stripe's refusal, to render (the
    discarded order's removal committed)."""
    if body.items is not None and body.order_id is not None:
        raise InvalidRequest(
            "Send either `items` or `order_id`, not both.", code="parameter_invalid", param="items"
        )
    if body.items is not None:
        owner = "public:" + hashlib.sha256(client_ip.encode()).hexdigest()[:48]
        outcome = await _for_cart(sessions, gateway, body.items, owner, idempotency_key)
        if outcome.error is not None:
            return outcome.error
        order_id, intent = outcome.order_id, outcome.intent
    elif body.order_id is not None:
        order_id, intent = await _for_order(sessions, gateway, body.order_id)
    else:
        raise InvalidRequest(
            "Send `items` (Stripe prices and quantities) or the `order_id` of an order the shop "
            "created.",
            code="parameter_missing",
            param="items",
        )
    return PublicPaymentIntent(
        clientSecret=intent["client_secret"],
        paymentIntentId=intent["id"],
        orderId=order_id,
        amount=intent["amount"],
        currency=intent["currency"],
    )


async def _for_cart(
    sessions: async_sessionmaker[AsyncSession],
    gateway: StripeGateway,
    items: list[CartItem],
    owner: str,
    idempotency_key: str | None,
) -> payment_intents.Outcome:
    ids = list(dict.fromkeys(item.price for item in items))
    fetched = await asyncio.gather(
        *(gateway.retrieve_price(price) for price in ids), return_exceptions=True
    )
    prices = dict(zip(ids, fetched, strict=True))
    currency: str | None = None
    amount = 0
    for i, item in enumerate(items):
        param = f"items[{i}][price]"
        price = prices[item.price]
        if isinstance(price, NotFound):
            raise InvalidRequest(
                f"No such price: '{item.price}'", code="resource_missing", param=param
            )
        if isinstance(price, BaseException):
            raise price
        if not price.active:
            raise InvalidRequest(
                f"Price '{item.price}' is no longer sold (inactive).",
                code="price_inactive",
                param=param,
            )
        if price.type != "one_time" or price.unit_amount is None:
            raise InvalidRequest(
                f"Price '{item.price}' is not a one-time price with a fixed amount; recurring "
                "prices are sold through a subscription checkout session.",
                code="price_not_one_time",
                param=param,
            )
        if currency is None:
            currency = price.currency
        elif price.currency != currency:
            raise InvalidRequest(
                f"Price '{item.price}' is in {price.currency.upper()}, the cart in "
                f"{currency.upper()}: one payment has one currency.",
                code="currency_mismatch",
                param=param,
            )
        amount += price.unit_amount * item.quantity
    assert currency is not None
    check_amount(amount, currency, param="items")
    create = PaymentIntentCreate.model_validate(
        {"amount": amount, "currency": currency, "automatic_payment_methods": {"enabled": True}}
    )
    return await payment_intents.create(
        sessions, gateway, create, source=SOURCE, caller=owner, idempotency_key=idempotency_key
    )


async def _for_order(
    sessions: async_sessionmaker[AsyncSession], gateway: StripeGateway, order_id: str
) -> tuple[str, dict[str, Any]]:
    async with sessions.begin() as session:
        try:
            order = await get_order(session, order_id, for_update=True)
        except NotFound:
            raise NotFound(f"No such order: '{order_id}'", param="order_id") from None
        if order.checkout_session is not None:
            raise Conflict(
                f"Order '{order_id}' is paid through a Checkout Session, not a payment intent.",
                code="order_not_payable",
            )
        if order.status not in PAYABLE:
            raise Conflict(
                f"Order '{order_id}' is {order.status}: only a pending or failed order can be "
                "paid.",
                code="order_not_payable",
            )
        if order.payment_intent is None:
            outcome = await create_for_order(
                session,
                gateway,
                order,
                {"automatic_payment_methods": {"enabled": True}},
                source=SOURCE,
            )
            return order.id, outcome.intent
        intent = (await gateway.retrieve_payment_intent(order.payment_intent)).to_dict()
        if intent["status"] not in INTENT_PAYABLE:
            raise Conflict(
                f"Order '{order_id}' has a payment intent that is {intent['status']}; it cannot be "
                "paid again.",
                code="order_not_payable",
            )
        await sync_payment_intent(
            session, order, intent, SOURCE, failed=intent.get("last_payment_error") is not None
        )
        return order.id, intent
