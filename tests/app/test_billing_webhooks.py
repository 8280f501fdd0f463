"""Stripe Billing events through `POST /webhooks/stripe` into the subscription and invoice
mirrors: events we build and sign ourselves (the emulator's own deliveries dropped), so the
order of arrival is ours to choose. Stripe does not order its deliveries
(https://docs.stripe.com/webhooks#event-ordering): the mirror orders them by the object's own
state, reads Stripe when it cannot, and never moves backwards."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.fixtures.service import Stack, fault, sign_event

NOW = int(time.time())
MONTH = 30 * 86400


def new_id(prefix: str) -> str:
    return f"{prefix}_test_{secrets.token_hex(8)}"


def subscription(
    sub_id: str | None = None,
    *,
    customer: str | None = None,
    status: str = "active",
    product: str | None = None,
    start: int = NOW,
    end: int = NOW + MONTH,
    test_clock: str | None = None,
    **fields: Any,
) -> dict[str, Any]:
    """A Subscription object as Stripe's API version 2026-10-28 sends it (the period on its
    items)."""
    return {
        "id": sub_id or new_id("sub"),
        "object": "subscription",
        "customer": customer or new_id("cus"),
        "status": status,
        "cancel_at_period_end": False,
        "created": start,
        "items": {
            "object": "list",
            "data": [
                {
                    "id": new_id("si"),
                    "object": "subscription_item",
                    "price": {
                        "id": new_id("price"),
                        "object": "price",
                        "product": product or new_id("prod"),
                    },
                    "quantity": 1,
                    "current_period_start": start,
                    "current_period_end": end,
                }
            ],
        },
        "latest_invoice": None,
        "default_payment_method": None,
        "test_clock": test_clock,
        "metadata": {},
        "trial_end": None,
        "canceled_at": None,
        "ended_at": None,
        **fields,
    }


def invoice(
    inv_id: str | None = None,
    *,
    customer: str,
    sub: str | None,
    status: str = "open",
    amount: int = 1500,
    **fields: Any,
) -> dict[str, Any]:
    """An Invoice object: its subscription in `parent.subscription_details`, none at the top."""
    paid = amount if status == "paid" else 0
    return {
        "id": inv_id or new_id("in"),
        "object": "invoice",
        "customer": customer,
        "parent": {
            "type": "subscription_details",
            "subscription_details": {"subscription": sub, "metadata": {}},
        }
        if sub
        else None,
        "status": status,
        "amount_due": amount,
        "amount_paid": paid,
        "amount_remaining": amount - paid,
        "currency": "usd",
        "billing_reason": "subscription_cycle",
        "period_start": NOW,
        "period_end": NOW + MONTH,
        "hosted_invoice_url": "https://invoice.stripe.com/i/test",
        "attempt_count": 1 if status != "draft" else 0,
        "next_payment_attempt": None,
        "created": NOW,
        **fields,
    }


def event(type_: str, obj: dict[str, Any], created: int, event_id: str | None = None) -> Any:
    return {
        "id": event_id or new_id("evt"),
        "object": "event",
        "api_version": "2026-10-28.endive",
        "created": created,
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "type": type_,
        "data": {"object": obj},
    }


def deliver(stack: Stack, evt: dict[str, Any]) -> httpx.Response:
    payload = json.dumps(evt)
    return stack.public.post(
        "/webhooks/stripe",
        content=payload,
        headers={"Content-Type": "application/json", "Stripe-Signature": sign_event(payload)},
    )


def delivered(stack: Stack, evt: dict[str, Any], outcome: str) -> None:
    response = deliver(stack, evt)
    assert response.status_code == 200, response.text
    assert response.json() == {"received": True, "duplicate": False, "outcome": outcome}


def inbox_outcome(stack: Stack, event_id: str) -> str | None:
    rows = stack.rows("SELECT outcome FROM webhook_events WHERE stripe_event_id = :id", id=event_id)
    return rows[0]["outcome"] if rows else None


def sub_row(stack: Stack, sub_id: str) -> dict[str, Any]:
    (row,) = stack.rows("SELECT * FROM subscriptions WHERE stripe_id = :id", id=sub_id)
    # SQLite hands JSON columns back as text.
    for name in ("items", "metadata", "data"):
        if isinstance(row[name], str):
            row[name] = json.loads(row[name])
    return row


def inv_row(stack: Stack, inv_id: str) -> dict[str, Any]:
    (row,) = stack.rows("SELECT * FROM invoices WHERE stripe_id = :id", id=inv_id)
    return row


@pytest.fixture
def quiet_emulator(stack: Stack) -> Iterator[None]:
    """Drop the emulator's own deliveries for the test, so only the events we post arrive."""
    stack.controls("/_emulator/faults", {"webhook": "drop"})
    try:
        yield
    finally:
        httpx.delete(f"{stack.emulator.url}/_emulator/faults", timeout=10).raise_for_status()


