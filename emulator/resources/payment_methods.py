"""Payment methods: `/v1/payment_methods` create, retrieve, update, attach, detach and list, and
a customer's own `/v1/customers/{customer}/payment_methods`.

Only card payment methods exist: made from Stripe's test tokens (`pm_card_visa`), test card
numbers or legacy card tokens (`tok_visa`). Also exports what other resources call:
`attach_payment_method` and `customer_exists`.
"""

from __future__ import annotations

import re
from typing import Any

from stripe.params import (
    CustomerPaymentMethodListParams,
    CustomerPaymentMethodRetrieveParams,
    PaymentMethodAttachParams,
    PaymentMethodCreateParams,
    PaymentMethodDetachParams,
    PaymentMethodListParams,
    PaymentMethodRetrieveParams,
    PaymentMethodUpdateParams,
)

from emulator import cards
from emulator.context import Ctx, Emulator, seeder
from emulator.errors import StripeError, invalid_request, not_found
from emulator.metadata import checked, merged
from emulator.objects import blank
from emulator.routing import router
from emulator.store import Collection, paginate

# Hidden flag of a payment method that may never be attached again (it was detached).
UNUSABLE = "unusable"

ADDRESS_FIELDS = ("city", "country", "line1", "line2", "postal_code", "state")


def customer_exists(ctx: Ctx, customer_id: str, param: str = "customer") -> dict[str, Any]:
    """The stored customer, or Stripe's 404 naming `param` (a deleted customer is missing too)."""
    customer = ctx.coll("customer").find(customer_id)
    if customer is None:
        raise not_found("customer", customer_id, param=param)
    return customer


def attach_payment_method(ctx: Ctx, pm: dict[str, Any], customer_id: str) -> dict[str, Any]:
    """Attach `pm` to the customer and emit `payment_method.attached` (404 for no customer)."""
    customer_exists(ctx, customer_id)
    if pm.get("customer") == customer_id:
        return pm
    pm["customer"] = customer_id
    attached = ctx.store.hidden_of(customer_id).setdefault("payment_methods", [])
    attached.append(pm["id"])
    ctx.emit("payment_method.attached", pm)
    return pm


def address(given: Any) -> dict[str, Any] | None:
    """An address hash in Stripe's shape (every key present) from address params; `""` is none."""
    if given in (None, ""):
        return None
    return {key: given.get(key) for key in ADDRESS_FIELDS}


def _empty_to_none(value: Any) -> Any:
    return None if value == "" else value


def _billing_details(given: dict[str, Any], current: dict[str, Any] | None) -> dict[str, Any]:
    details = dict(current or {"address": None, "email": None, "name": None, "phone": None})
    details.setdefault("tax_id", None)
    for key in ("email", "name", "phone", "tax_id"):
        if key in given:
            details[key] = _empty_to_none(given[key])
    if "address" in given:
        new = given["address"]
        if new == "":
            details["address"] = None
        else:
            details["address"] = {
                **dict.fromkeys(ADDRESS_FIELDS),
                **(details["address"] or {}),
                **new,
            }
    return details


# ---------------------------------------------------------------------------------------------
# Card numbers given at creation


def _luhn_ok(number: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(number)):
        digit = int(ch)
        if i % 2 == 1:
            digit *= 2
            if digit > 9:
                digit -= 9
        total += digit
    return total % 10 == 0


def _card_error(message: str, code: str, param: str, **extra: Any) -> StripeError:
    return StripeError(402, "card_error", message, code=code, param=param, **extra)


def _missing(param: str) -> StripeError:
    return invalid_request(
        f"Missing required param: {param}.", param=param, code="parameter_missing"
    )


