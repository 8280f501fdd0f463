"""Checkout Sessions (`cs_test_…`): create, retrieve, update, list, expire, line items; the hosted
page at each session's `url`; and `POST /_emulator/checkout/sessions/{id}/complete`, which pays a
session as a customer would.

Payment mode pays through a PaymentIntent created at completion (none exists before, as in this
API version). The session follows its intent through the events the intent records: it completes
when the intent succeeds, is authorised, or starts processing (a card that settles later), and a
processing payment's outcome then fires `checkout.session.async_payment_succeeded` or `…_failed`.
Subscription mode makes a Subscription, setup mode a SetupIntent. Invoices are not modelled.
"""

from __future__ import annotations

from typing import Any

from stripe.params.checkout import (
    SessionCreateParams,
    SessionExpireParams,
    SessionLineItemListParams,
    SessionListParams,
    SessionRetrieveParams,
    SessionUpdateParams,
)

from emulator import hosted
from emulator.cards import card_error, card_of, resolve_payment_method
from emulator.context import Ctx, Emulator, includable, listener
from emulator.currencies import MINIMUM, check_charge_amount, checked_currency, format_amount
from emulator.errors import StripeError, invalid_request
from emulator.ids import new_id
from emulator.metadata import checked, merged
from emulator.objects import blank
from emulator.resources.customers import new_customer
from emulator.resources.prices import checked_price_params, create_price
from emulator.routing import Response, router
from emulator.store import Obj, paginate

DAY = 86400
SESSION_ID_LENGTH = 58
MIN_EXPIRY = 30 * 60
MAX_LINE_ITEMS = 100
MAX_QUANTITY = 999_999
EXPANDED_LINE_ITEMS = 10  # items shown by `expand[]=line_items` before `has_more`
DEFAULT_EMAIL = "customer@example.com"  # what the "customer" types when nothing prefilled it


# ---------------------------------------------------------------------------------------------
# Creating a session


def _mode(params: dict[str, Any], prices: list[tuple[Obj | None, dict[str, Any]]]) -> str:
    """The session's mode: as given, else inferred from whether any price recurs."""
    if "mode" in params:
        return str(params["mode"])
    if not prices:
        raise invalid_request(
            "Missing required param: mode.", param="mode", code="parameter_missing"
        )
    return "subscription" if any(_recurs(p, d) for p, d in prices) else "payment"


def _recurs(price: Obj | None, data: dict[str, Any]) -> bool:
    if price is not None:
        return bool(price["type"] == "recurring")
    return bool(data.get("recurring"))


def _checked_line_items(
    ctx: Ctx, params: dict[str, Any]
) -> list[tuple[Obj | None, dict[str, Any]]]:
    """Each line item's existing price, or None and its `price_data`; nothing is stored yet."""
    out: list[tuple[Obj | None, dict[str, Any]]] = []
    raw = params.get("line_items") or []
    if len(raw) > MAX_LINE_ITEMS:
        raise invalid_request(
            f"You can only pass up to {MAX_LINE_ITEMS} line items.", param="line_items"
        )
    for i, item in enumerate(raw):
        at = f"line_items[{i}]"
        if "price" in item and "price_data" in item:
            raise invalid_request(
                "You may only specify one of these parameters: price, price_data.", param=at
            )
        if "price" in item:
            price = ctx.coll("price").find(item["price"])
            if price is None:
                raise invalid_request(
                    f"No such price: '{item['price']}'",
                    param=f"{at}[price]",
                    code="resource_missing",
                )
            if not price["active"]:
                raise invalid_request(
                    "The price specified is inactive. This field only accepts active prices.",
                    param=f"{at}[price]",
                )
            if price["unit_amount"] is None:
                raise invalid_request(
                    "The emulator supports only per-unit prices with a fixed `unit_amount` in "
                    "Checkout.",
                    param=f"{at}[price]",
                )
            out.append((price, {}))
        elif "price_data" in item:
            data = item["price_data"]
            checked_price_params(data, f"{at}[price_data]")
            if "product" in data and ctx.coll("product").find(data["product"]) is None:
                raise invalid_request(
                    f"No such product: '{data['product']}'",
                    param=f"{at}[price_data][product]",
                    code="resource_missing",
                )
            if "unit_amount" not in data and "unit_amount_decimal" in data:
                if "." in str(data["unit_amount_decimal"]).rstrip("0").rstrip("."):
                    raise invalid_request(
                        "The emulator supports only whole-unit amounts in Checkout.",
                        param=f"{at}[price_data][unit_amount_decimal]",
                    )
            out.append((None, data))
        else:
            raise invalid_request(
                f"You must specify either `price` or `price_data` in `{at}`.", param=at
            )
        if "quantity" not in item:
            raise invalid_request(
                f"Quantity is required. Add `quantity` to `{at}`.",
                param=f"{at}[quantity]",
                code="parameter_missing",
            )
        if not 0 < item["quantity"] <= MAX_QUANTITY:
            raise invalid_request(
                "This value must be greater than or equal to 1 and less than or equal to "
                f"{MAX_QUANTITY}.",
                param=f"{at}[quantity]",
            )
    return out