@pytest.mark.usefixtures("quiet_emulator")
class TestSubscriptionEvents:
    def test_a_new_subscription_is_mirrored_with_its_items_period(self, stack: Stack) -> None:
        sub = subscription(metadata={"plan": "pro"})
        item = sub["items"]["data"][0]
        evt = event("customer.subscription.created", sub, NOW)
        delivered(stack, evt, "applied")
        row = sub_row(stack, sub["id"])
        assert (row["customer"], row["status"], row["event_created"]) == (
            sub["customer"],
            "active",
            NOW,
        )
        assert (row["current_period_start"], row["current_period_end"]) == (NOW, NOW + MONTH)
        assert row["items"] == [
            {
                "id": item["id"],
                "price": item["price"]["id"],
                "product": item["price"]["product"],
                "quantity": 1,
                "current_period_start": NOW,
                "current_period_end": NOW + MONTH,
            }
        ]
        read = stack.api.get(f"/subscriptions/{sub['id']}")
        assert read.status_code == 200, read.text
        body = read.json()
        assert (body["id"], body["status"], body["metadata"]) == (
            sub["id"],
            "active",
            {"plan": "pro"},
        )
        assert body["checkout_session"] is None
        assert "client_secret" not in body or body["client_secret"] is None

    def test_a_repeated_delivery_changes_nothing(self, stack: Stack) -> None:
        sub = subscription()
        evt = event("customer.subscription.created", sub, NOW)
        delivered(stack, evt, "applied")
        again = deliver(stack, evt)
        assert again.status_code == 200, again.text
        assert again.json() == {"received": True, "duplicate": True}
        assert (
            len(stack.rows("SELECT id FROM subscriptions WHERE stripe_id = :id", id=sub["id"])) == 1
        )

    def test_an_older_update_arriving_late_is_stale(self, stack: Stack) -> None:
        sub = subscription()
        delivered(stack, event("customer.subscription.created", sub, NOW), "applied")
        newer = event("customer.subscription.updated", {**sub, "status": "past_due"}, NOW + 20)
        older = event("customer.subscription.updated", {**sub, "status": "active"}, NOW + 10)
        delivered(stack, newer, "applied")
        delivered(stack, older, "stale")
        row = sub_row(stack, sub["id"])
        assert (row["status"], row["event_created"], row["past_due_since"]) == (
            "past_due",
            NOW + 20,
            NOW + 20,
        )
        assert inbox_outcome(stack, older["id"]) == "stale"

    def test_updates_in_order_and_out_of_order_end_in_the_newest_state(self, stack: Stack) -> None:
        sub = subscription()
        states = [
            ({**sub, "status": "trialing"}, NOW),
            ({**sub, "status": "active"}, NOW + 1),
            ({**sub, "status": "active", "cancel_at_period_end": True}, NOW + 2),
        ]
        events = [event("customer.subscription.updated", obj, at) for obj, at in states]
        for evt in (events[2], events[0], events[1], events[0]):
            assert deliver(stack, evt).status_code == 200
        row = sub_row(stack, sub["id"])
        assert (row["status"], row["cancel_at_period_end"], row["event_created"]) == (
            "active",
            True,
            NOW + 2,
        )

    def test_a_canceled_subscription_stays_canceled(self, stack: Stack) -> None:
        sub = subscription()
        ended = {**sub, "status": "canceled", "canceled_at": NOW, "ended_at": NOW}
        delivered(stack, event("customer.subscription.deleted", ended, NOW), "applied")
        late = event("customer.subscription.updated", {**sub, "status": "active"}, NOW + 100)
        delivered(stack, late, "stale")
        row = sub_row(stack, sub["id"])
        assert (row["status"], row["ended_at"], row["event_created"]) == ("canceled", NOW, NOW)

    def test_past_due_since_is_kept_while_it_stays_past_due(self, stack: Stack) -> None:
        sub = subscription()
        for at in (NOW, NOW + 50):
            evt = event("customer.subscription.updated", {**sub, "status": "past_due"}, at)
            delivered(stack, evt, "applied")
        assert sub_row(stack, sub["id"])["past_due_since"] == NOW
        paid = event("customer.subscription.updated", {**sub, "status": "active"}, NOW + 60)
        delivered(stack, paid, "applied")
        assert sub_row(stack, sub["id"])["past_due_since"] is None

    def test_an_event_as_old_as_the_row_is_checked_against_stripe(self, stack: Stack) -> None:
        # Stripe has no such subscription: the event's own object is all there is.
        sub = subscription()
        delivered(stack, event("customer.subscription.created", sub, NOW), "applied")
        same = event("customer.subscription.updated", {**sub, "status": "past_due"}, NOW)
        with fault(stack, route="GET /v1/subscriptions/{subscription_exposed_id}", status=500):
            refused = deliver(stack, same)
        # Stripe's read failed: nothing kept, and a 503 so that Stripe delivers it again.
        assert refused.status_code == 503, refused.text
        assert refused.json()["error"]["code"] == "stripe_unavailable"
        assert refused.headers["Retry-After"]
        assert inbox_outcome(stack, same["id"]) is None
        assert sub_row(stack, sub["id"])["status"] == "active"
        delivered(stack, same, "applied")
        assert sub_row(stack, sub["id"])["status"] == "past_due"

    def test_a_listed_filter_by_customer_and_status(self, stack: Stack) -> None:
        customer = new_id("cus")
        subs = [subscription(customer=customer, status=s) for s in ("active", "past_due", "active")]
        for sub in subs:
            delivered(stack, event("customer.subscription.created", sub, NOW), "applied")
        listed = stack.api.get("/subscriptions", params={"customer": customer, "status": "active"})
        assert listed.status_code == 200, listed.text
        assert [s["id"] for s in listed.json()["data"]] == [subs[2]["id"], subs[0]["id"]]
        first = stack.api.get("/subscriptions", params={"customer": customer, "limit": 2})
        assert first.json()["has_more"] is True
        rest = stack.api.get(
            "/subscriptions",
            params={"customer": customer, "limit": 2, "starting_after": subs[1]["id"]},
        )
        assert [s["id"] for s in rest.json()["data"]] == [subs[0]["id"]]
        assert rest.json()["has_more"] is False

    def test_an_unknown_subscription_is_404(self, stack: Stack) -> None:
        response = stack.api.get("/subscriptions/sub_missing")
        assert response.status_code == 404, response.text
        assert response.json()["error"]["code"] == "resource_missing"


