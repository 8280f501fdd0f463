"""`GET /invoices` and `GET /invoices/{id}`: Stripe's invoices as the webhooks mirrored them,
for subscriptions made through the service, against the emulator's Stripe Billing. An invoice
names its subscription in `parent.subscription_details` in this API version
(https://docs.stripe.com/api/invoices/object#invoice_object-parent); `paid` and `void` are final
(https://docs.stripe.com/invoicing/overview#invoice-statuses)."""

from __future__ import annotations

from typing import Any

from tests.app.test_billing_webhooks import delivered, event
from tests.app.test_subscriptions import customer_with, invoices, ok, subscribe, wait_for
from tests.fixtures.service import Stack


def invoice(stack: Stack, invoice_id: str) -> dict[str, Any]:
    return ok(stack.api.get(f"/invoices/{invoice_id}"))


class TestInvoices:
    def test_a_subscriptions_first_invoice_as_stripe_has_it(self, stack: Stack) -> None:
        customer = customer_with(stack)
        sub = ok(subscribe(stack, customer))
        found = wait_for(lambda: invoices(stack, sub["id"]), lambda f: len(f) == 1)
        mirrored = invoice(stack, found[0]["id"])
        at_stripe = stack.stripe.v1.invoices.retrieve(found[0]["id"])
        assert mirrored["id"] == sub["latest_invoice"]
        assert (mirrored["status"], mirrored["subscription"], mirrored["customer"]) == (
            "paid",
            sub["id"],
            customer,
        )
        assert (mirrored["amount_due"], mirrored["amount_paid"], mirrored["amount_remaining"]) == (
            at_stripe.amount_due,
            at_stripe.amount_paid,
            0,
        )
        assert mirrored["billing_reason"] == "subscription_create"
        assert mirrored["hosted_invoice_url"] == at_stripe.hosted_invoice_url

    def test_lists_filter_and_page(self, stack: Stack) -> None:
        customer = customer_with(stack)
        subs = [ok(subscribe(stack, customer))["id"] for _ in range(3)]
        for sub in subs:
            wait_for(lambda sub=sub: invoices(stack, sub), lambda f: len(f) == 1)
        listed = ok(stack.api.get("/invoices", params={"customer": customer, "status": "paid"}))
        assert [i["subscription"] for i in listed["data"]] == list(reversed(subs))
        assert (
            ok(stack.api.get("/invoices", params={"customer": customer, "status": "open"}))["data"]
            == []
        )
        first = ok(stack.api.get("/invoices", params={"customer": customer, "limit": 2}))
        assert first["has_more"] is True
        rest = ok(
            stack.api.get(
                "/invoices",
                params={
                    "customer": customer,
                    "limit": 2,
                    "starting_after": first["data"][-1]["id"],
                },
            )
        )
        assert [i["subscription"] for i in rest["data"]] == [subs[0]]
        assert rest["has_more"] is False

    def test_refusals(self, stack: Stack) -> None:
        missing = stack.api.get("/invoices/in_missing")
        assert missing.status_code == 404, missing.text
        assert missing.json()["error"]["param"] == "id"
        cursor = stack.api.get("/invoices", params={"starting_after": "in_missing"})
        assert cursor.status_code == 400, cursor.text
        assert cursor.json()["error"]["param"] == "starting_after"
        status = stack.api.get("/invoices", params={"status": "pending"})
        assert status.status_code == 400, status.text
        assert status.json()["error"]["param"] == "status"

    def test_a_voided_invoice_stays_void(self, stack: Stack) -> None:
        customer = customer_with(stack)
        sub = ok(subscribe(stack, customer, payment_behavior="default_incomplete"))
        first = sub["latest_invoice"]
        assert wait_for(lambda: invoice(stack, first), lambda i: i["status"] == "open")
        stack.stripe.v1.invoices.void_invoice(first)
        voided = wait_for(lambda: invoice(stack, first), lambda i: i["status"] == "void")
        # A delivery of its older, open state arriving late changes nothing.
        late = {**voided, "status": "open", "parent": None}
        delivered(stack, event("invoice.updated", late, voided["created"] - 1), "stale")
        assert invoice(stack, first)["status"] == "void"