def _unit_amount(price: Obj | None, data: dict[str, Any]) -> int:
    if price is not None:
        return int(price["unit_amount"])
    if "unit_amount" in data:
        return int(data["unit_amount"])
    return int(float(str(data["unit_amount_decimal"])))


def _currency(price: Obj | None, data: dict[str, Any]) -> str:
    return str(price["currency"]) if price is not None else checked_currency(data["currency"])


def _refuse_for_mode(params: dict[str, Any], mode: str) -> None:
    only = {
        "payment_intent_data": "payment",
        "subscription_data": "subscription",
        "setup_intent_data": "setup",
    }
    for name, allowed in only.items():
        if name in params and mode != allowed:
            raise invalid_request(f"You can not pass `{name}` in `{mode}` mode.", param=name)
    if "customer_creation" in params and mode == "subscription":
        raise invalid_request(
            "`customer_creation` can only be used in `payment` and `setup` mode.",
            param="customer_creation",
        )
    if "payment_method_collection" in params and mode != "subscription":
        raise invalid_request(
            "`payment_method_collection` can only be used in `subscription` mode.",
            param="payment_method_collection",
        )
    if "submit_type" in params and mode == "setup":
        raise invalid_request(
            "`submit_type` can only be used in `payment` and `subscription` mode.",
            param="submit_type",
        )


def _customer(ctx: Ctx, customer_id: str) -> Obj:
    """The customer named in a create call: an unknown one is Stripe's 400 on `customer`."""
    customer = ctx.coll("customer").find(customer_id)
    if customer is None or customer.get("deleted"):
        raise invalid_request(
            f"No such customer: '{customer_id}'", param="customer", code="resource_missing"
        )
    return customer


