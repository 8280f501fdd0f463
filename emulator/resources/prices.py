"""Prices (`price_…`): `/v1/prices` create, retrieve, update, list and search; the demo catalogue.

Also exports `create_price` (checkout's `price_data` goes through it) and `checked_price_params`.
The demo catalogue holds the seed document's ids `price_123` (one-time) and `price_monthly`
(recurring), plus a few shop items (`price_tshirt`, `price_mug`, `price_stickers`).
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

from stripe.params import (
    PriceCreateParams,
    PriceListParams,
    PriceRetrieveParams,
    PriceSearchParams,
    PriceUpdateParams,
)

from emulator import search
from emulator.context import Ctx, Emulator, seeder
from emulator.currencies import MAXIMUM, checked_currency
from emulator.errors import invalid_request
from emulator.ids import new_id
from emulator.metadata import checked, merged
from emulator.objects import blank
from emulator.resources.catalog import create_product, new_product
from emulator.routing import router
from emulator.store import Obj, paginate

# Stripe's longest billing period: one year, 12 months or 52 weeks.
MAX_INTERVAL_COUNT = {"day": 365, "week": 52, "month": 12, "year": 1}
_LOOKUP_KEYS = "price_lookup_keys"  # hidden index: lookup key -> price id


def _at(prefix: str, key: str) -> str:
    return f"{prefix}[{key}]" if prefix else key


def checked_price_params(
    params: dict[str, Any], prefix: str = "", *, needs_product: bool = True
) -> None:
    """Refuse price parameters Stripe refuses, naming the parameter (nothing is stored)."""
    scheme = params.get("billing_scheme", "per_unit")
    if scheme == "tiered":
        if not params.get("tiers"):
            raise invalid_request(
                f"Missing required param: {_at(prefix, 'tiers')}.",
                param=_at(prefix, "tiers"),
                code="parameter_missing",
            )
        if "tiers_mode" not in params:
            raise invalid_request(
                f"Missing required param: {_at(prefix, 'tiers_mode')}.",
                param=_at(prefix, "tiers_mode"),
                code="parameter_missing",
            )
    elif "tiers" in params or "tiers_mode" in params:
        raise invalid_request(
            "You may only specify `tiers` and `tiers_mode` when `billing_scheme` is `tiered`.",
            param=_at(prefix, "tiers" if "tiers" in params else "tiers_mode"),
        )
    custom = params.get("custom_unit_amount")
    if scheme == "per_unit" and not (custom and custom.get("enabled")):
        if "unit_amount" in params and "unit_amount_decimal" in params:
            raise invalid_request(
                "You may only specify one of these parameters: unit_amount, unit_amount_decimal.",
                param=_at(prefix, "unit_amount_decimal"),
            )
        if "unit_amount" not in params and "unit_amount_decimal" not in params:
            raise invalid_request(
                f"Missing required param: {_at(prefix, 'unit_amount')}.",
                param=_at(prefix, "unit_amount"),
                code="parameter_missing",
            )
    if "unit_amount" in params and not 0 <= params["unit_amount"] <= MAXIMUM:
        raise invalid_request(
            f"This value must be greater than or equal to 0 and less than or equal to {MAXIMUM}.",
            param=_at(prefix, "unit_amount"),
        )
    if "unit_amount_decimal" in params:
        _decimal(params["unit_amount_decimal"], _at(prefix, "unit_amount_decimal"))
    checked_currency(params["currency"], _at(prefix, "currency"))
    recurring = params.get("recurring")
    if recurring:
        interval = recurring["interval"]
        count = recurring.get("interval_count", 1)
        if count < 1 or count > MAX_INTERVAL_COUNT[interval]:
            raise invalid_request(
                "Invalid recurring[interval_count]: the maximum billing period is one year "
                "(1 year, 12 months, 52 weeks or 365 days), and the minimum is 1 interval.",
                param=_at(prefix, "recurring[interval_count]"),
            )
        if custom and custom.get("enabled"):
            raise invalid_request(
                "`custom_unit_amount` is not supported for recurring prices.",
                param=_at(prefix, "custom_unit_amount"),
            )
    if "product" in params and "product_data" in params:
        raise invalid_request(
            "You may only specify one of these parameters: product, product_data.",
            param=_at(prefix, "product_data"),
        )
    if needs_product and "product" not in params and "product_data" not in params:
        raise invalid_request(
            "You must specify either `product` or `product_data` when creating a price.",
            param=_at(prefix, "product"),
            code="parameter_missing",
        )


def _decimal(text: Any, param: str) -> Decimal:
    try:
        value = Decimal(str(text))
    except InvalidOperation:
        raise invalid_request(f"Invalid decimal: {str(text)[:100]}", param=param) from None
    if not value.is_finite() or value < 0 or value > MAXIMUM:
        raise invalid_request(
            f"This value must be greater than or equal to 0 and less than or equal to {MAXIMUM}.",
            param=param,
        )
    return value


def new_price(now: int, params: dict[str, Any], product_id: str, *, price_id: str = "") -> Obj:
    """A price object from checked create parameters (not stored)."""
    recurring = params.get("recurring")
    unit_amount = params.get("unit_amount")
    decimal_text: str | None = None
    if unit_amount is not None:
        decimal_text = str(unit_amount)
    elif "unit_amount_decimal" in params:
        value = Decimal(str(params["unit_amount_decimal"]))
        decimal_text = format(value.normalize(), "f")
        if value == value.to_integral_value():
            unit_amount = int(value)
    custom = params.get("custom_unit_amount")
    price = blank(
        "price",
        id=price_id or new_id("price"),
        active=params.get("active", True),
        billing_scheme=params.get("billing_scheme", "per_unit"),
        created=now,
        currency=checked_currency(params["currency"]),
        custom_unit_amount=(
            {
                "maximum": custom.get("maximum"),
                "minimum": custom.get("minimum"),
                "preset": custom.get("preset"),
            }
            if custom and custom.get("enabled")
            else None
        ),
        lookup_key=params.get("lookup_key"),
        metadata=checked(params.get("metadata")),
        nickname=params.get("nickname"),
        product=product_id,
        recurring=(
            {
                "interval": recurring["interval"],
                "interval_count": recurring.get("interval_count", 1),
                "meter": recurring.get("meter"),
                "trial_period_days": recurring.get("trial_period_days"),
                "usage_type": recurring.get("usage_type", "licensed"),
            }
            if recurring
            else None
        ),
        tax_behavior=params.get("tax_behavior", "unspecified"),
        tiers_mode=params.get("tiers_mode"),
        transform_quantity=params.get("transform_quantity"),
        type="recurring" if recurring else "one_time",
        unit_amount=unit_amount,
        unit_amount_decimal=decimal_text,
    )
    # Includable fields: Stripe shows them only when expanded.
    price.pop("tiers", None)
    price.pop("currency_options", None)
    return price


def create_price(ctx: Ctx, params: dict[str, Any], *, param: str = "", inline: bool = False) -> Obj:
    """Check, store and return a new price (with its product when `product_data` is given).

    `inline` prices are checkout's `price_data`: archived from birth and announced by no event,
    as Stripe makes them. Errors name parameters under the `param` prefix.
    """
    checked_price_params(params, param)
    if "product" in params:
        product = ctx.coll("product").find(params["product"])
        if product is None:
            raise invalid_request(
                f"No such product: '{params['product']}'",
                param=_at(param, "product"),
                code="resource_missing",
            )
        product_id = product["id"]
    else:
        data = dict(params["product_data"])
        if inline:
            product = new_product(ctx.now(), {**data, "active": False})
            ctx.coll("product").add(product)
        else:
            product = create_product(ctx, data, param=_at(param, "product_data[id]"))
        product_id = product["id"]
    lookup_key = params.get("lookup_key")
    keys: dict[str, str] = ctx.store.hidden_of(_LOOKUP_KEYS)
    if lookup_key is not None and lookup_key in keys and not params.get("transfer_lookup_key"):
        raise invalid_request(
            f"A price (`{keys[lookup_key]}`) already uses that lookup key.",
            param=_at(param, "lookup_key"),
        )
    active = False if inline else params.get("active", True)
    price = new_price(ctx.now(), {**params, "active": active}, product_id)
    _take_lookup_key(ctx, price, lookup_key)
    ctx.coll("price").add(price)
    if params.get("tiers"):
        ctx.store.hidden_of(price["id"])["tiers"] = params["tiers"]
    if not inline:
        ctx.emit("price.created", price)
    return price


def _take_lookup_key(ctx: Ctx, price: Obj, lookup_key: str | None) -> None:
    keys: dict[str, str] = ctx.store.hidden_of(_LOOKUP_KEYS)
    if lookup_key is None:
        return
    holder = ctx.coll("price").find(keys.get(lookup_key, ""))
    if holder is not None and holder is not price:
        holder["lookup_key"] = None
    keys[lookup_key] = price["id"]
    price["lookup_key"] = lookup_key


@router.route("POST", "/v1/prices", PriceCreateParams)
def create(ctx: Ctx, params: dict[str, Any]) -> dict[str, Any]:
    return create_price(ctx, params)


@router.route("GET", "/v1/prices/search", PriceSearchParams)
def search_(ctx: Ctx, params: dict[str, Any]) -> dict[str, Any]:
    return search.search(ctx.coll("price"), params, "/v1/prices/search")


@router.route("GET", "/v1/prices/{price}", PriceRetrieveParams)
def retrieve(ctx: Ctx, params: dict[str, Any]) -> dict[str, Any]:
    return ctx.coll("price").get(ctx.path["price"], param="id")


@router.route("POST", "/v1/prices/{price}", PriceUpdateParams)
def update(ctx: Ctx, params: dict[str, Any]) -> dict[str, Any]:
    price = ctx.coll("price").get(ctx.path["price"], param="id")
    before = dict(price)
    if "lookup_key" in params:
        keys: dict[str, str] = ctx.store.hidden_of(_LOOKUP_KEYS)
        key = params["lookup_key"]
        if key in keys and keys[key] != price["id"] and not params.get("transfer_lookup_key"):
            raise invalid_request(
                f"A price (`{keys[key]}`) already uses that lookup key.", param="lookup_key"
            )
        if price["lookup_key"] is not None:
            keys.pop(price["lookup_key"], None)
        _take_lookup_key(ctx, price, key)
    if "tax_behavior" in params:
        if price["tax_behavior"] not in ("unspecified", params["tax_behavior"]):
            raise invalid_request(
                "You cannot change `tax_behavior` once it has been set to `inclusive` or "
                "`exclusive`.",
                param="tax_behavior",
            )
        price["tax_behavior"] = params["tax_behavior"]
    for field in ("active", "nickname"):
        if field in params:
            price[field] = params[field]
    if "metadata" in params:
        price["metadata"] = merged(price["metadata"], params["metadata"])
    previous = {k: v for k, v in before.items() if price[k] != v}
    if previous:
        ctx.emit("price.updated", price, previous)
    return price


@router.route("GET", "/v1/prices", PriceListParams)
def list_(ctx: Ctx, params: dict[str, Any]) -> dict[str, Any]:
    checks = [(f, params[f]) for f in ("active", "product", "type") if f in params]
    currency = params.get("currency", "").lower() or None
    lookup_keys = set(params.get("lookup_keys") or ()) or None
    recurring = params.get("recurring") or {}

    def where(price: Obj) -> bool:
        if any(price[field] != value for field, value in checks):
            return False
        if currency is not None and price["currency"] != currency:
            return False
        if lookup_keys is not None and price["lookup_key"] not in lookup_keys:
            return False
        if recurring:
            plan = price["recurring"]
            if plan is None:
                return False
            return all(plan.get(k) == v for k, v in recurring.items())
        return True

    return paginate(ctx.coll("price"), params, "/v1/prices", where)


# The demo catalogue: (price id, product id, product, price parameters).
CATALOGUE: tuple[tuple[str, str, dict[str, Any], dict[str, Any]], ...] = (
    (
        "price_123",
        "prod_demo",
        {
            "name": "Demo product",
            "description": "A one-time demo purchase.",
            "images": ["https://example.com/demo.png"],
            "type": "good",
        },
        {"currency": "usd", "unit_amount": 1500, "nickname": "Demo product"},
    ),
    (
        "price_monthly",
        "prod_premium",
        {
            "name": "Premium plan",
            "description": "Everything in Premium, billed monthly.",
            "images": ["https://example.com/premium.png"],
            "type": "service",
        },
        {
            "currency": "usd",
            "unit_amount": 2900,
            "nickname": "Premium monthly",
            "recurring": {"interval": "month", "interval_count": 1},
        },
    ),
    (
        "price_tshirt",
        "prod_tshirt",
        {
            "name": "T-shirt",
            "description": "Comfortable cotton t-shirt",
            "images": ["https://example.com/tshirt.png"],
            "type": "good",
        },
        {"currency": "usd", "unit_amount": 2000},
    ),
    (
        "price_mug",
        "prod_mug",
        {
            "name": "Coffee mug",
            "description": "A 350 ml ceramic mug.",
            "images": ["https://example.com/mug.png"],
            "type": "good",
        },
        {"currency": "usd", "unit_amount": 1200},
    ),
    (
        "price_stickers",
        "prod_stickers",
        {
            "name": "Sticker pack",
            "description": "Ten vinyl stickers.",
            "images": ["https://example.com/stickers.png"],
            "type": "good",
        },
        {"currency": "usd", "unit_amount": 500},
    ),
)


@seeder
def seed_catalogue(emu: Emulator) -> None:
    now = emu.now()
    for price_id, product_id, product_params, price_params in CATALOGUE:
        product = new_product(now, product_params, product_id=product_id)
        price = new_price(now, price_params, product_id, price_id=price_id)
        product["default_price"] = price_id
        emu.coll("product").add(product)
        emu.coll("price").add(price)
