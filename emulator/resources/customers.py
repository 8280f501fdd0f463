"""Customers: `/v1/customers` create, retrieve, update, list, delete and search; the demo `cus_123`.

A deleted customer leaves the store; retrieving it answers Stripe's `{"deleted": true}` stub.
Fields Stripe shows only when expanded (`tax`, `sources`, `subscriptions`, ...) are includables.
"""

from __future__ import annotations

import re
import secrets
import string
from typing import Any

from stripe.params import (
    CustomerCreateParams,
    CustomerDeleteParams,
    CustomerListParams,
    CustomerRetrieveParams,
    CustomerSearchParams,
    CustomerUpdateParams,
)

from emulator import cards, search
from emulator.context import Ctx, Emulator, includable, seeder
from emulator.errors import invalid_request, not_found
from emulator.ids import new_id
from emulator.metadata import checked, merged
from emulator.objects import blank
from emulator.resources.payment_methods import (
    address,
    attach_checked,
    changes,
    customer_exists,
)
from emulator.routing import router
from emulator.store import paginate

# Shown only when expanded, as Stripe does.
INCLUDABLE = (
    "cash_balance",
    "invoice_credit_balance",
    "sources",
    "subscriptions",
    "tax",
    "tax_ids",
)
DELETED = "deleted"

_EMAIL = re.compile(r"^[^@\s]+@[^@\s.]+(\.[^@\s.]+)*\.[A-Za-z]{2,}$")
_INVOICE_PREFIX = re.compile(r"^[A-Z0-9]{3,12}$")
_PREFIX_ALPHABET = string.ascii_uppercase + string.digits


def _invoice_prefix() -> str:
    return "".join(secrets.choice(_PREFIX_ALPHABET) for _ in range(8))


def new_customer(customer_id: str, created: int) -> dict[str, Any]:
    """A customer with Stripe's defaults and nothing set."""
    customer = blank(
        "customer",
        id=customer_id,
        balance=0,
        created=created,
        delinquent=False,
        invoice_prefix=_invoice_prefix(),
        invoice_settings={
            "custom_fields": None,
            "default_payment_method": None,
            "footer": None,
            "rendering_options": None,
        },
        next_invoice_sequence=1,
        preferred_locales=[],
        tax_exempt="none",
    )
    for field in INCLUDABLE:
        customer.pop(field, None)
    return customer


def _text(value: Any) -> Any:
    return None if value == "" else value


def _check_email(email: Any) -> None:
    if email not in (None, "") and not _EMAIL.match(email):
        raise invalid_request(
            f"Invalid email address: {email}", param="email", code="email_invalid"
        )


def _shipping(given: Any) -> dict[str, Any] | None:
    if given in (None, ""):
        return None
    return {
        "address": address(given["address"]) or address({}),
        "carrier": None,
        "name": given["name"],
        "phone": given.get("phone"),
        "tracking_number": None,
    }


def _apply(ctx: Ctx, customer: dict[str, Any], params: dict[str, Any]) -> None:
    """Set the fields that create and update share (values checked first, then written)."""
    _check_email(params.get("email"))
    prefix = params.get("invoice_prefix")
    if prefix is not None and not _INVOICE_PREFIX.match(prefix):
        raise invalid_request(
            "Invoice prefix must be between 3 and 12 characters long and contain only uppercase "
            "letters and numbers.",
            param="invoice_prefix",
        )
    for field in ("email", "name", "phone", "description"):
        if field in params:
            customer[field] = _text(params[field])
    for field in ("business_name", "individual_name"):
        if field in params:
            customer[field] = _text(params[field])
    for field in ("balance", "next_invoice_sequence", "preferred_locales", "invoice_prefix"):
        if field in params:
            customer[field] = params[field]
    if "tax_exempt" in params:
        customer["tax_exempt"] = params["tax_exempt"] or "none"
    if "address" in params:
        customer["address"] = address(params["address"])
    if "shipping" in params:
        customer["shipping"] = _shipping(params["shipping"])
    settings = params.get("invoice_settings")
    if settings:
        current = dict(customer["invoice_settings"])
        if "custom_fields" in settings:
            fields = settings["custom_fields"]
            current["custom_fields"] = [
                {"name": f["name"], "value": f["value"]} for f in fields or []
            ] or None
        if "footer" in settings:
            current["footer"] = _text(settings["footer"])
        if "rendering_options" in settings:
            options = settings["rendering_options"]
            current["rendering_options"] = (
                None
                if options == ""
                else {
                    "amount_tax_display": _text(options.get("amount_tax_display")),
                    "template": options.get("template"),
                }
            )
        if "default_payment_method" in settings:
            current["default_payment_method"] = _default_payment_method(
                ctx, customer["id"], settings["default_payment_method"]
            )
        customer["invoice_settings"] = current