@router.route("POST", "/v1/checkout/sessions", SessionCreateParams)
def create(ctx: Ctx, params: dict[str, Any]) -> dict[str, Any]:
    now = ctx.now()
    ui_mode = params.get("ui_mode", "hosted_page")
    if "customer" in params and "customer_email" in params:
        raise invalid_request(
            "You may only specify one of these parameters: customer, customer_email.",
            param="customer_email",
        )
    customer = _customer(ctx, params["customer"]) if "customer" in params else None
    prices = _checked_line_items(ctx, params)
    mode = _mode(params, prices)
    _refuse_for_mode(params, mode)
    if mode == "setup":
        if prices:
            raise invalid_request(
                "You can not pass `line_items` in `setup` mode.", param="line_items"
            )
        if "currency" not in params and "allowed_payment_method_types" not in params:
            raise invalid_request(
                "Missing required param: currency.", param="currency", code="parameter_missing"
            )
    elif not prices:
        raise invalid_request(
            f"The `line_items` parameter is required in {mode} mode.",
            param="line_items",
            code="parameter_missing",
        )
    if mode == "payment":
        for i, (price, data) in enumerate(prices):
            if _recurs(price, data):
                raise invalid_request(
                    "You specified `payment` mode but passed a recurring price. Either switch "
                    "to `subscription` mode or use only one-time prices.",
                    param=f"line_items[{i}]",
                )
    if mode == "subscription" and not any(_recurs(p, d) for p, d in prices):
        raise invalid_request(
            "You must provide at least one recurring price in `subscription` mode when using "
            "prices.",
            param="line_items",
        )
    currencies = {_currency(p, d) for p, d in prices}
    if len(currencies) > 1:
        raise invalid_request(
            "All line items must use the same currency: Checkout does not support line items "
            "with different currencies.",
            param="line_items",
        )
    currency = currencies.pop() if currencies else None
    if mode == "setup" and "currency" in params:
        currency = checked_currency(params["currency"])
    elif "currency" in params and currency is not None:
        if checked_currency(params["currency"]) != currency:
            raise invalid_request(
                "The `currency` must match the currency of the line items.", param="currency"
            )
    trial_days = (params.get("subscription_data") or {}).get("trial_period_days")
    if trial_days is not None and trial_days < 1:
        raise invalid_request(
            "This value must be greater than or equal to 1.",
            param="subscription_data[trial_period_days]",
        )
    subtotal = sum(
        _unit_amount(p, d) * item["quantity"] for (p, d), item in _with_items(prices, params)
    )
    due_now = sum(
        _unit_amount(p, d) * item["quantity"]
        for (p, d), item in _with_items(prices, params)
        if not (trial_days and _recurs(p, d))
    )
    if mode == "payment" and currency is not None:
        minimum = MINIMUM.get(currency, 50)
        if 0 < subtotal < minimum:
            raise invalid_request(
                "The Checkout Session's total amount due must add up to at least "
                f"{format_amount(minimum, currency)} {currency}",
                param="line_items",
            )
        if subtotal:
            check_charge_amount(subtotal, currency, param="line_items")
    expires_at = params.get("expires_at", now + DAY)
    if expires_at < now + MIN_EXPIRY:
        raise invalid_request(
            "The `expires_at` timestamp must be at least 30 minutes from Checkout Session "
            "creation.",
            param="expires_at",
        )
    if expires_at > now + DAY:
        raise invalid_request(
            "The `expires_at` timestamp must be less than 24 hours from Checkout Session creation.",
            param="expires_at",
        )
    metadata = checked(params.get("metadata"))
    for name in ("payment_intent_data", "subscription_data", "setup_intent_data"):
        checked((params.get(name) or {}).get("metadata"), f"{name}[metadata]")

    session_id = new_id("cs_test", SESSION_ID_LENGTH)
    items = _store_line_items(ctx, prices, params, trial_days)
    hosted_page = ui_mode == "hosted_page"
    session = blank(
        "checkout.session",
        id=session_id,
        adaptive_pricing={"enabled": False},
        allow_promotion_codes=params.get("allow_promotion_codes"),
        allowed_payment_method_types=params.get("allowed_payment_method_types"),
        amount_subtotal=None if mode == "setup" else (due_now if trial_days else subtotal),
        amount_total=None if mode == "setup" else due_now,
        automatic_tax={"enabled": False, "liability": None, "provider": None, "status": None},
        billing_address_collection=params.get("billing_address_collection"),
        cancel_url=params.get("cancel_url"),
        client_reference_id=params.get("client_reference_id"),
        client_secret=None if hosted_page else f"{session_id}_secret_{new_id('x', 30)[2:]}",
        consent_collection=params.get("consent_collection"),
        created=now,
        currency=currency,
        custom_fields=list(params.get("custom_fields") or []),
        custom_text={
            "after_submit": None,
            "shipping_address": None,
            "submit": None,
            "terms_of_service_acceptance": None,
            **(params.get("custom_text") or {}),
        },
        customer=customer["id"] if customer else None,
        customer_creation=(
            None
            if mode == "subscription" or customer is not None
            else params.get("customer_creation", "if_required")
        ),
        customer_email=params.get("customer_email"),
        discounts=[],
        excluded_payment_method_types=params.get("excluded_payment_method_types"),
        expires_at=expires_at,
        integration_identifier=params.get("integration_identifier"),
        invoice_creation=(
            _invoice_creation(params.get("invoice_creation")) if mode == "payment" else None
        ),
        locale=params.get("locale"),
        managed_payments={"enabled": False},
        metadata=metadata,
        mode=mode,
        origin_context=params.get("origin_context"),
        payment_method_collection=(
            params.get("payment_method_collection", "always") if mode == "subscription" else None
        ),
        payment_method_options={"card": {"request_three_d_secure": "automatic"}},
        payment_method_types=["card"],
        payment_status="no_payment_required" if mode == "setup" or not due_now else "unpaid",
        phone_number_collection={
            "enabled": bool((params.get("phone_number_collection") or {}).get("enabled"))
        },
        redirect_on_completion=None
        if hosted_page
        else params.get("redirect_on_completion", "always"),
        return_url=params.get("return_url"),
        saved_payment_method_options=(
            {
                "allow_redisplay_filters": ["always"],
                "payment_method_remove": "disabled",
                "payment_method_save": None,
            }
            if customer is not None and mode != "setup"
            else None
        ),
        shipping_address_collection=params.get("shipping_address_collection"),
        shipping_options=[],
        status="open",
        submit_type=params.get("submit_type"),
        success_url=params.get("success_url"),
        tax_id_collection={"enabled": False, "required": "never"},
        total_details=(
            None
            if mode == "setup"
            else {"amount_discount": 0, "amount_shipping": 0, "amount_tax": 0}
        ),
        ui_mode=ui_mode,
        url=f"{ctx.emu.config.base_url}/checkout/pay/{session_id}" if hosted_page else None,
    )
    session.pop("line_items", None)
    ctx.coll("checkout.session").add(session)
    hidden = ctx.store.hidden_of(session_id)
    hidden["line_items"] = items
    hidden["params"] = {
        k: params[k]
        for k in ("payment_intent_data", "subscription_data", "setup_intent_data")
        if k in params
    }
    return session


