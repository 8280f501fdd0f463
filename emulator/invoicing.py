"""Invoices as a subscription makes them: built as drafts, finalized, paid through one
PaymentIntent each, voided or marked uncollectible.

An invoice keeps Stripe's shape for this API version: the subscription is
`parent.subscription_details.subscription`, the intent is an `invoice_payment` in `payments`, and
`confirmation_secret` carries the intent's client secret; `payments` and `confirmation_secret` are
shown only when expanded, as Stripe does. What becomes of the subscription when an invoice is
paid or fails is `emulator.billing`'s business: this module only settles the invoice.
"""

from __future__ import annotations

from typing import Any

from emulator.context import Ctx, Emulator, includable
from emulator.currencies import format_amount
from emulator.errors import StripeError
from emulator.ids import new_id
from emulator.objects import blank
from emulator.resources.payment_intents import (
    CONFIRMABLE,
    confirm_payment_intent,
    create_payment_intent,
)
from emulator.store import Obj

HOUR = 3600
DRAFT_SECONDS = HOUR  # a renewal invoice stays a draft about an hour before it is finalized
INCLUDABLE = ("confirmation_secret", "payments")
PAYABLE = ("open", "uncollectible")  # an uncollectible invoice can still be paid
_DESCRIPTIONS = {
    "subscription_create": "Subscription creation",
    "subscription_cycle": "Subscription update",
    "subscription_update": "Subscription update",
}


def _line(
    ctx: Ctx, invoice_id: str | None, sub: Obj, item: Obj, start: int, end: int, *, trial: bool
) -> Obj:
    price = item["price"]
    quantity = int(item["quantity"])
    product = ctx.coll("product").find(price["product"]) or {}
    name = product.get("name") or price["product"]
    amount = 0 if trial else int(price["unit_amount"] or 0) * quantity
    recurring = price["recurring"] or {}
    if trial:
        description = f"Trial period for {name}"
    else:
        unit = format_amount(int(price["unit_amount"] or 0), price["currency"])
        description = f"{quantity} × {name} (at {unit} / {recurring.get('interval', 'month')})"
    line = blank(
        "line_item",
        id=new_id("il"),
        amount=amount,
        currency=price["currency"],
        description=description,
        discount_amounts=[],
        discountable=True,
        discounts=[],
        invoice=invoice_id,
        parent={
            "invoice_item_details": None,
            "subscription_item_details": {
                "invoice_item": None,
                "proration": False,
                "proration_details": {"credited_items": None},
                "subscription": sub["id"],
                "subscription_item": item["id"],
            },
            "type": "subscription_item_details",
        },
        period={"end": end, "start": start},
        pretax_credit_amounts=[],
        pricing={
            "price_details": {"price": price["id"], "product": price["product"]},
            "type": "price_details",
            "unit_amount_decimal": "0" if trial else str(price["unit_amount"] or 0),
        },
        quantity=quantity,
        subscription=sub["id"],
        subtotal=amount,
        taxes=[],
    )
    line.pop("quantity_decimal", None)
    return line


def create_invoice(
    ctx: Ctx,
    sub: Obj,
    *,
    billing_reason: str,
    period_start: int,
    period_end: int,
    lines_period: tuple[int, int],
    trial: bool = False,
) -> Obj:
    """A draft invoice for the subscription's items over `lines_period`; emits `invoice.created`.

    `period_start`/`period_end` are the invoice's own, as Stripe sets them: the creation time
    for a subscription's first invoice, the period just ended for a renewal.
    """
    invoice = build_invoice(
        ctx,
        sub,
        new_id("in"),
        billing_reason=billing_reason,
        period_start=period_start,
        period_end=period_end,
        lines_period=lines_period,
        trial=trial,
    )
    ctx.coll("invoice").add(invoice)
    ctx.store.hidden_of(invoice["id"])["payments"] = []
    ctx.emit("invoice.created", invoice)
    return invoice


