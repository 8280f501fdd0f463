"""The demo shop: its catalogue (Stripe's active one-time prices), a checkout through the
service's own Checkout Session path, and the orders it made."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.checkout_sessions import service as checkout_sessions
from app.checkout_sessions.schemas import CheckoutSessionCreate, LineItem
from app.errors import InvalidRequest, NotFound
from app.models import Order
from app.orders.service import find_order_for_checkout_session, with_history
from app.stripe_gateway import StripeGateway

# Marks the orders the demo made: only those are shown without an API key.
DEMO_METADATA = {"source": "demo"}
MAX_QUANTITY = 10


@dataclass(frozen=True)
class Item:
    price: str
    name: str
    description: str
    unit_amount: int
    currency: str


async def offered_prices(
    stripe: StripeGateway, kind: Literal["one_time", "recurring"]
) -> list[tuple[dict[str, Any], Item]]:
    """The active prices of `kind` of active products with a unit amount, by name: each as
    Stripe has it, and as the shop shows it."""
    page = await stripe.list_prices(
        {"active": True, "type": kind, "limit": 100, "expand": ["data.product"]}
    )
    found = []
    for price in page.data:
        data: dict[str, Any] = price.to_dict()
        product = data.get("product")
        if not isinstance(product, dict) or not product.get("active", True):
            continue
        if data.get("unit_amount") is None:
            continue
        item = Item(
            price=data["id"],
            name=product.get("name") or data.get("nickname") or data["id"],
            description=product.get("description") or "",
            unit_amount=data["unit_amount"],
            currency=data["currency"],
        )
        found.append((data, item))
    return sorted(found, key=lambda pair: (pair[1].name, pair[1].price))


async def catalogue(stripe: StripeGateway) -> list[Item]:
    """The active one-time prices of active products, by name."""
    return [item for _price, item in await offered_prices(stripe, "one_time")]


async def checkout(
    sessions: async_sessionmaker[AsyncSession],
    stripe: StripeGateway,
    quantities: dict[str, int],
    *,
    success_url: str,
    cancel_url: str,
) -> str:
    """A payment-mode Checkout Session for the chosen prices; the url of its hosted page."""
    chosen = {price: n for price, n in quantities.items() if n > 0}
    if not chosen:
        raise InvalidRequest("Pick at least one item.", code="parameter_missing", param="items")
    if any(n > MAX_QUANTITY for n in chosen.values()):
        raise InvalidRequest(
            f"At most {MAX_QUANTITY} of each item.", code="parameter_invalid", param="items"
        )
    offered = {item.price for item in await catalogue(stripe)}
    unknown = sorted(set(chosen) - offered)
    if unknown:
        raise InvalidRequest(
            f"Not in the catalogue: {', '.join(unknown)}.", code="parameter_invalid", param="items"
        )
    body = CheckoutSessionCreate(
        mode="payment",
        line_items=[LineItem(price=price, quantity=n) for price, n in sorted(chosen.items())],
        success_url=success_url,
        cancel_url=cancel_url,
        metadata=DEMO_METADATA,
    )
    outcome = await checkout_sessions.create(sessions, stripe, body)
    url = outcome.checkout.get("url")
    if not isinstance(url, str):
        raise InvalidRequest("Stripe gave the session no hosted page.", code="no_hosted_page")
    return url


def is_demo(metadata: dict[str, Any] | None) -> bool:
    """Whether an object's metadata marks it as the demo's."""
    found = metadata or {}
    return all(found.get(key) == value for key, value in DEMO_METADATA.items())


async def order_for_checkout_session(session: AsyncSession, checkout_session: str) -> Order:
    found = await find_order_for_checkout_session(session, checkout_session, for_update=False)
    if found is None or not is_demo(found.metadata_):
        raise NotFound(f"No demo order for '{checkout_session}'", param="session_id")
    return await with_history(session, found.id)


async def order(session: AsyncSession, order_id: str) -> Order:
    found = await with_history(session, order_id)
    if not is_demo(found.metadata_):
        raise NotFound(f"No such order: '{order_id}'", param="id")
    return found