def _with_items(
    prices: list[tuple[Obj | None, dict[str, Any]]], params: dict[str, Any]
) -> list[tuple[tuple[Obj | None, dict[str, Any]], dict[str, Any]]]:
    return list(zip(prices, params.get("line_items") or [], strict=True))


def _invoice_creation(given: dict[str, Any] | None) -> Obj:
    data = (given or {}).get("invoice_data") or {}
    return {
        "enabled": bool((given or {}).get("enabled")),
        "invoice_data": {
            "account_tax_ids": data.get("account_tax_ids") or None,
            "custom_fields": data.get("custom_fields"),
            "description": data.get("description"),
            "footer": data.get("footer"),
            "issuer": data.get("issuer"),
            "metadata": data.get("metadata") or {},
            "rendering_options": data.get("rendering_options"),
        },
    }


def _store_line_items(
    ctx: Ctx,
    prices: list[tuple[Obj | None, dict[str, Any]]],
    params: dict[str, Any],
    trial_days: int | None,
) -> list[Obj]:
    items = []
    for (price, data), given in _with_items(prices, params):
        if price is None:
            price = create_price(ctx, data, inline=True)
        product = ctx.coll("product").find(price["product"])
        amount = int(price["unit_amount"]) * given["quantity"]
        if trial_days and price["type"] == "recurring":
            amount = 0
        adjustable = given.get("adjustable_quantity")
        item = blank(
            "item",
            id=new_id("li"),
            adjustable_quantity=(
                {
                    "enabled": adjustable["enabled"],
                    "maximum": adjustable.get("maximum"),
                    "minimum": adjustable.get("minimum"),
                }
                if adjustable
                else None
            ),
            amount_discount=0,
            amount_subtotal=amount,
            amount_tax=0,
            amount_total=amount,
            currency=price["currency"],
            description=product["name"] if product else None,
            metadata=checked(given.get("metadata")),
            price=price,
            quantity=given["quantity"],
        )
        item.pop("discounts", None)
        item.pop("taxes", None)
        items.append(item)
    return items


# ---------------------------------------------------------------------------------------------
# Reading, updating, expiring


def _line_items_of(emu: Emulator, session: Obj) -> list[Obj]:
    items: list[Obj] = emu.store.hidden_of(session["id"]).get("line_items", [])
    return items


@includable("checkout.session", "line_items")
def include_line_items(emu: Emulator, session: Obj) -> Obj:
    items = _line_items_of(emu, session)
    return {
        "object": "list",
        "data": items[:EXPANDED_LINE_ITEMS],
        "has_more": len(items) > EXPANDED_LINE_ITEMS,
        "url": f"/v1/checkout/sessions/{session['id']}/line_items",
    }


def _session(ctx: Ctx, session_id: str, param: str = "session") -> Obj:
    """A stored session, expired first if its `expires_at` has passed."""
    session = ctx.coll("checkout.session").get(session_id, param=param)
    _expire_if_due(ctx, session)
    return session