def build_invoice(
    ctx: Ctx,
    sub: Obj,
    invoice_id: str | None,
    *,
    billing_reason: str,
    period_start: int,
    period_end: int,
    lines_period: tuple[int, int],
    trial: bool = False,
) -> Obj:
    """An invoice object, not stored (with no id: the preview `invoice.upcoming` carries)."""
    now = ctx.now()
    customer = ctx.coll("customer").find(sub["customer"]) or {}
    start, end = lines_period
    lines = [
        _line(ctx, invoice_id, sub, item, start, end, trial=trial) for item in sub["items"]["data"]
    ]
    total = sum(int(line["amount"]) for line in lines)
    invoice = blank(
        "invoice",
        id=invoice_id,
        account_country="US",
        account_name="Stripe Emulator",
        account_tax_ids=None,
        amount_due=total,
        amount_overpaid=0,
        amount_paid=0,
        amount_paid_off_stripe=0,
        amount_remaining=total,
        amount_shipping=0,
        attempt_count=0,
        attempted=False,
        auto_advance=True,
        automatic_tax={
            "disabled_reason": None,
            "enabled": False,
            "liability": None,
            "provider": None,
            "status": None,
        },
        automatically_finalizes_at=now + DRAFT_SECONDS,
        billing_reason=billing_reason,
        collection_method="charge_automatically",
        created=now,
        currency=sub["currency"],
        customer=sub["customer"],
        customer_address=customer.get("address"),
        customer_email=customer.get("email"),
        customer_name=customer.get("name"),
        customer_phone=customer.get("phone"),
        customer_shipping=customer.get("shipping"),
        customer_tax_exempt=customer.get("tax_exempt", "none"),
        customer_tax_ids=[],
        default_tax_rates=[],
        description=None,
        discounts=[],
        issuer={"type": "self"},
        lines={
            "object": "list",
            "data": lines,
            "has_more": False,
            "total_count": len(lines),
            "url": f"/v1/invoices/{invoice_id or 'upcoming'}/lines",
        },
        parent={
            "quote_details": None,
            "subscription_details": {
                "metadata": dict(sub["metadata"]),
                "subscription": sub["id"],
            },
            "type": "subscription_details",
        },
        payment_settings={
            "default_mandate": None,
            "payment_method_options": None,
            "payment_method_types": None,
        },
        period_end=period_end,
        period_start=period_start,
        post_payment_credit_notes_amount=0,
        pre_payment_credit_notes_amount=0,
        rendering=None,
        starting_balance=0,
        status="draft",
        status_transitions={
            "finalized_at": None,
            "marked_uncollectible_at": None,
            "paid_at": None,
            "voided_at": None,
        },
        subtotal=total,
        subtotal_excluding_tax=total,
        test_clock=customer.get("test_clock"),
        total=total,
        total_discount_amounts=[],
        total_excluding_tax=total,
        total_pretax_credit_amounts=[],
        total_taxes=[],
    )
    for field in INCLUDABLE:
        invoice.pop(field, None)
    return invoice


def finalize(ctx: Ctx, invoice: Obj) -> None:
    """Draft → open: numbered, payable at its hosted page, its PaymentIntent made. A $0 invoice
    is paid at once. Emits `invoice.finalized` (and `invoice.paid` for $0)."""
    now = ctx.now()
    customer = ctx.coll("customer").find(invoice["customer"])
    if customer is not None:
        sequence = int(customer.get("next_invoice_sequence") or 1)
        customer["next_invoice_sequence"] = sequence + 1
        invoice["number"] = f"{customer['invoice_prefix']}-{sequence:04d}"
    base = ctx.emu.config.base_url
    invoice["status"] = "open"
    invoice["automatically_finalizes_at"] = None
    invoice["effective_at"] = now
    invoice["ending_balance"] = 0
    invoice["hosted_invoice_url"] = f"{base}/_emulator/invoices/{invoice['id']}"
    invoice["invoice_pdf"] = f"{base}/_emulator/invoices/{invoice['id']}/pdf"
    invoice["status_transitions"] = {**invoice["status_transitions"], "finalized_at": now}
    if invoice["amount_due"] > 0:
        _create_intent(ctx, invoice)
    ctx.emit("invoice.finalized", invoice)
    if invoice["amount_due"] == 0:
        settle_paid(ctx, invoice)


def _create_intent(ctx: Ctx, invoice: Obj) -> None:
    pi = create_payment_intent(
        ctx,
        {
            "amount": invoice["amount_due"],
            "currency": invoice["currency"],
            "customer": invoice["customer"],
            "description": _DESCRIPTIONS.get(invoice["billing_reason"], "Invoice payment"),
            "payment_method_types": ["card"],
        },
    )
    ctx.store.hidden_of(pi["id"])["invoice"] = invoice["id"]
    payment = blank(
        "invoice_payment",
        id=new_id("inpay"),
        amount_paid=None,
        amount_requested=invoice["amount_due"],
        created=ctx.now(),
        currency=invoice["currency"],
        invoice=invoice["id"],
        is_default=True,
        payment={"payment_intent": pi["id"], "type": "payment_intent"},
        status="open",
        status_transitions={"canceled_at": None, "paid_at": None},
    )
    ctx.coll("invoice_payment").add(payment)
    hidden = ctx.store.hidden_of(invoice["id"])
    hidden["payments"] = [payment["id"]]
    hidden["payment_intent"] = pi["id"]


def intent_of(ctx: Ctx, invoice: Obj) -> Obj | None:
    pi_id = ctx.store.hidden_of(invoice["id"]).get("payment_intent")
    return ctx.coll("payment_intent").find(pi_id) if pi_id else None


def invoice_of_intent(ctx: Ctx, pi: Obj) -> Obj | None:
    invoice_id = ctx.store.hidden.get(pi["id"], {}).get("invoice")
    return ctx.coll("invoice").find(invoice_id) if invoice_id else None