def _default_payment_method(ctx: Ctx, customer_id: str, ref: str) -> str | None:
    if ref == "":
        return None
    pm = ctx.coll("payment_method").find(ref)
    if pm is None or pm["customer"] != customer_id:
        raise invalid_request(
            f"The customer does not have a payment method with the ID {ref}. The payment method "
            "must be attached to the customer.",
            param="invoice_settings[default_payment_method]",
            code="resource_missing",
        )
    return ref


def _refuse_sources(params: dict[str, Any]) -> None:
    for param in ("source", "default_source"):
        if param in params:
            raise invalid_request(
                "The emulator does not model the legacy Sources API; use `payment_method` and "
                "the PaymentMethods API instead.",
                param=param,
            )


@router.route("POST", "/v1/customers", CustomerCreateParams)
def create(ctx: Ctx, params: dict[str, Any]) -> dict[str, Any]:
    _refuse_sources(params)
    _check_email(params.get("email"))
    clock = None
    if params.get("test_clock"):
        clock = ctx.coll("test_helpers.test_clock").find(params["test_clock"])
        if clock is None:
            raise not_found("test_clock", params["test_clock"], param="test_clock")
        ctx = ctx.at_time(clock["frozen_time"])  # the customer lives on the clock's time
    customer = new_customer(new_id("cus", 14), ctx.now())
    customer["test_clock"] = clock["id"] if clock else None
    metadata = checked(params.get("metadata"))
    pm = None
    ref = params.get("payment_method")
    if ref is not None:
        pm = cards.resolve_payment_method(ctx, ref, param="payment_method")
        _check_attachable(ctx, pm)
    settings = params.get("invoice_settings") or {}
    default = settings.get("default_payment_method")
    if default not in (None, ""):
        if pm is None or default not in (ref, pm["id"]):
            raise invalid_request(
                f"The customer does not have a payment method with the ID {default}. The "
                "payment method must be attached to the customer.",
                param="invoice_settings[default_payment_method]",
                code="resource_missing",
            )
        params = {**params, "invoice_settings": dict(settings)}
        del params["invoice_settings"]["default_payment_method"]
    _apply(ctx, customer, params)
    customer["metadata"] = metadata
    if pm is not None and default not in (None, ""):
        customer["invoice_settings"]["default_payment_method"] = pm["id"]
    ctx.coll("customer").add(customer)
    ctx.emit("customer.created", customer)
    if pm is not None:
        attach_checked(ctx, pm, customer["id"])
    return customer


def _check_attachable(ctx: Ctx, pm: dict[str, Any]) -> None:
    """The refusals attach would raise, checked before the customer exists."""
    if pm["customer"] is not None:
        raise invalid_request(
            "The payment method you provided has already been attached to a customer."
        )
    card = cards.card_of(ctx, pm)
    if card.refused_on_attach:
        raise cards.card_error(card)


@router.route("GET", "/v1/customers/{customer}", CustomerRetrieveParams)
def retrieve(ctx: Ctx, params: dict[str, Any]) -> dict[str, Any]:
    customer_id = ctx.path["customer"]
    customer = ctx.coll("customer").find(customer_id)
    if customer is not None:
        return customer
    hidden = ctx.store.hidden.get(customer_id)
    if hidden and hidden.get(DELETED):
        return {"id": customer_id, "object": "customer", "deleted": True}
    raise not_found("customer", customer_id, param="id")