def _expire_if_due(ctx: Ctx, session: Obj) -> None:
    if session["status"] == "open" and ctx.now() >= session["expires_at"]:
        _expire(ctx, session)


def _expire(ctx: Ctx, session: Obj) -> None:
    session["status"] = "expired"
    session["url"] = None
    ctx.emit("checkout.session.expired", session, {"status": "open"})


@router.route("GET", "/v1/checkout/sessions/{session}", SessionRetrieveParams)
def retrieve(ctx: Ctx, params: dict[str, Any]) -> dict[str, Any]:
    return _session(ctx, ctx.path["session"])


@router.route("POST", "/v1/checkout/sessions/{session}", SessionUpdateParams)
def update(ctx: Ctx, params: dict[str, Any]) -> dict[str, Any]:
    session = _session(ctx, ctx.path["session"])
    for name in ("line_items", "shipping_options", "collected_information"):
        if name in params:
            raise invalid_request(
                f"`{name}` can only be updated on Checkout Sessions with `ui_mode` `elements` "
                "or `embedded_page` that enabled the matching `permissions`.",
                param=name,
            )
    if "payment_intent_data" in params:
        if session["mode"] != "payment" or session["status"] != "open":
            raise invalid_request(
                "`payment_intent_data` can only be updated on open `payment` mode Checkout "
                "Sessions.",
                param="payment_intent_data",
            )
        stored = ctx.store.hidden_of(session["id"]).setdefault("params", {})
        stored["payment_intent_data"] = {
            **stored.get("payment_intent_data", {}),
            **params["payment_intent_data"],
        }
    if "metadata" in params:
        session["metadata"] = merged(session["metadata"], params["metadata"])
    return session


@router.route("POST", "/v1/checkout/sessions/{session}/expire", SessionExpireParams)
def expire(ctx: Ctx, params: dict[str, Any]) -> dict[str, Any]:
    session = _session(ctx, ctx.path["session"])
    if session["status"] != "open":
        raise invalid_request(
            'Only Checkout Sessions with a status in ["open"] can be expired. This Checkout '
            f"Session has a status of `{session['status']}`."
        )
    _expire(ctx, session)
    return session


@router.route("GET", "/v1/checkout/sessions", SessionListParams)
def list_(ctx: Ctx, params: dict[str, Any]) -> dict[str, Any]:
    checks = [
        (f, params[f])
        for f in ("payment_intent", "customer", "subscription", "payment_link")
        if f in params
    ]
    status = params.get("status")
    email = (params.get("customer_details") or {}).get("email")
    now = ctx.now()

    def where(session: Obj) -> bool:
        if any(session[field] != value for field, value in checks):
            return False
        if email is not None and (session["customer_details"] or {}).get("email") != email:
            return False
        current = session["status"]
        if current == "open" and now >= session["expires_at"]:
            current = "expired"
        return status is None or current == status

    page = paginate(ctx.coll("checkout.session"), params, "/v1/checkout/sessions", where)
    for session in page["data"]:
        _expire_if_due(ctx, session)
    return page


@router.route("GET", "/v1/checkout/sessions/{session}/line_items", SessionLineItemListParams)
def list_line_items(ctx: Ctx, params: dict[str, Any]) -> dict[str, Any]:
    session = ctx.coll("checkout.session").get(ctx.path["session"], param="session")
    items = _line_items_of(ctx.emu, session)
    limit = int(params.get("limit", 10))
    if limit < 1 or limit > 100:
        raise invalid_request(
            "This value must be greater than or equal to 1 and less than or equal to 100.",
            param="limit",
        )
    positions = {item["id"]: i for i, item in enumerate(items)}
    start, stop = 0, len(items)
    for name in ("starting_after", "ending_before"):
        if name in params:
            if params[name] not in positions:
                raise invalid_request(
                    f"No such line item: '{params[name]}'", param=name, code="resource_missing"
                )
    if "ending_before" in params:
        stop = positions[params["ending_before"]]
        start = max(0, stop - limit)
        data = items[start:stop]
        has_more = start > 0
    else:
        if "starting_after" in params:
            start = positions[params["starting_after"]] + 1
        data = items[start : start + limit]
        has_more = start + limit < stop
    return {
        "object": "list",
        "data": data,
        "has_more": has_more,
        "url": f"/v1/checkout/sessions/{session['id']}/line_items",
    }


