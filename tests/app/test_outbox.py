"""The outbox: every order transition writes exactly its event in the same statement as the
change (its history entry's twin: same order, type, cause and time), subscriptions and invoices
theirs through the billing mirror; `GET /events` lists them; `audit` names a transition without
its event and an event without its transition."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import time
import uuid
from datetime import datetime
from typing import Any

import pytest
from sqlalchemy import text

from app import pg_direct
from app.db import create_engine
from app.webhooks import fast_path
from app.webhooks.inbox import Outcome, Receipt
from tests.app.test_billing_webhooks import NOW, delivered, invoice, subscription
from tests.app.test_billing_webhooks import event as billing_event
from tests.app.test_checkout_sessions import SEED_PAYMENT
from tests.app.test_reconcile import ATTEMPTS, assert_lost, run_reconcile
from tests.app.test_subscriptions import customer_with, subscribe
from tests.app.test_webhook_lock_order import linked_order
from tests.app.test_webhooks import (
    confirm_on_stripe,
    create_intent,
    deliver,
    event,
    quiet_emulator,
    snapshot,
)
from tests.fixtures.service import Stack, fault, postgres_database, run_app

__all__ = ["quiet_emulator"]  # the fixture, used by name

POSTGRES = os.environ.get("TEST_DATABASE_URL")


def events_of(stack: Stack, object_id: str) -> list[dict[str, Any]]:
    """The object's events through `GET /events?order=`, oldest first."""
    response = stack.api.get("/events", params={"order": object_id, "limit": 100})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["has_more"] is False
    return list(reversed(body["data"]))


def expected_type(entry: dict[str, Any]) -> str:
    return "order.created" if entry["from"] is None else f"order.{entry['to']}"


