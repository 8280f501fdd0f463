"""Charges: made by PaymentIntent confirmations; `/v1/charges` retrieves, lists and searches them.

A charge's `refunds` list is not part of the object in this API version; it appears only when
expanded (`expand[]=refunds`), from the refund ids kept in the charge's hidden state.
"""

from __future__ import annotations

import secrets
from typing import Any

from stripe.params import ChargeListParams, ChargeRetrieveParams, ChargeSearchParams

from emulator import search
from emulator.cards import TestCard
from emulator.context import Ctx, Emulator, includable
from emulator.ids import new_id
from emulator.objects import blank
from emulator.routing import router
from emulator.store import paginate

# The emulated account's statement descriptor (and its shortened prefix for suffixes).
ACCOUNT_DESCRIPTOR = "EMULATOR"
ACCOUNT_PREFIX = "EMU"

SELLER_MESSAGES = {
    "generic_decline": "The bank did not return any further details with this decline.",
}


def statement_descriptor(pi: dict[str, Any]) -> str:
    """What the customer's statement shows: the account's prefix and the intent's suffix."""
    suffix = pi.get("statement_descriptor_suffix")
    if suffix:
        return f"{ACCOUNT_PREFIX}* {suffix}"[:22]
    return str(pi.get("statement_descriptor") or ACCOUNT_DESCRIPTOR)


def _card_details(pm: dict[str, Any], amount: int, *, authenticated: bool) -> dict[str, Any]:
    card = pm.get("card") or {}
    three_d_secure = None
    if authenticated:
        three_d_secure = {
            "authentication_flow": "challenge",
            "electronic_commerce_indicator": "05",
            "exemption_indicator": None,
            "result": "authenticated",
            "result_reason": None,
            "transaction_id": new_id("3ds")[4:],
            "version": "2.2.0",
        }
    return {
        "amount_authorized": amount,
        "authorization_code": None,
        "brand": card.get("brand"),
        "checks": {
            "address_line1_check": None,
            "address_postal_code_check": None,
            "cvc_check": "pass",
        },
        "country": card.get("country"),
        "exp_month": card.get("exp_month"),
        "exp_year": card.get("exp_year"),
        "extended_authorization": {"status": "disabled"},
        "fingerprint": card.get("fingerprint"),
        "funding": card.get("funding"),
        "incremental_authorization": {"status": "unavailable"},
        "installments": None,
        "last4": card.get("last4"),
        "mandate": None,
        "multicapture": {"status": "unavailable"},
        "network": card.get("brand"),
        "network_token": {"used": False},
        "network_transaction_id": secrets.token_hex(8).upper()[:15],
        "overcapture": {"maximum_amount_capturable": amount, "status": "unavailable"},
        "regulated_status": card.get("regulated_status"),
        "three_d_secure": three_d_secure,
        "wallet": None,
    }


def approved_outcome() -> dict[str, Any]:
    return {
        "advice_code": None,
        "network_advice_code": None,
        "network_decline_code": None,
        "network_status": "approved_by_network",
        "reason": None,
        "risk_level": "normal",
        "risk_score": 32,
        "seller_message": "Payment complete.",
        "type": "authorized",
    }


def declined_outcome(decline_code: str) -> dict[str, Any]:
    return {
        "advice_code": "try_again_later" if decline_code == "insufficient_funds" else None,
        "network_advice_code": None,
        "network_decline_code": None,
        "network_status": "declined_by_network",
        "reason": decline_code,
        "risk_level": "normal",
        "risk_score": 32,
        "seller_message": SELLER_MESSAGES.get(
            decline_code, f"The bank returned the decline code `{decline_code}`."
        ),
        "type": "issuer_declined",
    }


def create_charge(
    ctx: Ctx,
    pi: dict[str, Any],
    pm: dict[str, Any],
    card: TestCard,
    *,
    status: str,
    captured: bool,
    authenticated: bool = False,
    failure: tuple[str, str] | None = None,
) -> dict[str, Any]:
    """Store the charge a confirmation makes: `succeeded`, `pending` or `failed`."""
    charge_id = new_id("ch")
    amount = pi["amount"]
    succeeded = status == "succeeded"
    charge = blank(
        "charge",
        id=charge_id,
        amount=amount,
        amount_captured=amount if succeeded and captured else 0,
        amount_refunded=0,
        balance_transaction=new_id("txn") if succeeded and captured else None,
        billing_details=dict(pm.get("billing_details") or {}),
        calculated_statement_descriptor=statement_descriptor(pi),
        captured=captured and status != "failed",
        created=ctx.now(),
        currency=pi["currency"],
        customer=pi.get("customer"),
        description=pi.get("description"),
        disputed=False,
        failure_code=failure[0] if failure else None,
        failure_message=failure[1] if failure else None,
        fraud_details={},
        metadata=dict(pi.get("metadata") or {}),
        outcome=declined_outcome(card.decline_code or "generic_decline")
        if status == "failed"
        else approved_outcome(),
        paid=succeeded,
        payment_intent=pi["id"],
        payment_method=pm["id"],
        payment_method_details={
            "card": _card_details(pm, amount, authenticated=authenticated),
            "type": "card",
        },
        receipt_email=pi.get("receipt_email"),
        receipt_url=f"{ctx.emu.config.base_url}/receipts/payment/{charge_id}",
        refunded=False,
        shipping=pi.get("shipping"),
        statement_descriptor=pi.get("statement_descriptor"),
        statement_descriptor_suffix=pi.get("statement_descriptor_suffix"),
        status=status,
    )
    charge.pop("refunds", None)
    ctx.coll("charge").add(charge)
    return charge


def settle_capture(charge: dict[str, Any], amount: int) -> None:
    """A captured charge's fields once `amount` of it is taken (the rest is released)."""
    charge["captured"] = True
    charge["amount_captured"] = amount
    charge["amount_refunded"] = charge["amount"] - amount
    charge["balance_transaction"] = charge["balance_transaction"] or new_id("txn")


@includable("charge", "refunds")
def _refunds(emu: Emulator, charge: dict[str, Any]) -> dict[str, Any]:
    ids: list[str] = emu.store.hidden_of(charge["id"]).get("refunds", [])
    coll = emu.store.collection("refund")
    data = [r for r in (coll.find(i) for i in reversed(ids)) if r is not None]
    return {
        "object": "list",
        "data": data,
        "has_more": False,
        "url": f"/v1/charges/{charge['id']}/refunds",
    }


@router.route("GET", "/v1/charges/search", ChargeSearchParams)
def search_(ctx: Ctx, params: dict[str, Any]) -> dict[str, Any]:
    return search.search(ctx.coll("charge"), params, "/v1/charges/search")


@router.route("GET", "/v1/charges/{charge}", ChargeRetrieveParams)
def retrieve(ctx: Ctx, params: dict[str, Any]) -> dict[str, Any]:
    return ctx.coll("charge").get(ctx.path["charge"])


@router.route("GET", "/v1/charges", ChargeListParams)
def list_(ctx: Ctx, params: dict[str, Any]) -> dict[str, Any]:
    intent = params.get("payment_intent")
    customer = params.get("customer")

    def where(charge: dict[str, Any]) -> bool:
        return (intent is None or charge["payment_intent"] == intent) and (
            customer is None or charge["customer"] == customer
        )

    filtered = intent is not None or customer is not None
    return paginate(ctx.coll("charge"), params, "/v1/charges", where if filtered else None)