# ---------------------------------------------------------------------------------------------
# Completing a session (the customer pays)


def _buyer(session: Obj, customer: Obj | None, given: dict[str, Any]) -> dict[str, Any]:
    email = (
        given.get("email")
        or session["customer_email"]
        or (customer or {}).get("email")
        or DEFAULT_EMAIL
    )
    return {
        "email": email,
        "name": given.get("name") or (customer or {}).get("name"),
        "phone": given.get("phone") or (customer or {}).get("phone"),
    }


def _new_customer(ctx: Ctx, buyer: dict[str, Any]) -> Obj:
    """The customer Checkout creates from what the buyer typed (emits `customer.created`)."""
    customer = new_customer(new_id("cus", 14), ctx.now())
    customer.update(email=buyer["email"], name=buyer["name"], phone=buyer["phone"])
    ctx.coll("customer").add(customer)
    ctx.emit("customer.created", customer)
    return customer


def _finish(ctx: Ctx, session: Obj, payment_status: str) -> None:
    """Mark the session complete and announce it (`checkout.session.completed`)."""
    hidden = ctx.store.hidden_of(session["id"])
    buyer = hidden.get("buyer") or {"email": DEFAULT_EMAIL, "name": None, "phone": None}
    pm = ctx.coll("payment_method").find(hidden.get("payment_method", ""))
    country = (pm or {}).get("card", {}).get("country") if pm else None
    session["status"] = "complete"
    session["payment_status"] = payment_status
    session["customer_details"] = {
        "address": {
            "city": None,
            "country": country or "US",
            "line1": None,
            "line2": None,
            "postal_code": None,
            "state": None,
        },
        "business_name": None,
        "email": buyer["email"],
        "individual_name": None,
        "name": buyer["name"],
        "phone": buyer["phone"],
        "tax_exempt": "none",
        "tax_ids": [],
    }
    session["collected_information"] = {
        "business_name": None,
        "individual_name": None,
        "shipping_details": None,
    }
    session["url"] = None
    ctx.emit("checkout.session.completed", session)


def _require_open(session: Obj) -> None:
    if session["status"] != "open":
        raise invalid_request(
            f"This Checkout Session is no longer open: its status is `{session['status']}`."
        )


def complete_session(
    ctx: Ctx, session: Obj, given: dict[str, Any], *, return_url: str | None = None
) -> Obj:
    """Pay `session` with `given["payment_method"]` as a customer would (the control, the page).

    A decline raises the intent's 402 and leaves the session open; a 3-D Secure card leaves it
    open with its intent in `requires_action` until the intent is authenticated.
    """
    _expire_if_due(ctx, session)
    _require_open(session)
    ref = given.get("payment_method", "pm_card_visa")
    if not isinstance(ref, str) or not ref:
        raise invalid_request("payment_method must be a payment method id or test token.")
    hidden = ctx.store.hidden_of(session["id"])
    customer = ctx.coll("customer").find(session["customer"] or "")
    hidden["buyer"] = buyer = _buyer(session, customer, given)
    pm = resolve_payment_method(ctx, ref)
    hidden["payment_method"] = pm["id"]
    mode = session["mode"]
    options = hidden.get("params", {})
    if mode == "payment":
        data = options.get("payment_intent_data") or {}
        _pay(ctx, session, pm, buyer, data, return_url)
        return session
    card = card_of(ctx, pm)
    if card.decline_code is not None:
        raise card_error(card)
    if customer is None and (mode == "subscription" or session["customer_creation"] == "always"):
        customer = _new_customer(ctx, buyer)
        session["customer"] = customer["id"]
    if customer is not None:
        from emulator.resources.payment_methods import attach_payment_method

        attach_payment_method(ctx, pm, customer["id"])
    if mode == "subscription":
        assert customer is not None
        _subscribe(ctx, session, customer, pm, options.get("subscription_data") or {})
    else:
        from emulator.resources.setup_intents import create_succeeded_setup_intent

        data = options.get("setup_intent_data") or {}
        seti = create_succeeded_setup_intent(
            ctx,
            customer=customer["id"] if customer else None,
            payment_method=pm,
            description=data.get("description"),
            metadata=data.get("metadata") or {},
        )
        session["setup_intent"] = seti["id"]
        _finish(ctx, session, "no_payment_required")
    return session


