"""Invoices (`in_…`): retrieve, list, search, lines, pay, void, finalize, mark uncollectible;
invoice payments (`inpay_…`); and the hosted invoice page at `hosted_invoice_url`.

Subscriptions make the invoices (`emulator.billing`, `emulator.invoicing`); these routes act on
them as Stripe's do: `pay` charges the invoice's PaymentIntent now (a decline answers the 402 and
counts as a failed attempt), `void` and `mark_uncollectible` close an open invoice, `finalize`
opens a draft and, with `auto_advance`, charges it.
"""

from __future__ import annotations

from typing import Any

from stripe.params import (
    InvoiceFinalizeInvoiceParams,
    InvoiceListLinesParams,
    InvoiceListParams,
    InvoiceMarkUncollectibleParams,
    InvoicePaymentListParams,
    InvoicePaymentRetrieveParams,
    InvoicePayParams,
    InvoiceRetrieveParams,
    InvoiceSearchParams,
    InvoiceVoidInvoiceParams,
)

from emulator import billing, cards, hosted, invoicing, search
from emulator.context import Ctx
from emulator.errors import StripeError, invalid_request
from emulator.resources.payment_intents import confirm_payment_intent
from emulator.resources.payment_methods import attach_payment_method
from emulator.routing import Response, router
from emulator.store import Obj, paginate


def _invoice(ctx: Ctx, param: str = "invoice") -> Obj:
    return ctx.coll("invoice").get(ctx.path["invoice"], param=param)


def _on_clock(ctx: Ctx, invoice: Obj) -> Ctx:
    """Act at the invoice's test clock time, if it lives on one."""
    return ctx if ctx.at is not None else ctx.at_time(ctx.clock_time(invoice))


@router.route("GET", "/v1/invoices/search", InvoiceSearchParams)
def search_(ctx: Ctx, params: dict[str, Any]) -> dict[str, Any]:
    return search.search(ctx.coll("invoice"), params, "/v1/invoices/search")


@router.route("GET", "/v1/invoices/{invoice}", InvoiceRetrieveParams)
def retrieve(ctx: Ctx, params: dict[str, Any]) -> dict[str, Any]:
    return _invoice(ctx)


@router.route("GET", "/v1/invoices", InvoiceListParams)
def list_(ctx: Ctx, params: dict[str, Any]) -> dict[str, Any]:
    customer = params.get("customer")
    subscription = params.get("subscription")
    status = params.get("status")
    collection_method = params.get("collection_method")

    def where(invoice: Obj) -> bool:
        if customer is not None and invoice["customer"] != customer:
            return False
        if status is not None and invoice["status"] != status:
            return False
        if collection_method is not None and invoice["collection_method"] != collection_method:
            return False
        if subscription is not None:
            details = (invoice["parent"] or {}).get("subscription_details") or {}
            if details.get("subscription") != subscription:
                return False
        return True

    return paginate(ctx.coll("invoice"), params, "/v1/invoices", where)


@router.route("GET", "/v1/invoices/{invoice}/lines", InvoiceListLinesParams)
def list_lines(ctx: Ctx, params: dict[str, Any]) -> dict[str, Any]:
    invoice = _invoice(ctx)
    lines = invoice["lines"]["data"]
    limit = int(params.get("limit", 10))
    after = params.get("starting_after")
    start = next((i + 1 for i, line in enumerate(lines) if line["id"] == after), 0)
    page = lines[start : start + limit]
    return {
        "object": "list",
        "data": page,
        "has_more": start + limit < len(lines),
        "url": f"/v1/invoices/{invoice['id']}/lines",
    }


def _not_open(invoice: Obj, action: str) -> StripeError:
    if invoice["status"] == "paid":
        return invalid_request("Invoice is already paid.")
    return invalid_request(f"You cannot {action} this invoice: it is {invoice['status']}.")


def pay_invoice(ctx: Ctx, invoice: Obj, payment_method: str | None) -> Obj:
    """Charge an open (or draft: finalized first) invoice now; a decline raises its 402 after
    the failed attempt is recorded."""
    if invoice["status"] == "draft":
        invoicing.finalize(ctx, invoice)
    if invoice["status"] not in invoicing.PAYABLE:
        raise _not_open(invoice, "pay")
    sub = billing.subscription_of(ctx, invoice)
    ref = payment_method or (billing.payment_method_of(ctx, sub) if sub else None)
    if ref is None:
        raise invalid_request(
            "This invoice cannot be paid: its customer has no default payment method. Pass "
            "`payment_method`, or set the subscription's or the customer's default.",
            param="payment_method",
        )
    pi = invoicing.intent_of(ctx, invoice)
    assert pi is not None  # an open invoice with an amount due has its intent
    if pi["status"] not in ("requires_payment_method", "requires_confirmation", "requires_action"):
        raise invalid_request(
            f"This invoice's payment is {pi['status']}; it cannot be paid again now."
        )
    confirm_payment_intent(ctx, pi, {"payment_method": ref, "off_session": True})
    return invoice