def _card_from_number(ctx: Ctx, given: dict[str, Any]) -> tuple[cards.TestCard, dict[str, Any]]:
    """The test card a `card[number]` names, and the card hash fields the request sets."""
    number = re.sub(r"[\s-]", "", given["number"])
    if not number.isdigit() or not 12 <= len(number) <= 19 or not _luhn_ok(number):
        raise _card_error("Your card number is incorrect.", "incorrect_number", "card[number]")
    card = cards.BY_NUMBER.get(number)
    if card is None:
        raise _card_error(
            "Your card was declined. Your request was in test mode, but used a non test (live) "
            "card. For a list of valid test cards, visit: https://stripe.com/docs/testing.",
            "card_declined",
            "card[number]",
            decline_code="test_mode_live_card",
        )
    for field in ("exp_month", "exp_year"):
        if field not in given:
            raise _missing(f"card[{field}]")
    month, year = _checked_expiry(ctx, given["exp_month"], given["exp_year"])
    cvc = given.get("cvc")
    if cvc is not None and not (cvc.isdigit() and len(cvc) in (3, 4)):
        raise _card_error("Your card's security code is invalid.", "invalid_cvc", "card[cvc]")
    fields: dict[str, Any] = {"exp_month": month, "exp_year": year}
    fields["checks"] = {
        "address_line1_check": None,
        "address_postal_code_check": None,
        "cvc_check": "unchecked" if cvc else None,
    }
    return card, fields


def _year_month(timestamp: int) -> tuple[int, int]:
    import datetime

    at = datetime.datetime.fromtimestamp(timestamp, tz=datetime.UTC)
    return at.year, at.month


def _card_for_create(ctx: Ctx, params: dict[str, Any]) -> tuple[cards.TestCard, dict[str, Any]]:
    given = params.get("card")
    if not given:
        raise _missing("card")
    token = given.get("token")
    if token is not None:
        if "number" in given:
            raise invalid_request(
                "You cannot pass both card[token] and card[number]; pass only one.",
                param="card[token]",
            )
        card = cards.BY_LEGACY_TOKEN.get(token)
        if card is None:
            raise not_found("token", token, param="card[token]")
        return card, {}
    if "number" not in given:
        raise _missing("card[number]")
    return _card_from_number(ctx, given)


# ---------------------------------------------------------------------------------------------
# Routes


@router.route("POST", "/v1/payment_methods", PaymentMethodCreateParams)
def create(ctx: Ctx, params: dict[str, Any]) -> dict[str, Any]:
    if "payment_method" in params or "customer" in params:
        param = "payment_method" if "payment_method" in params else "customer"
        raise invalid_request(
            "Cloning a PaymentMethod (`payment_method` with `customer`) is only possible for a "
            "connected account, with the Stripe-Account header; the emulator has no connected "
            "accounts.",
            param=param,
        )
    type_ = params.get("type")
    if type_ is None:
        raise _missing("type")
    if type_ != "card":
        raise invalid_request(
            f"The emulator models only card payment methods; type '{type_}' is not available.",
            param="type",
        )
    card, fields = _card_for_create(ctx, params)
    metadata = checked(params.get("metadata"))
    pm = cards.create_card_payment_method(ctx, card, metadata=metadata)
    pm["card"].update(fields)
    if "networks" in params["card"]:
        pm["card"]["networks"]["preferred"] = params["card"]["networks"].get("preferred")
    pm["billing_details"] = _billing_details(params.get("billing_details") or {}, None)
    if "allow_redisplay" in params:
        pm["allow_redisplay"] = params["allow_redisplay"]
    return pm


def _find(ctx: Ctx, ref: str) -> dict[str, Any]:
    """A payment method by id; a `pm_card_*` test token makes a new one, as Stripe does."""
    card = cards.BY_TOKEN.get(ref)
    if card is not None:
        return cards.create_card_payment_method(ctx, card)
    pm = ctx.coll("payment_method").find(ref)
    if pm is None:
        raise not_found("PaymentMethod", ref, param="payment_method")
    return pm


@router.route("GET", "/v1/payment_methods/{payment_method}", PaymentMethodRetrieveParams)
def retrieve(ctx: Ctx, params: dict[str, Any]) -> dict[str, Any]:
    return _find(ctx, ctx.path["payment_method"])