@pytest.mark.usefixtures("quiet_emulator")
class TestInvoiceEvents:
    def test_an_invoice_names_its_subscription_from_its_parent(self, stack: Stack) -> None:
        customer, sub = new_id("cus"), new_id("sub")
        inv = invoice(customer=customer, sub=sub, status="open")
        delivered(stack, event("invoice.finalized", inv, NOW), "applied")
        row = inv_row(stack, inv["id"])
        assert (row["subscription"], row["status"], row["amount_due"], row["amount_remaining"]) == (
            sub,
            "open",
            1500,
            1500,
        )
        listed = stack.api.get("/invoices", params={"subscription": sub})
        assert listed.status_code == 200, listed.text
        assert [(i["id"], i["subscription"]) for i in listed.json()["data"]] == [(inv["id"], sub)]
        one = stack.api.get(f"/invoices/{inv['id']}")
        assert one.status_code == 200
        assert one.json()["hosted_invoice_url"] == "https://invoice.stripe.com/i/test"

    def test_a_paid_invoice_stays_paid(self, stack: Stack) -> None:
        customer, sub = new_id("cus"), new_id("sub")
        inv = invoice(customer=customer, sub=sub, status="open")
        delivered(stack, event("invoice.finalized", inv, NOW), "applied")
        paid = {**inv, "status": "paid", "amount_paid": 1500, "amount_remaining": 0}
        delivered(stack, event("invoice.paid", paid, NOW + 5), "applied")
        failed_late = event("invoice.payment_failed", {**inv, "attempt_count": 2}, NOW + 9)
        delivered(stack, failed_late, "stale")
        row = inv_row(stack, inv["id"])
        assert (row["status"], row["amount_paid"], row["event_created"]) == ("paid", 1500, NOW + 5)
        listed = stack.api.get("/invoices", params={"customer": customer, "status": "paid"})
        assert [i["id"] for i in listed.json()["data"]] == [inv["id"]]

    def test_an_uncollectible_invoice_can_still_be_paid(self, stack: Stack) -> None:
        inv = invoice(customer=new_id("cus"), sub=new_id("sub"), status="uncollectible")
        delivered(stack, event("invoice.marked_uncollectible", inv, NOW), "applied")
        paid = {**inv, "status": "paid", "amount_paid": 1500, "amount_remaining": 0}
        delivered(stack, event("invoice.paid", paid, NOW + 1), "applied")
        assert inv_row(stack, inv["id"])["status"] == "paid"

    def test_the_upcoming_preview_and_payment_records_are_not_invoices(self, stack: Stack) -> None:
        preview = invoice(customer=new_id("cus"), sub=new_id("sub"), status="draft")
        del preview["id"]
        delivered(stack, event("invoice.upcoming", preview, NOW), "ignored")
        record = {"id": new_id("inpay"), "object": "invoice_payment", "invoice": new_id("in")}
        delivered(stack, event("invoice_payment.paid", record, NOW), "ignored")
        assert (
            stack.rows("SELECT id FROM invoices WHERE stripe_id = :id", id=record["invoice"]) == []
        )

    def test_an_invoice_payment_intent_makes_no_order(self, stack: Stack) -> None:
        # An invoice's PaymentIntent carries no `service_order_id`: subscription payments are
        # not orders.
        intent = {
            "id": new_id("pi"),
            "object": "payment_intent",
            "amount": 1500,
            "amount_received": 1500,
            "currency": "usd",
            "status": "succeeded",
            "customer": new_id("cus"),
            "created": NOW,
            "metadata": {},
            "description": "Subscription creation",
        }
        delivered(stack, event("payment_intent.succeeded", intent, NOW), "ignored")
        assert stack.rows("SELECT id FROM orders WHERE payment_intent = :id", id=intent["id"]) == []
        assert (
            stack.rows("SELECT id FROM payment_intents WHERE stripe_id = :id", id=intent["id"])
            == []
        )


@pytest.mark.usefixtures("quiet_emulator")
class TestTestClockEvents:
    def test_the_clock_time_only_moves_forward(self, stack: Stack) -> None:
        clock = new_id("clock")
        obj = {"id": clock, "object": "test_helpers.test_clock", "status": "ready"}
        delivered(
            stack,
            event("test_helpers.test_clock.ready", {**obj, "frozen_time": NOW + 900}, NOW + 900),
            "applied",
        )
        late = event("test_helpers.test_clock.advancing", {**obj, "frozen_time": NOW}, NOW)
        delivered(stack, late, "stale")
        assert stack.rows("SELECT frozen_time FROM test_clocks WHERE id = :id", id=clock) == [
            {"frozen_time": NOW + 900}
        ]