@router.route("POST", "/v1/invoices/{invoice}/pay", InvoicePayParams)
def pay(ctx: Ctx, params: dict[str, Any]) -> dict[str, Any]:
    """Pay an open invoice now with `payment_method` (else the subscription's or customer's
    default); `paid_out_of_band=true` marks it paid without charging."""
    invoice = _invoice(ctx)
    ctx = _on_clock(ctx, invoice)
    for name in ("forgive", "mandate", "source"):
        if name in params:
            raise invalid_request(f"The emulator does not model `{name}` on invoice payment.")
    ref = params.get("payment_method")
    if ref:
        pm = ctx.coll("payment_method").find(ref)
        if pm is None or pm["customer"] != invoice["customer"]:
            raise invalid_request(
                f"The payment method {ref} is not attached to the invoice's customer.",
                param="payment_method",
                code="resource_missing",
            )
    if params.get("paid_out_of_band"):
        if invoice["status"] not in invoicing.PAYABLE:
            raise _not_open(invoice, "pay")
        invoice["amount_paid_off_stripe"] = invoice["amount_remaining"]
        invoicing.settle_paid(ctx, invoice)
        billing.on_paid(ctx, invoice)
        return invoice
    return pay_invoice(ctx, invoice, ref)


@router.route("POST", "/v1/invoices/{invoice}/void", InvoiceVoidInvoiceParams)
def void(ctx: Ctx, params: dict[str, Any]) -> dict[str, Any]:
    """Void an open or uncollectible invoice: it will never be paid."""
    invoice = _invoice(ctx)
    ctx = _on_clock(ctx, invoice)
    if invoice["status"] not in ("open", "uncollectible"):
        raise invalid_request(
            f"You can only void an open or uncollectible invoice; this invoice is "
            f"{invoice['status']}."
        )
    invoicing.void(ctx, invoice)
    billing.on_paid(ctx, invoice)
    return invoice


@router.route("POST", "/v1/invoices/{invoice}/mark_uncollectible", InvoiceMarkUncollectibleParams)
def mark_uncollectible(ctx: Ctx, params: dict[str, Any]) -> dict[str, Any]:
    """Mark an open invoice uncollectible (a bad debt); it can still be paid or voided."""
    invoice = _invoice(ctx)
    ctx = _on_clock(ctx, invoice)
    if invoice["status"] != "open":
        raise _not_open(invoice, "mark uncollectible")
    invoicing.mark_uncollectible(ctx, invoice)
    return invoice


@router.route("POST", "/v1/invoices/{invoice}/finalize", InvoiceFinalizeInvoiceParams)
def finalize(ctx: Ctx, params: dict[str, Any]) -> dict[str, Any]:
    """Finalize a draft now; with `auto_advance` its payment is attempted at once."""
    invoice = _invoice(ctx)
    ctx = _on_clock(ctx, invoice)
    if invoice["status"] != "draft":
        raise invalid_request(
            "This invoice is already finalized, you can't re-finalize a non-draft invoice."
        )
    if "auto_advance" in params:
        invoice["auto_advance"] = bool(params["auto_advance"])
    invoicing.finalize(ctx, invoice)
    sub = billing.subscription_of(ctx, invoice)
    if invoice["status"] == "open" and invoice["auto_advance"] and sub is not None:
        billing.charge(ctx, sub, invoice)
    return invoice


@router.route("GET", "/v1/invoice_payments", InvoicePaymentListParams)
def list_payments(ctx: Ctx, params: dict[str, Any]) -> dict[str, Any]:
    invoice_id = params.get("invoice")
    status = params.get("status")

    def where(payment: Obj) -> bool:
        return (invoice_id is None or payment["invoice"] == invoice_id) and (
            status is None or payment["status"] == status
        )

    return paginate(ctx.coll("invoice_payment"), params, "/v1/invoice_payments", where)


@router.route("GET", "/v1/invoice_payments/{invoice_payment}", InvoicePaymentRetrieveParams)
def retrieve_payment(ctx: Ctx, params: dict[str, Any]) -> dict[str, Any]:
    return ctx.coll("invoice_payment").get(ctx.path["invoice_payment"], param="invoice_payment")


# ---------------------------------------------------------------------------------------------
# The hosted invoice page


@router.route("GET", "/_emulator/invoices/{invoice}")
def page(ctx: Ctx, params: dict[str, Any]) -> Response:
    invoice = ctx.coll("invoice").find(ctx.path["invoice"])
    if invoice is None or invoice["status"] == "draft":
        return Response(404, hosted.message_page("Not found", "There is no such invoice."))
    return Response(200, hosted.invoice_page(invoice), headers={"Cache-Control": "no-store"})


@router.route("GET", "/_emulator/invoices/{invoice}/pdf")
def pdf(ctx: Ctx, params: dict[str, Any]) -> Response:
    """The invoice's printable page (HTML: the emulator makes no PDFs)."""
    answer = page(ctx, params)
    assert isinstance(answer, Response)
    return answer


@router.route("POST", "/_emulator/invoices/{invoice}/pay", body="form")
def page_pay(ctx: Ctx, params: dict[str, Any]) -> Response:
    """The hosted page's button: pay with the chosen test card (saved to the customer)."""
    invoice = ctx.coll("invoice").find(ctx.path["invoice"])
    if invoice is None:
        return Response(404, hosted.message_page("Not found", "There is no such invoice."))
    ctx = _on_clock(ctx, invoice)
    token = params.get("payment_method", "pm_card_visa")
    card = cards.BY_TOKEN.get(token if isinstance(token, str) else "", cards.CARDS[0])
    error = None
    if invoice["status"] == "open":
        pm = cards.create_card_payment_method(ctx, card)
        attach_payment_method(ctx, pm, invoice["customer"])
        try:
            pay_invoice(ctx, invoice, pm["id"])
        except StripeError as exc:
            error = exc.message
    body = hosted.invoice_page(invoice, error=error)
    return Response(200 if error is None else 402, body, headers={"Cache-Control": "no-store"})