def attempt(ctx: Ctx, invoice: Obj, payment_method: str, *, off_session: bool) -> bool:
    """Charge an open invoice's intent with `payment_method`. The outcome arrives as the intent's
    events (`emulator.billing` follows them), so a decline is not an error here; False when the
    attempt could not reach the card (a payment method the intent refuses)."""
    pi = intent_of(ctx, invoice)
    if pi is None or pi["status"] not in CONFIRMABLE:
        return pi is not None
    params: dict[str, Any] = {"payment_method": payment_method}
    if off_session:
        params["off_session"] = True
    try:
        confirm_payment_intent(ctx, pi, params)
    except StripeError as exc:
        return exc.status == 402
    return True


def settle_paid(ctx: Ctx, invoice: Obj) -> None:
    """Mark an open invoice paid; emits `invoice_payment.paid`, `invoice.paid`,
    `invoice.payment_succeeded`."""
    now = ctx.now()
    previous = {
        "amount_paid": invoice["amount_paid"],
        "amount_remaining": invoice["amount_remaining"],
        "status": invoice["status"],
    }
    invoice["status"] = "paid"
    invoice["amount_paid"] = invoice["amount_due"]
    invoice["amount_remaining"] = 0
    invoice["next_payment_attempt"] = None
    invoice["auto_advance"] = False
    if invoice["amount_due"] > 0:
        invoice["attempted"] = True
        invoice["attempt_count"] += 1
    invoice["status_transitions"] = {**invoice["status_transitions"], "paid_at": now}
    for payment_id in ctx.store.hidden_of(invoice["id"]).get("payments", []):
        payment = ctx.coll("invoice_payment").get(payment_id)
        payment["status"] = "paid"
        payment["amount_paid"] = payment["amount_requested"]
        payment["status_transitions"] = {**payment["status_transitions"], "paid_at": now}
        ctx.emit("invoice_payment.paid", payment)
    ctx.emit("invoice.updated", invoice, previous)
    ctx.emit("invoice.paid", invoice)
    ctx.emit("invoice.payment_succeeded", invoice)


def settle_failed(ctx: Ctx, invoice: Obj) -> None:
    """Count a failed payment attempt; emits `invoice.payment_failed`. The retry schedule and
    the subscription's status are set by the caller (`emulator.billing`)."""
    invoice["attempted"] = True
    invoice["attempt_count"] += 1
    ctx.emit("invoice.payment_failed", invoice)


def void(ctx: Ctx, invoice: Obj) -> None:
    now = ctx.now()
    invoice["status"] = "void"
    invoice["amount_remaining"] = 0
    invoice["next_payment_attempt"] = None
    invoice["auto_advance"] = False
    invoice["status_transitions"] = {**invoice["status_transitions"], "voided_at": now}
    _cancel_intent(ctx, invoice)
    ctx.emit("invoice.voided", invoice)


def mark_uncollectible(ctx: Ctx, invoice: Obj) -> None:
    now = ctx.now()
    invoice["status"] = "uncollectible"
    invoice["next_payment_attempt"] = None
    invoice["auto_advance"] = False
    invoice["status_transitions"] = {
        **invoice["status_transitions"],
        "marked_uncollectible_at": now,
    }
    ctx.emit("invoice.marked_uncollectible", invoice)


def _cancel_intent(ctx: Ctx, invoice: Obj) -> None:
    pi = intent_of(ctx, invoice)
    if pi is None or pi["status"] not in ("requires_payment_method", "requires_confirmation"):
        return
    pi["status"] = "canceled"
    pi["canceled_at"] = ctx.now()
    pi["cancellation_reason"] = "void_invoice"
    for payment_id in ctx.store.hidden_of(invoice["id"]).get("payments", []):
        payment = ctx.coll("invoice_payment").get(payment_id)
        payment["status"] = "canceled"
        payment["status_transitions"] = {
            **payment["status_transitions"],
            "canceled_at": ctx.now(),
        }
    ctx.emit("payment_intent.canceled", pi)


@includable("invoice", "confirmation_secret")
def _confirmation_secret(emu: Emulator, invoice: Obj) -> Any:
    pi_id = emu.store.hidden_of(invoice["id"]).get("payment_intent")
    pi = emu.store.collection("payment_intent").find(pi_id) if pi_id else None
    if pi is None:
        return None
    return {"client_secret": pi["client_secret"], "type": "payment_intent"}


@includable("invoice", "payments")
def _payments(emu: Emulator, invoice: Obj) -> Any:
    payments = emu.store.collection("invoice_payment")
    data = [payments.get(p) for p in emu.store.hidden_of(invoice["id"]).get("payments", [])]
    return {
        "object": "list",
        "data": data,
        "has_more": False,
        "total_count": len(data),
        "url": f"/v1/invoice_payments?invoice={invoice['id']}",
    }