@router.route("POST", "/v1/payment_methods/{payment_method}", PaymentMethodUpdateParams)
def update(ctx: Ctx, params: dict[str, Any]) -> dict[str, Any]:
    pm = _find(ctx, ctx.path["payment_method"])
    if pm["customer"] is None:
        raise invalid_request(
            "You must save this PaymentMethod to a customer before you can update it."
        )
    before = {
        "allow_redisplay": pm["allow_redisplay"],
        "billing_details": _copy(pm["billing_details"]),
        "card": _copy(pm["card"]),
        "metadata": dict(pm["metadata"]),
    }
    if "metadata" in params:
        pm["metadata"] = merged(pm["metadata"], params["metadata"])
    if "billing_details" in params:
        pm["billing_details"] = _billing_details(params["billing_details"], pm["billing_details"])
    if "allow_redisplay" in params:
        pm["allow_redisplay"] = params["allow_redisplay"]
    card_params = params.get("card")
    if card_params:
        _update_card(ctx, pm["card"], card_params)
    previous = changes(before, pm)
    if previous:
        ctx.emit("payment_method.updated", pm, previous)
    return pm


def _checked_expiry(ctx: Ctx, month: int, year: int) -> tuple[int, int]:
    """A card's expiry as Stripe checks it (two-digit years allowed), or its 402."""
    if 0 <= year < 100:
        year += 2000
    this_year, this_month = _year_month(ctx.now())
    if not 1 <= month <= 12 or (year == this_year and month < this_month):
        raise _card_error(
            "Your card's expiration month is invalid.", "invalid_expiry_month", "card[exp_month]"
        )
    if year < this_year or year > this_year + 50:
        raise _card_error(
            "Your card's expiration year is invalid.", "invalid_expiry_year", "card[exp_year]"
        )
    return month, year


def _update_card(ctx: Ctx, card: dict[str, Any], given: dict[str, Any]) -> None:
    month, year = _checked_expiry(
        ctx, given.get("exp_month", card["exp_month"]), given.get("exp_year", card["exp_year"])
    )
    card["exp_month"], card["exp_year"] = month, year
    if "networks" in given:
        preferred = given["networks"].get("preferred")
        card["networks"]["preferred"] = None if preferred == "" else preferred


def _copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