@router.route("POST", "/v1/customers/{customer}", CustomerUpdateParams)
def update(ctx: Ctx, params: dict[str, Any]) -> dict[str, Any]:
    _refuse_sources(params)
    customer = customer_exists(ctx, ctx.path["customer"], param="id")
    # Everything is checked on a copy, so a refused update changes nothing.
    updated = {
        **customer,
        "invoice_settings": dict(customer["invoice_settings"]),
    }
    _apply(ctx, updated, params)
    if "metadata" in params:
        updated["metadata"] = merged(customer["metadata"], params["metadata"])
    previous = changes(customer, updated)
    customer.update(updated)
    if previous:
        ctx.emit("customer.updated", customer, previous)
    return customer


@router.route("GET", "/v1/customers", CustomerListParams)
def list_(ctx: Ctx, params: dict[str, Any]) -> dict[str, Any]:
    email = params.get("email")
    clock = params.get("test_clock")
    where = None
    if email is not None or clock is not None:

        def where(customer: dict[str, Any]) -> bool:
            return (email is None or customer["email"] == email) and (
                clock is None or customer["test_clock"] == clock
            )

    return paginate(ctx.coll("customer"), params, "/v1/customers", where)


@router.route("DELETE", "/v1/customers/{customer}", CustomerDeleteParams)
def delete(ctx: Ctx, params: dict[str, Any]) -> dict[str, Any]:
    customer = customer_exists(ctx, ctx.path["customer"], param="id")
    customer_id = customer["id"]
    hidden = ctx.store.hidden_of(customer_id)
    payment_methods = ctx.coll("payment_method")
    for pm_id in hidden.pop("payment_methods", None) or ():
        pm = payment_methods.find(pm_id)
        if pm is not None and pm["customer"] == customer_id:
            pm["customer"] = None
    hidden[DELETED] = True
    ctx.coll("customer").remove(customer_id)
    ctx.emit("customer.deleted", customer)
    return {"id": customer_id, "object": "customer", "deleted": True}


# ---------------------------------------------------------------------------------------------
# Fields shown only when expanded


def _empty_list(url: str) -> dict[str, Any]:
    return {"object": "list", "data": [], "has_more": False, "total_count": 0, "url": url}


@includable("customer", "sources")
def _sources(emu: Emulator, customer: dict[str, Any]) -> Any:
    return _empty_list(f"/v1/customers/{customer['id']}/sources")


@includable("customer", "tax_ids")
def _tax_ids(emu: Emulator, customer: dict[str, Any]) -> Any:
    return _empty_list(f"/v1/customers/{customer['id']}/tax_ids")


@includable("customer", "subscriptions")
def _subscriptions(emu: Emulator, customer: dict[str, Any]) -> Any:
    subscriptions = emu.coll("subscription")
    data = [
        sub
        for sub in subscriptions.newest_first()
        if sub.get("customer") == customer["id"] and sub.get("status") != "canceled"
    ]
    page = _empty_list(f"/v1/customers/{customer['id']}/subscriptions")
    page.update(data=data[:10], has_more=len(data) > 10, total_count=len(data))
    return page


@includable("customer", "tax")
def _tax(emu: Emulator, customer: dict[str, Any]) -> Any:
    return {
        "automatic_tax": "unrecognized_location",
        "ip_address": None,
        "location": None,
        "provider": "stripe",
    }


@includable("customer", "cash_balance")
def _cash_balance(emu: Emulator, customer: dict[str, Any]) -> Any:
    return {
        "object": "cash_balance",
        "available": None,
        "customer": customer["id"],
        "customer_account": None,
        "livemode": False,
        "settings": {"reconciliation_mode": "automatic", "using_merchant_default": True},
    }


@includable("customer", "invoice_credit_balance")
def _invoice_credit_balance(emu: Emulator, customer: dict[str, Any]) -> Any:
    return {}


# ---------------------------------------------------------------------------------------------
# Demo data


@seeder
def seed_customer(emu: Emulator) -> None:
    """`cus_123` (Jane Doe), the customer the seed document's snippets name."""
    customer = new_customer("cus_123", emu.now())
    customer.update(name="Jane Doe", email="user@example.com")
    emu.coll("customer").add(customer)


# ---------------------------------------------------------------------------------------------
# Search (a static route: `/v1/customers/search` is matched before `/v1/customers/{customer}`)


@router.route("GET", "/v1/customers/search", CustomerSearchParams)
def search_(ctx: Ctx, params: dict[str, Any]) -> dict[str, Any]:
    return search.search(ctx.coll("customer"), params, "/v1/customers/search")