def _subscribe(ctx: Ctx, session: Obj, customer: Obj, pm: Obj, data: dict[str, Any]) -> None:
    from emulator.resources.subscriptions import create_subscription

    recurring = [
        (item["price"], int(item["quantity"]))
        for item in _line_items_of(ctx.emu, session)
        if item["price"]["type"] == "recurring"
    ]
    sub = create_subscription(
        ctx,
        customer=customer["id"],
        items=recurring,
        default_payment_method=pm["id"],
        trial_period_days=data.get("trial_period_days"),
        metadata=data.get("metadata") or {},
        description=data.get("description"),
    )
    session["subscription"] = sub["id"]
    session["invoice"] = sub["latest_invoice"]
    invoice = ctx.coll("invoice").find(sub["latest_invoice"] or "")
    if invoice is not None and invoice["amount_due"] and invoice["status"] != "paid":
        status = "unpaid"  # a card that needs 3-D Secure: the first invoice awaits it
    else:
        status = "paid" if session["amount_total"] else "no_payment_required"
    _finish(ctx, session, status)


# The PaymentIntent parameters `payment_intent_data` passes through unchanged.
_INTENT_FIELDS = (
    "application_fee_amount",
    "capture_method",
    "description",
    "on_behalf_of",
    "receipt_email",
    "setup_future_usage",
    "shipping",
    "statement_descriptor_suffix",
    "transfer_data",
    "transfer_group",
)


def _pay(
    ctx: Ctx,
    session: Obj,
    pm: Obj,
    buyer: dict[str, Any],
    data: dict[str, Any],
    return_url: str | None,
) -> None:
    from emulator.resources.payment_intents import confirm_payment_intent, create_payment_intent

    if not session["amount_total"]:
        _finish(ctx, session, "no_payment_required")
        return
    customer_id = session["customer"]
    if customer_id is None and session["customer_creation"] == "always":
        customer_id = session["customer"] = _new_customer(ctx, buyer)["id"]
    pi = ctx.coll("payment_intent").find(session["payment_intent"] or "")
    if pi is None:
        params: dict[str, Any] = {
            "amount": session["amount_total"],
            "currency": session["currency"],
            "metadata": dict(data.get("metadata") or {}),
            "payment_method_types": ["card"],
        }
        if customer_id is not None:
            params["customer"] = customer_id
        for field in _INTENT_FIELDS:
            if field in data:
                params[field] = data[field]
        if "statement_descriptor" in data:
            params["statement_descriptor_suffix"] = data["statement_descriptor"]
        pi = create_payment_intent(ctx, params)
        ctx.store.hidden_of(pi["id"])["checkout_session"] = session["id"]
        session["payment_intent"] = pi["id"]
    confirm: dict[str, Any] = {"payment_method": pm["id"]}
    if return_url:
        confirm["return_url"] = return_url
    confirm_payment_intent(ctx, pi, confirm)


@listener
def follow_payment_intent(ctx: Ctx, event: Obj) -> None:
    """Keep a payment-mode session in step with its intent (see the module docstring)."""
    type_ = event["type"]
    if not type_.startswith("payment_intent."):
        return
    pi = event["data"]["object"]
    session_id = ctx.store.hidden.get(pi["id"], {}).get("checkout_session")
    session = ctx.coll("checkout.session").find(session_id or "")
    if session is None:
        return
    hidden = ctx.store.hidden_of(session["id"])
    if session["status"] == "open":
        if type_ == "payment_intent.succeeded":
            _finish(ctx, session, "paid")
        elif type_ == "payment_intent.amount_capturable_updated":
            _finish(ctx, session, "unpaid")
        elif type_ == "payment_intent.processing":
            hidden["awaiting_settlement"] = True
            _finish(ctx, session, "unpaid")
    elif session["status"] == "complete" and hidden.get("awaiting_settlement"):
        if type_ == "payment_intent.succeeded":
            hidden["awaiting_settlement"] = False
            session["payment_status"] = "paid"
            ctx.emit(
                "checkout.session.async_payment_succeeded", session, {"payment_status": "unpaid"}
            )
        elif type_ == "payment_intent.payment_failed":
            hidden["awaiting_settlement"] = False
            ctx.emit("checkout.session.async_payment_failed", session)