def changes(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """Stripe's `previous_attributes`: the old value of each changed field (nested hashes by key,
    null for a key that did not exist)."""
    previous: dict[str, Any] = {}
    for key in before.keys() | after.keys():
        old, new = before.get(key), after.get(key)
        if old == new:
            continue
        if isinstance(old, dict) and isinstance(new, dict):
            previous[key] = changes(old, new)
        else:
            previous[key] = old
    return previous


@router.route("POST", "/v1/payment_methods/{payment_method}/attach", PaymentMethodAttachParams)
def attach(ctx: Ctx, params: dict[str, Any]) -> dict[str, Any]:
    if "customer_account" in params:
        raise invalid_request(
            "The emulator has no Accounts v2; attach to a `customer` instead.",
            param="customer_account",
        )
    customer_id = params.get("customer")
    if customer_id is None:
        raise _missing("customer")
    ref = ctx.path["payment_method"]
    if ref in cards.BY_TOKEN:
        customer_exists(ctx, customer_id)
    pm = _find(ctx, ref)
    customer_exists(ctx, customer_id)
    return attach_checked(ctx, pm, customer_id)


def attach_checked(ctx: Ctx, pm: dict[str, Any], customer_id: str) -> dict[str, Any]:
    """Attach as the attach call does: refused if attached elsewhere, detached, or declined."""
    if pm["customer"] == customer_id:
        return pm
    if pm["customer"] is not None:
        raise invalid_request(
            "The payment method you provided has already been attached to a customer."
        )
    if ctx.store.hidden_of(pm["id"]).get(UNUSABLE):
        raise invalid_request(
            "This PaymentMethod was previously used without being attached to a Customer or was "
            "detached from a Customer, and may not be used again.",
            param="payment_method",
        )
    card = cards.card_of(ctx, pm)
    if card.refused_on_attach:
        raise cards.card_error(card)
    return attach_payment_method(ctx, pm, customer_id)


@router.route("POST", "/v1/payment_methods/{payment_method}/detach", PaymentMethodDetachParams)
def detach(ctx: Ctx, params: dict[str, Any]) -> dict[str, Any]:
    pm = _find(ctx, ctx.path["payment_method"])
    customer_id = pm["customer"]
    if customer_id is None:
        raise invalid_request(
            "The payment method you provided is not attached to a customer so detachment is "
            "impossible."
        )
    pm["customer"] = None
    ctx.store.hidden_of(pm["id"])[UNUSABLE] = True
    ctx.emit("payment_method.detached", pm, {"customer": customer_id})
    customer = ctx.coll("customer").find(customer_id)
    if customer is None:
        return pm
    attached = ctx.store.hidden_of(customer_id).get("payment_methods")
    if attached and pm["id"] in attached:
        attached.remove(pm["id"])
    settings = customer["invoice_settings"]
    if settings["default_payment_method"] == pm["id"]:
        settings["default_payment_method"] = None
        previous = {"invoice_settings": {"default_payment_method": pm["id"]}}
        ctx.emit("customer.updated", customer, previous)
    return pm


def _filter(params: dict[str, Any], customer_id: str | None) -> Any:
    type_ = params.get("type")
    redisplay = params.get("allow_redisplay")

    def where(pm: dict[str, Any]) -> bool:
        return (
            (customer_id is None or pm["customer"] == customer_id)
            and (type_ is None or pm["type"] == type_)
            and (redisplay is None or pm["allow_redisplay"] == redisplay)
        )

    return where


@router.route("GET", "/v1/payment_methods", PaymentMethodListParams)
def list_(ctx: Ctx, params: dict[str, Any]) -> dict[str, Any]:
    if "customer_account" in params:
        raise invalid_request(
            "The emulator has no Accounts v2; list by `customer` instead.",
            param="customer_account",
        )
    customer_id = params.get("customer")
    if customer_id is not None:
        customer_exists(ctx, customer_id)
        return _customer_page(ctx, customer_id, params, "/v1/payment_methods")
    return paginate(
        ctx.coll("payment_method"), params, "/v1/payment_methods", _filter(params, None)
    )


def _customer_page(ctx: Ctx, customer_id: str, params: dict[str, Any], url: str) -> dict[str, Any]:
    """A page of one customer's payment methods, from its own index (no scan of all of them)."""
    coll = ctx.coll("payment_method")
    own = Collection("payment_method")
    ids = ctx.store.hidden_of(customer_id).get("payment_methods") or []
    for pm_id in sorted(ids, key=lambda i: coll.position.get(i, -1)):
        pm = coll.find(pm_id)
        if pm is not None and pm["customer"] == customer_id:
            own.add(pm)
    for param in ("starting_after", "ending_before"):
        cursor = params.get(param)
        if cursor is not None and own.find(cursor) is None:
            raise invalid_request(
                f"No such PaymentMethod: '{cursor}'", param=param, code="resource_missing"
            )
    return paginate(own, params, url, _filter(params, customer_id))


@router.route("GET", "/v1/customers/{customer}/payment_methods", CustomerPaymentMethodListParams)
def customer_list(ctx: Ctx, params: dict[str, Any]) -> dict[str, Any]:
    customer_id = ctx.path["customer"]
    customer_exists(ctx, customer_id)
    url = f"/v1/customers/{customer_id}/payment_methods"
    return _customer_page(ctx, customer_id, params, url)


@router.route(
    "GET",
    "/v1/customers/{customer}/payment_methods/{payment_method}",
    CustomerPaymentMethodRetrieveParams,
)
def customer_retrieve(ctx: Ctx, params: dict[str, Any]) -> dict[str, Any]:
    customer_id = ctx.path["customer"]
    customer_exists(ctx, customer_id)
    pm_id = ctx.path["payment_method"]
    pm = ctx.coll("payment_method").find(pm_id)
    if pm is None or pm["customer"] != customer_id:
        raise not_found("PaymentMethod", pm_id, param="payment_method")
    return pm


# ---------------------------------------------------------------------------------------------
# Demo data


@seeder
def seed_payment_method(emu: Emulator) -> None:
    """`pm_123`: an unattached Visa card, so the seed's attach snippet runs unchanged."""
    card = cards.card_by_name("visa")
    pm = blank(
        "payment_method",
        id="pm_123",
        allow_redisplay="unspecified",
        billing_details={
            "address": None,
            "email": None,
            "name": None,
            "phone": None,
            "tax_id": None,
        },
        card=cards.card_details(card, emu.now()),
        created=emu.now(),
        customer=None,
        type="card",
    )
    emu.coll("payment_method").add(pm)
    emu.store.hidden_of(pm["id"])["card"] = card.name
