"""Refunds: `/v1/refunds` create (by `payment_intent` or `charge`), retrieve, update, list and
cancel. A refund settles at once (`succeeded`), as Stripe's test cards do; the charge's
`amount_refunded` and `refunded` follow.
"""

from __future__ import annotations

from typing import Any

from stripe.params import (
    RefundCancelParams,
    RefundCreateParams,
    RefundListParams,
    RefundRetrieveParams,
    RefundUpdateParams,
)

from emulator.context import Ctx
from emulator.currencies import format_amount
from emulator.errors import invalid_request, not_found
from emulator.ids import new_id
from emulator.metadata import checked, merged
from emulator.objects import blank
from emulator.routing import router
from emulator.store import paginate


def _target_charge(ctx: Ctx, params: dict[str, Any]) -> dict[str, Any]:
    """The charge a refund is for, from `charge` or from `payment_intent`'s latest charge."""
    charge_id = params.get("charge")
    intent_id = params.get("payment_intent")
    if charge_id is None and intent_id is None:
        raise invalid_request(
            "One of the following params should be provided for this request: payment_intent "
            "or charge."
        )
    pi = None
    if intent_id is not None:
        pi = ctx.coll("payment_intent").find(intent_id)
        if pi is None:
            raise not_found("payment_intent", intent_id, param="payment_intent")
    charge = None
    if charge_id is not None:
        charge = ctx.coll("charge").find(charge_id)
        if charge is None:
            raise not_found("charge", charge_id, param="charge")
        if pi is not None and charge["payment_intent"] != pi["id"]:
            raise invalid_request(
                f"Charge {charge_id} does not belong to PaymentIntent {pi['id']}.",
                param="charge",
            )
        if charge["payment_intent"]:
            pi = ctx.coll("payment_intent").find(charge["payment_intent"])
    if pi is not None:
        latest = ctx.coll("charge").find(pi["latest_charge"]) if pi["latest_charge"] else None
        if pi["status"] != "succeeded" or latest is None:
            raise invalid_request(
                f"This PaymentIntent ({pi['id']}) does not have a successful charge to refund."
            )
        charge = charge or latest
    assert charge is not None
    if charge["status"] != "succeeded" or not charge["captured"]:
        raise invalid_request(
            f"Charge {charge['id']} has not been captured and cannot be refunded."
        )
    return charge


@router.route("POST", "/v1/refunds", RefundCreateParams)
def create(ctx: Ctx, params: dict[str, Any]) -> dict[str, Any]:
    charge = _target_charge(ctx, params)
    left = charge["amount"] - charge["amount_refunded"]
    if left <= 0:
        raise invalid_request(
            f"Charge {charge['id']} has already been refunded.", code="charge_already_refunded"
        )
    amount = params.get("amount", left)
    if amount < 1:
        raise invalid_request("Invalid positive integer", param="amount")
    currency = charge["currency"]
    if amount > left:
        raise invalid_request(
            f"Refund amount ({format_amount(amount, currency)}) is greater than unrefunded "
            f"amount on charge ({format_amount(left, currency)})",
            param="amount",
        )
    if params.get("currency") is not None and params["currency"].lower() != currency:
        raise invalid_request(
            f"The currency of the refund ({params['currency'].lower()}) must match the "
            f"currency of the charge ({currency}).",
            param="currency",
        )
    metadata = checked(params.get("metadata"))
    refund = blank(
        "refund",
        id=new_id("re"),
        amount=amount,
        balance_transaction=new_id("txn"),
        charge=charge["id"],
        created=ctx.now(),
        currency=currency,
        destination_details={
            "card": {
                "reference": None,
                "reference_status": "pending",
                "reference_type": "acquirer_reference_number",
                "type": "refund",
            },
            "type": "card",
        },
        instructions_email=params.get("instructions_email"),
        metadata=metadata,
        payment_intent=charge["payment_intent"],
        payment_method=charge["payment_method"],
        reason=params.get("reason"),
        status="succeeded",
    )
    ctx.coll("refund").add(refund)
    ctx.store.hidden_of(charge["id"]).setdefault("refunds", []).append(refund["id"])
    previous = {"amount_refunded": charge["amount_refunded"], "refunded": charge["refunded"]}
    charge["amount_refunded"] += amount
    if charge["amount_refunded"] >= charge["amount"]:
        charge["refunded"] = True
    else:
        del previous["refunded"]
    ctx.emit("charge.refunded", charge, previous)
    ctx.emit("refund.created", refund)
    return refund


@router.route("GET", "/v1/refunds/{refund}", RefundRetrieveParams)
def retrieve(ctx: Ctx, params: dict[str, Any]) -> dict[str, Any]:
    return ctx.coll("refund").get(ctx.path["refund"])


@router.route("POST", "/v1/refunds/{refund}", RefundUpdateParams)
def update(ctx: Ctx, params: dict[str, Any]) -> dict[str, Any]:
    refund = ctx.coll("refund").get(ctx.path["refund"])
    if "metadata" in params:
        previous = {"metadata": refund["metadata"]}
        refund["metadata"] = merged(refund["metadata"], params["metadata"])
        if refund["metadata"] != previous["metadata"]:
            ctx.emit("refund.updated", refund, previous)
    return refund


@router.route("POST", "/v1/refunds/{refund}/cancel", RefundCancelParams)
def cancel(ctx: Ctx, params: dict[str, Any]) -> dict[str, Any]:
    refund = ctx.coll("refund").get(ctx.path["refund"])
    if refund["status"] != "requires_action":
        raise invalid_request(
            f"Refund {refund['id']} cannot be canceled because it has a status of "
            f"{refund['status']}. Only refunds with a status of requires_action can be "
            "canceled."
        )
    refund["status"] = "canceled"
    ctx.emit("refund.updated", refund, {"status": "requires_action"})
    return refund


@router.route("GET", "/v1/refunds", RefundListParams)
def list_(ctx: Ctx, params: dict[str, Any]) -> dict[str, Any]:
    charge = params.get("charge")
    intent = params.get("payment_intent")

    def where(refund: dict[str, Any]) -> bool:
        return (charge is None or refund["charge"] == charge) and (
            intent is None or refund["payment_intent"] == intent
        )

    filtered = charge is not None or intent is not None
    return paginate(ctx.coll("refund"), params, "/v1/refunds", where if filtered else None)