def settled(stack: Stack, order_id: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The order and its events, read until the order is the same before and after the events
    (a webhook may move it between two reads)."""
    for _ in range(50):
        order = stack.order(order_id)
        events = events_of(stack, order_id)
        if stack.order(order_id) == order:
            return order, events
        time.sleep(0.05)
    raise AssertionError(f"{order_id} kept moving")


def assert_one_event_per_transition(stack: Stack, order_id: str) -> list[str]:
    """The order's history and its events, one to one: type, cause, object, time; the event's
    object is the order as it stood after that transition. The events' types."""
    order, events = settled(stack, order_id)
    history = order["history"]
    assert [(expected_type(h), h["source"]) for h in history] == [
        (e["type"], e["cause"]) for e in events
    ]
    for entry, evt in zip(history, events, strict=True):
        shown = evt["data"]["object"]
        assert (shown["object"], shown["id"], shown["status"]) == ("order", order_id, entry["to"])
        assert (shown["amount"], shown["currency"]) == (order["amount"], order["currency"])
        assert evt["created"] == int(datetime.fromisoformat(entry["at"]).timestamp())
        assert evt["id"].startswith("evt_")
    last = events[-1]["data"]["object"]
    for name in ("status", "amount_received", "amount_refunded", "customer", "metadata"):
        assert last[name] == order[name], name
    if len(events) > 1:  # linking the intent is no transition: the created event has none
        assert last["payment_intent"] == order["payment_intent"]
    return [e["type"] for e in events]


class TestOrderTransitions:
    def test_create_then_paid_by_the_webhook(self, stack: Stack) -> None:
        intent = create_intent(stack, metadata={"order_id": "shop-1"})
        assert assert_one_event_per_transition(stack, intent["order_id"]) == ["order.created"]
        confirm_on_stripe(stack, intent["id"], "pm_card_visa")
        stack.wait_for_order(intent["order_id"], "paid")
        types = assert_one_event_per_transition(stack, intent["order_id"])
        assert types == ["order.created", "order.paid"]
        paid = events_of(stack, intent["order_id"])[-1]
        assert paid["cause"].startswith("evt_")  # the Stripe event that paid it
        assert paid["data"]["object"]["metadata"] == {"order_id": "shop-1"}
        assert paid["data"]["object"]["amount_received"] == 2000

    def test_created_confirmed_in_one_call(self, stack: Stack) -> None:
        """The create's answer and Stripe's payment_intent.succeeded race to move the order:
        whichever applies first writes order.paid, caused by itself, and the other writes
        nothing (one event per transition, whoever won)."""
        intent = create_intent(stack, confirm=True, payment_method="pm_card_visa")
        stack.wait_for_order(intent["order_id"], "paid")
        types = assert_one_event_per_transition(stack, intent["order_id"])
        assert types == ["order.created", "order.paid"]
        created, paid = (e["cause"] for e in events_of(stack, intent["order_id"]))
        assert created == "api:POST /payment-intents"
        assert paid == "api:POST /payment-intents" or paid.startswith("evt_"), paid

    def test_failure_then_retry(self, stack: Stack) -> None:
        intent = create_intent(stack)
        confirm_on_stripe(stack, intent["id"], "pm_card_authenticationRequired")
        stack.wait_for_order(intent["order_id"], "requires_action")
        stack.controls(
            f"/_emulator/payment_intents/{intent['id']}/authenticate", {"outcome": "fail"}
        )
        stack.wait_for_order(intent["order_id"], "payment_failed")
        confirm_on_stripe(stack, intent["id"], "pm_card_visa")
        stack.wait_for_order(intent["order_id"], "paid")
        types = assert_one_event_per_transition(stack, intent["order_id"])
        assert types == [
            "order.created",
            "order.requires_action",
            "order.payment_failed",
            "order.paid",
        ]

    def test_three_d_secure_requires_action_then_paid(self, stack: Stack) -> None:
        intent = create_intent(stack)
        confirm_on_stripe(stack, intent["id"], "pm_card_authenticationRequired")
        stack.wait_for_order(intent["order_id"], "requires_action")
        stack.controls(
            f"/_emulator/payment_intents/{intent['id']}/authenticate", {"outcome": "succeed"}
        )
        stack.wait_for_order(intent["order_id"], "paid")
        types = assert_one_event_per_transition(stack, intent["order_id"])
        assert types == ["order.created", "order.requires_action", "order.paid"]

    def test_processing_then_paid(self, stack: Stack) -> None:
        intent = create_intent(stack)
        confirmed = stack.api.post(
            f"/payment-intents/{intent['id']}/confirm",
            json={"payment_method": "pm_card_delayedSettlement"},
        )
        assert confirmed.status_code == 200, confirmed.text
        stack.controls(f"/_emulator/payment_intents/{intent['id']}/settle", {"outcome": "succeed"})
        stack.wait_for_order(intent["order_id"], "paid")
        types = assert_one_event_per_transition(stack, intent["order_id"])
        assert types == ["order.created", "order.processing", "order.paid"]

    def test_manual_capture_then_partial_and_full_refund(self, stack: Stack) -> None:
        intent = create_intent(
            stack, amount=5000, capture_method="manual", confirm=True, payment_method="pm_card_visa"
        )
        stack.wait_for_order(intent["order_id"], "authorized")
        captured = stack.api.post(
            f"/payment-intents/{intent['id']}/capture", json={"amount_to_capture": 4500}
        )
        assert captured.status_code == 200, captured.text
        stack.wait_for_order(intent["order_id"], "paid")
        for amount in (1000, None):
            body = {"payment_intent": intent["id"], **({"amount": amount} if amount else {})}
            refunded = stack.api.post("/refunds", json=body)
            assert refunded.status_code == 200, refunded.text
        order = stack.wait_for_order(intent["order_id"], "refunded")
        assert order["amount_refunded"] == 4500
        types = assert_one_event_per_transition(stack, intent["order_id"])
        assert types == [
            "order.created",
            "order.authorized",
            "order.paid",
            "order.partially_refunded",
            "order.refunded",
        ]
        shown = [e["data"]["object"]["amount_refunded"] for e in events_of(stack, order["id"])]
        assert shown == [0, 0, 0, 1000, 4500]

    def test_cancel(self, stack: Stack) -> None:
        intent = create_intent(stack)
        canceled = stack.api.post(
            f"/payment-intents/{intent['id']}/cancel",
            json={"cancellation_reason": "requested_by_customer"},
        )
        assert canceled.status_code == 200, canceled.text
        stack.wait_for_order(intent["order_id"], "canceled")
        types = assert_one_event_per_transition(stack, intent["order_id"])
        assert types == ["order.created", "order.canceled"]

    def test_checkout_session_expired(self, stack: Stack) -> None:
        created = stack.api.post("/checkout-sessions", json=SEED_PAYMENT)
        assert created.status_code == 200, created.text
        session = created.json()
        expired = stack.api.post(f"/checkout-sessions/{session['id']}/expire")
        assert expired.status_code == 200, expired.text
        types = assert_one_event_per_transition(stack, session["order_id"])
        assert types == ["order.created", "order.expired"]
        cause = events_of(stack, session["order_id"])[-1]["cause"]
        assert cause == f"api:POST /checkout-sessions/{session['id']}/expire"

    def test_reconcile_abandons(self, stack: Stack) -> None:
        description = f"outbox-{uuid.uuid4().hex[:12]}"
        body = {"amount": 1200, "currency": "usd", "description": description}
        with fault(stack, route="POST /v1/payment_intents", drop="before", times=ATTEMPTS):
            assert_lost(stack.api.post("/payment-intents", json=body))
        [order] = stack.rows("SELECT id FROM orders WHERE description = :d", d=description)
        ran = run_reconcile(stack)
        assert ran.returncode == 0, ran.stdout + ran.stderr
        types = assert_one_event_per_transition(stack, order["id"])
        assert types == ["order.created", "order.abandoned"]
        cause = events_of(stack, order["id"])[-1]["cause"]
        assert cause == "reconcile: no payment intent at Stripe"

    def test_a_refused_create_leaves_neither_order_nor_event(self, stack: Stack) -> None:
        description = f"outbox-{uuid.uuid4().hex[:12]}"
        response = stack.api.post(
            "/payment-intents",
            json={"amount": 1500, "currency": "usd", "description": description,
                  "payment_method": "pm_does_not_exist", "confirm": True},
        )  # fmt: skip
        assert response.status_code >= 400, response.text
        assert stack.rows("SELECT id FROM orders WHERE description = :d", d=description) == []
        # A discarded order keeps its published events by design (test_discarded_orders).
        orphans = stack.rows(
            "SELECT e.id FROM events e LEFT JOIN orders o ON o.id = e.object_id "
            "WHERE e.object_type = 'order' AND o.id IS NULL AND NOT EXISTS (SELECT 1 FROM "
            "events d WHERE d.object_id = e.object_id AND d.type = 'order.discarded')"
        )
        assert orphans == []


@pytest.mark.usefixtures("quiet_emulator")
class TestWebhooksWePost:
    def test_a_duplicate_delivery_emits_nothing(self, stack: Stack) -> None:
        intent = create_intent(stack)
        confirm_on_stripe(stack, intent["id"], "pm_card_visa")
        succeeded = event("payment_intent.succeeded", snapshot(stack, intent["id"]))
        assert deliver(stack, succeeded).json()["outcome"] == "applied"
        again = deliver(stack, succeeded)
        assert again.json()["duplicate"] is True, again.text
        types = assert_one_event_per_transition(stack, intent["order_id"])
        assert types == ["order.created", "order.paid"]
        assert events_of(stack, intent["order_id"])[-1]["cause"] == succeeded["id"]

    def test_a_stale_event_emits_nothing(self, stack: Stack) -> None:
        intent = create_intent(stack)
        confirm_on_stripe(stack, intent["id"], "pm_card_visa")
        paid = snapshot(stack, intent["id"])
        assert (
            deliver(stack, event("payment_intent.succeeded", paid)).json()["outcome"] == "applied"
        )
        late = event("payment_intent.processing", {**paid, "status": "processing"})
        assert deliver(stack, late).json()["outcome"] == "stale"
        types = assert_one_event_per_transition(stack, intent["order_id"])
        assert types == ["order.created", "order.paid"]


@pytest.mark.skipif(not POSTGRES, reason="TEST_DATABASE_URL is not set")
def test_the_fast_path_rolled_back_leaves_no_event() -> None:
    """As test_webhook_lock_order's: the fast path's statement for an order that moved after
    it was read rolls itself back, and the event it planned with it; the fast path that applied
    wrote its event, with the order as its UPDATE returned it (amount and currency too, which
    the fast path never read)."""
    assert POSTGRES is not None
    with postgres_database(POSTGRES, "outbox_fast") as url:
        asyncio.run(_moved_after_read(url))


async def _moved_after_read(url: str) -> None:
    engine = create_engine(url, 5, direct_pool_size=2)
    try:
        order_id, intent = await linked_order(engine, "outbox", metadata={"k": "v"})
        processing = event("payment_intent.processing", {**intent, "status": "processing"})
        (seen,) = await pg_direct.fetch(engine, fast_path.READ_ORDER, {"value": intent["id"]})
        succeeded = event(
            "payment_intent.succeeded", {**intent, "status": "succeeded", "amount_received": 2000}
        )
        assert await fast_path.receive(engine, succeeded) == Receipt(
            duplicate=False, outcome=Outcome.APPLIED, order_id=order_id
        )
        assert await fast_path.apply_as_read(engine, processing, seen) is None
        async with engine.connect() as connection:
            rows = (
                await connection.execute(
                    text("SELECT type, cause, object FROM events WHERE object_id = :id "
                         "ORDER BY created, id"),
                    {"id": order_id},
                )
            ).all()  # fmt: skip
        assert [(r.type, r.cause) for r in rows] == [
            ("order.created", "test"),
            ("order.paid", succeeded["id"]),
        ]
        paid = rows[1].object
        assert (paid["status"], paid["amount"], paid["currency"]) == ("paid", 2000, "usd")
        assert (paid["amount_received"], paid["payment_intent"]) == (2000, intent["id"])
        assert paid["metadata"] == {"k": "v"}
    finally:
        await pg_direct.close(engine)
        await engine.dispose()


@pytest.mark.usefixtures("quiet_emulator")
class TestBilling:
    def test_subscription_status_changes(self, stack: Stack) -> None:
        sub = subscription(status="incomplete")
        delivered(stack, billing_event("customer.subscription.created", sub, NOW), "applied")
        active = billing_event(
            "customer.subscription.updated", {**sub, "status": "active"}, NOW + 1
        )
        delivered(stack, active, "applied")
        # Another change that leaves the status as it was: no event.
        renamed = {**sub, "status": "active", "metadata": {"plan": "pro"}}
        delivered(
            stack, billing_event("customer.subscription.updated", renamed, NOW + 2), "applied"
        )
        ended = {**sub, "status": "canceled", "canceled_at": NOW, "ended_at": NOW}
        gone = billing_event("customer.subscription.deleted", ended, NOW + 3)
        delivered(stack, gone, "applied")
        events = events_of(stack, sub["id"])
        assert [(e["type"], e["data"]["object"]["status"]) for e in events] == [
            ("subscription.incomplete", "incomplete"),
            ("subscription.active", "active"),
            ("subscription.canceled", "canceled"),
        ]
        assert events[1]["cause"] == active["id"]
        assert events[2]["cause"] == gone["id"]
        assert all(e["data"]["object"]["id"] == sub["id"] for e in events)

    def test_invoice_outcomes(self, stack: Stack) -> None:
        customer, sub = f"cus_{secrets.token_hex(6)}", f"sub_{secrets.token_hex(6)}"
        # Finalized: due, not attempted yet (no event); an attempt fails; then it is paid.
        inv = invoice(customer=customer, sub=sub, status="open", attempt_count=0)
        delivered(stack, billing_event("invoice.finalized", inv, NOW), "applied")
        failed = billing_event("invoice.payment_failed", {**inv, "attempt_count": 1}, NOW + 1)
        delivered(stack, failed, "applied")
        paid = {**inv, "status": "paid", "amount_paid": 1500, "amount_remaining": 0}
        paid_event = billing_event("invoice.paid", {**paid, "attempt_count": 2}, NOW + 2)
        delivered(stack, paid_event, "applied")
        events = events_of(stack, inv["id"])
        assert [(e["type"], e["cause"]) for e in events] == [
            ("invoice.payment_failed", failed["id"]),
            ("invoice.paid", paid_event["id"]),
        ]
        shown = events[1]["data"]["object"]
        assert (shown["status"], shown["subscription"], shown["amount_paid"]) == ("paid", sub, 1500)

        voided = invoice(customer=customer, sub=sub, status="open", attempt_count=0)
        delivered(stack, billing_event("invoice.finalized", voided, NOW), "applied")
        void = billing_event("invoice.voided", {**voided, "status": "void"}, NOW + 1)
        delivered(stack, void, "applied")
        assert [e["type"] for e in events_of(stack, voided["id"])] == ["invoice.voided"]
        bad = invoice(customer=customer, sub=sub, status="uncollectible")
        delivered(stack, billing_event("invoice.marked_uncollectible", bad, NOW), "applied")
        assert [e["type"] for e in events_of(stack, bad["id"])] == ["invoice.marked_uncollectible"]

    def test_a_subscription_made_through_the_api(self, stack: Stack) -> None:
        customer = customer_with(stack)
        created = subscribe(stack, customer)
        assert created.status_code == 200, created.text
        sub = created.json()
        events = events_of(stack, sub["id"])
        assert [(e["type"], e["cause"]) for e in events] == [
            (f"subscription.{sub['status']}", "api:POST /subscriptions")
        ]
        canceled = stack.api.post(f"/subscriptions/{sub['id']}/cancel")
        assert canceled.status_code == 200, canceled.text
        events = events_of(stack, sub["id"])
        assert (events[-1]["type"], events[-1]["cause"]) == (
            "subscription.canceled",
            f"api:POST /subscriptions/{sub['id']}/cancel",
        )


class TestEventsApi:
    def test_list_filters_pages_and_retrieves(self, stack: Stack) -> None:
        intent = create_intent(stack, confirm=True, payment_method="pm_card_visa")
        stack.wait_for_order(intent["order_id"], "paid")
        first = stack.api.get("/events", params={"order": intent["order_id"], "limit": 1})
        assert first.status_code == 200, first.text
        page = first.json()
        assert (page["object"], page["url"], page["has_more"]) == ("list", "/events", True)
        [newest] = page["data"]
        assert newest["type"] == "order.paid"
        second = stack.api.get(
            "/events",
            params={"order": intent["order_id"], "limit": 1, "starting_after": newest["id"]},
        ).json()
        assert [e["type"] for e in second["data"]] == ["order.created"]
        assert second["has_more"] is False
        typed = stack.api.get("/events", params={"type": "order.paid", "limit": 100}).json()
        assert newest["id"] in [e["id"] for e in typed["data"]]
        assert {e["type"] for e in typed["data"]} == {"order.paid"}
        got = stack.api.get(f"/events/{newest['id']}")
        assert got.status_code == 200, got.text
        assert got.json() == newest

    def test_unknown_ids_and_missing_keys(self, stack: Stack) -> None:
        missing = stack.api.get("/events/evt_does_not_exist")
        assert missing.status_code == 404, missing.text
        assert missing.json()["error"]["code"] == "resource_missing"
        cursor = stack.api.get("/events", params={"starting_after": "evt_nope"})
        assert cursor.status_code == 400, cursor.text
        assert cursor.json()["error"]["param"] == "starting_after"
        assert stack.public.get("/events").status_code == 401
        too_many = stack.api.get("/events", params={"limit": 101})
        assert too_many.status_code == 400, too_many.text


class TestAudit:
    def test_names_a_transition_without_its_event_and_an_event_without_its_transition(
        self, stack: Stack
    ) -> None:
        silent = create_intent(stack)
        invented = create_intent(stack)
        with stack.engine.begin() as connection:
            connection.execute(
                text("DELETE FROM events WHERE object_id = :id"), {"id": silent["order_id"]}
            )
            connection.execute(
                text(
                    "INSERT INTO events (id, type, created, object_type, object_id, object, cause)"
                    " SELECT :eid, 'order.paid', created, object_type, object_id, object, cause"
                    " FROM events WHERE object_id = :id"
                ),
                {"eid": f"evt_{secrets.token_hex(10)}", "id": invented["order_id"]},
            )
        ran = run_app(
            "audit", "--min-age", "0", "--json",
            database_url=stack.database_url, stripe_base=stack.emulator.url,
        )  # fmt: skip
        assert ran.returncode in (0, 1), ran.stdout + ran.stderr
        report = json.loads(ran.stdout)
        outbox = {
            (f["kind"], f["order"], f["money"])
            for f in report["findings"]
            if f["kind"] in ("transition_without_event", "event_without_transition")
            and f["order"] in (silent["order_id"], invented["order_id"])
        }
        assert outbox == {
            ("transition_without_event", silent["order_id"], False),
            ("event_without_transition", invented["order_id"], False),
        }