@router.route("POST", "/_emulator/checkout/sessions/{session}/complete", body="json")
def complete(ctx: Ctx, params: dict[str, Any]) -> dict[str, Any]:
    """Pay the session as a customer would. Body: `payment_method` (a `pm_card_*` test token or
    a `pm_…` id; default `pm_card_visa`), optional `email`, `name`, `phone`."""
    session = ctx.coll("checkout.session").get(ctx.path["session"], param="session")
    for field in ("email", "name", "phone"):
        if field in params and not isinstance(params[field], str):
            raise invalid_request(f"{field} must be a string.", param=field)
    return complete_session(ctx, session, params)


# ---------------------------------------------------------------------------------------------
# The hosted page


def _product_names(ctx: Ctx, items: list[Obj]) -> dict[str, str]:
    names = {}
    for item in items:
        product = ctx.coll("product").find(item["price"]["product"])
        if product is not None:
            names[product["id"]] = product["name"]
    return names


def _page(ctx: Ctx, session: Obj, status: int = 200, **kwargs: Any) -> Response:
    items = _line_items_of(ctx.emu, session)
    body = hosted.checkout_page(session, items, _product_names(ctx, items), **kwargs)
    return Response(status, body, headers={"Cache-Control": "no-store"})


def _closed_page(session: Obj) -> Response:
    if session["status"] == "complete":
        link = (session["success_url"], "Continue") if session["success_url"] else None
        body = hosted.message_page(
            "Payment complete", "This checkout session is already complete.", link
        )
    else:
        body = hosted.message_page(
            "Session expired", "This checkout session has expired. Please start again."
        )
    return Response(200, body)


def _hosted_session(ctx: Ctx) -> Obj | Response:
    session = ctx.coll("checkout.session").find(ctx.path["session"])
    if session is None:
        body = hosted.message_page("Not found", "There is no checkout session at this address.")
        return Response(404, body)
    _expire_if_due(ctx, session)
    return session if session["status"] == "open" else _closed_page(session)


@router.route("GET", "/checkout/pay/{session}")
def page(ctx: Ctx, params: dict[str, Any]) -> Response:
    """The page; also where 3-D Secure returns (`?payment_intent=…&redirect_status=…`)."""
    session = ctx.coll("checkout.session").find(ctx.path["session"])
    returning = "redirect_status" in params
    if session is not None and returning and session["status"] == "complete":
        return _success(session)
    found = _hosted_session(ctx)
    if isinstance(found, Response):
        return found
    if returning and params.get("redirect_status") == "failed":
        pi = ctx.coll("payment_intent").find(found["payment_intent"] or "")
        error = ((pi or {}).get("last_payment_error") or {}).get("message")
        return _page(ctx, found, 402, error=error or "Authentication failed.")
    return _page(ctx, found)


def _success(session: Obj) -> Response:
    if not session["success_url"]:
        return Response(200, hosted.message_page("Thank you", "Your checkout session is complete."))
    location = session["success_url"].replace("{CHECKOUT_SESSION_ID}", session["id"])
    return Response(303, b"", headers={"Location": location})


@router.route("POST", "/checkout/pay/{session}", body="form")
def pay(ctx: Ctx, params: dict[str, Any]) -> Response:
    found = _hosted_session(ctx)
    if isinstance(found, Response):
        return found
    session = found
    choice = params.get("payment_method")
    ref = choice if isinstance(choice, str) and choice else "pm_card_visa"
    try:
        complete_session(ctx, session, {"payment_method": ref}, return_url=session["url"])
    except StripeError as exc:
        return _page(ctx, session, exc.status, error=exc.message, selected=ref)
    if session["status"] == "complete":
        return _success(session)
    pi = ctx.coll("payment_intent").find(session["payment_intent"] or "")
    redirect = ((pi or {}).get("next_action") or {}).get("redirect_to_url") or {}
    if redirect.get("url"):
        return Response(303, b"", headers={"Location": redirect["url"]})
    return _page(ctx, session, error="The payment could not be completed.", selected=ref)
