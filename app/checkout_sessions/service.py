"""Checkout Sessions. A payment-mode session pays for an order: the order is written first with
the amount the service computes from the line items (`price_data` as given, prices read from
Stripe), then the session is created with the order id as `client_reference_id` and in the
session's and its payment intent's metadata, under the idempotency key `order:{id}:checkout`.
Subscription and setup sessions have no order; they are mirrored all the same.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from stripe.params.checkout import SessionCreateParams

from app.checkout_sessions.schemas import CheckoutSessionCreate, LineItem
from app.errors import InvalidRequest, NotFound, StripeFailure
from app.models import CheckoutSession, Order, OrderStatus
from app.money import METADATA_MAX_KEYS, check_amount
from app.orders.service import (
    ORDER_KEY,
    get_order,
    insert_order,
    move,
    record_checkout_session,
)
from app.stripe_gateway import StripeGateway

MIN_EXPIRY = 30 * 60
MAX_EXPIRY = 24 * 60 * 60
CREATE_SOURCE = "api:POST /checkout-sessions"


@dataclass(frozen=True)
class Outcome:
    checkout: dict[str, Any]
    order_id: str | None


async def create_checkout_session(
    session: AsyncSession, stripe: StripeGateway, body: CheckoutSessionCreate
) -> Outcome:
    _check(body)
    params = body.model_dump(exclude_none=True)
    if body.mode != "payment":
        row = CheckoutSession(mode=body.mode)
        session.add(row)
        await session.flush()
        created = (
            await stripe.create_checkout_session(
                cast(SessionCreateParams, params), f"checkout:{row.id}"
            )
        ).to_dict()
        row.stripe_id = created["id"]
        await session.flush()
        await record_checkout_session(session, None, created)
        return Outcome(created, None)

    assert body.line_items is not None
    amount, currency = await _price(stripe, body.line_items)
    order_id = await insert_order(
        session,
        amount=amount,
        currency=currency,
        source=CREATE_SOURCE,
        customer=body.customer,
        description=body.payment_intent_data.description if body.payment_intent_data else None,
        metadata=body.metadata,
    )
    order = await get_order(session, order_id)
    intent_data = params.setdefault("payment_intent_data", {})
    intent_data["metadata"] = {**intent_data.get("metadata", {}), ORDER_KEY: order.id}
    params["metadata"] = {**params.get("metadata", {}), ORDER_KEY: order.id}
    params["client_reference_id"] = order.id
    created = (
        await stripe.create_checkout_session(
            cast(SessionCreateParams, params), f"order:{order.id}:checkout"
        )
    ).to_dict()
    if created.get("amount_total") != amount or created.get("currency") != currency:
        # Stripe priced the session differently: never leave a payable page for another amount.
        await stripe.expire_checkout_session(created["id"], f"order:{order.id}:checkout:expire")
        raise StripeFailure(
            f"Stripe priced the session at {created.get('amount_total')} "
            f"{created.get('currency')}, not the {amount} {currency} the service computed; the "
            "session was expired.",
            code="amount_mismatch",
        )
    await record_checkout_session(session, order, created)
    return Outcome(created, order.id)


async def get_checkout_session(
    session: AsyncSession, stripe: StripeGateway, session_id: str, expand: list[str]
) -> Outcome:
    row = await _row(session, session_id)
    order = await _order_of(session, row)
    checkout = (await stripe.retrieve_checkout_session(session_id, expand)).to_dict()
    await record_checkout_session(session, order, checkout)
    return Outcome(checkout, row.order_id)


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
