"""Races across two real service processes on one database: the same webhook delivered ten times
at once, the same Idempotency-Key sent twice at once, refunds and captures that compete for the
same money. An emulator latency fault keeps the first request in flight so the race is real."""

from __future__ import annotations

import hashlib
import json
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from app.auth import key_digest
from tests.app.test_webhooks import (
    confirm_on_stripe,
    create_intent,
    event,
    history,
    inbox,
    snapshot,
)
from tests.fixtures.service import API_KEY, Replica, Stack, sign_event


@pytest.fixture
def faults(stack: Stack) -> Iterator[Callable[..., None]]:
    """Inject emulator faults for the test; all are cleared after it."""

    def inject(**spec: Any) -> None:
        stack.controls("/_emulator/faults", spec)

    try:
        yield inject
    finally:
        httpx.delete(f"{stack.emulator.url}/_emulator/faults", timeout=10).raise_for_status()


def at_once(*calls: Callable[[], httpx.Response]) -> list[httpx.Response]:
    """Run the calls in parallel threads, released together."""
    barrier = threading.Barrier(len(calls))

    def run(call: Callable[[], httpx.Response]) -> httpx.Response:
        barrier.wait()
        return call()

    with ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(run, calls))


def clients(stack: Stack, replica: Replica) -> tuple[httpx.Client, httpx.Client]:
    return stack.api, replica.api


def paid_order(stack: Stack, amount: int = 2000) -> dict[str, Any]:
    intent = create_intent(stack, amount=amount, confirm=True, payment_method="pm_card_visa")
    stack.wait_for_order(intent["order_id"], "paid")
    return intent


def authorized_order(stack: Stack, amount: int = 5000) -> dict[str, Any]:
    intent = create_intent(
        stack, amount=amount, capture_method="manual", confirm=True, payment_method="pm_card_visa"
    )
    stack.wait_for_order(intent["order_id"], "authorized")
    return intent


class TestOneEventDeliveredTenTimesAtOnce:
    def test_one_inbox_row_one_change_one_history_entry(
        self, stack: Stack, replica: Replica
    ) -> None:
        stack.controls("/_emulator/faults", {"webhook": "drop"})
        try:
            intent = create_intent(stack)
            confirm_on_stripe(stack, intent["id"], "pm_card_visa")
            evt = event("payment_intent.succeeded", snapshot(stack, intent["id"]))
        finally:
            httpx.delete(f"{stack.emulator.url}/_emulator/faults", timeout=10).raise_for_status()
        payload = json.dumps(evt)
        headers = {"Content-Type": "application/json", "Stripe-Signature": sign_event(payload)}

        def deliver(url: str) -> Callable[[], httpx.Response]:
            return lambda: httpx.post(
                f"{url}/webhooks/stripe", content=payload, headers=headers, timeout=30
            )

        responses = at_once(*(deliver(stack.url if i % 2 else replica.url) for i in range(10)))

        assert [r.status_code for r in responses] == [200] * 10, [r.text for r in responses]
        receipts = [r.json() for r in responses]
        assert receipts.count({"received": True, "duplicate": True}) == 9
        assert receipts.count({"received": True, "duplicate": False, "outcome": "applied"}) == 1
        assert inbox(stack, evt["id"]) == [
            {
                "stripe_event_id": evt["id"],
                "type": "payment_intent.succeeded",
                "object_id": intent["id"],
                "outcome": "applied",
            }
        ]
        order = stack.order(intent["order_id"])
        assert order["status"] == "paid"
        assert history(order) == [(None, "pending"), ("pending", "paid")]
        assert [e["source"] for e in order["history"]].count(evt["id"]) == 1


class TestSameIdempotencyKeyAtOnce:
    BODY = {
        "amount": 2000,
        "currency": "usd",
        "automatic_payment_methods": {"enabled": True, "allow_redirects": "never"},
    }

    def orders_with(self, stack: Stack, description: str) -> list[dict[str, Any]]:
        return stack.rows("SELECT id FROM orders WHERE description = :d", d=description)

    def stripe_intents_with(self, stack: Stack, description: str) -> list[Any]:
        found = stack.stripe.v1.payment_intents.list(params={"limit": 100}).data
        return [pi for pi in found if pi.description == description]

    def test_one_order_one_intent_and_the_other_caller_retries(
        self, stack: Stack, replica: Replica, faults: Callable[..., None]
    ) -> None:
        # The first request stays in flight on Stripe for 1.5 s while the second arrives.
        faults(route="POST /v1/payment_intents", latency_ms=1500, times=1)
        description = f"race {secrets.token_hex(6)}"
        body = {**self.BODY, "description": description}
        key = {"Idempotency-Key": f"race-{secrets.token_hex(8)}"}
        first, second = at_once(
            lambda: stack.api.post("/payment-intents", json=body, headers=key),
            lambda: replica.api.post("/payment-intents", json=body, headers=key),
        )

        statuses = sorted([first.status_code, second.status_code])
        assert statuses in ([200, 200], [200, 409]), (first.text, second.text)
        winner = first if first.status_code == 200 else second
        for response in (first, second):
            if response.status_code == 409:
                error = response.json()["error"]
                assert error["type"] == "idempotency_error"
                assert error["code"] == "idempotency_key_in_use"
                assert response.headers["Retry-After"] == "1"
            else:
                assert response.json() == winner.json()
        # The caller that was told to retry gets the same response, replayed.
        for client in clients(stack, replica):
            retried = client.post("/payment-intents", json=body, headers=key)
            assert retried.status_code == 200, retried.text
            assert retried.json() == winner.json()
            assert retried.headers["Idempotent-Replayed"] == "true"

        intent = winner.json()
        assert self.orders_with(stack, description) == [{"id": intent["order_id"]}]
        assert [pi.id for pi in self.stripe_intents_with(stack, description)] == [intent["id"]]

    def test_an_abandoned_claim_is_taken_over_by_its_retry(
        self, stack: Stack, replica: Replica
    ) -> None:
        # A process killed mid-request leaves its claim in flight. Once older than the longest a
        # request can run, the same request takes it over instead of being refused for 24 h.
        description = f"abandoned {secrets.token_hex(6)}"
        body = json.dumps({**self.BODY, "description": description}).encode()
        fingerprint = hashlib.sha256(b"/payment-intents\n\n" + body).hexdigest()
        young, old = f"young-{secrets.token_hex(8)}", f"old-{secrets.token_hex(8)}"
        with stack.engine.begin() as connection:
            for key, age in ((young, timedelta(0)), (old, timedelta(minutes=10))):
                connection.execute(
                    text(
                        "INSERT INTO idempotency_keys (owner, key, fingerprint, created_at) "
                        "VALUES (:owner, :key, :fingerprint, :at)"
                    ),
                    {
                        "owner": key_digest(API_KEY),
                        "key": key,
                        "fingerprint": fingerprint,
                        "at": datetime.now(UTC) - age,
                    },
                )
        headers = {"Content-Type": "application/json"}

        still_running = stack.api.post(
            "/payment-intents", content=body, headers={**headers, "Idempotency-Key": young}
        )
        assert still_running.status_code == 409, still_running.text
        assert still_running.json()["error"]["code"] == "idempotency_key_in_use"
        assert self.orders_with(stack, description) == []

        taken_over = stack.api.post(
            "/payment-intents", content=body, headers={**headers, "Idempotency-Key": old}
        )
        assert taken_over.status_code == 200, taken_over.text
        replayed = replica.api.post(
            "/payment-intents", content=body, headers={**headers, "Idempotency-Key": old}
        )
        assert replayed.json() == taken_over.json()
        assert replayed.headers["Idempotent-Replayed"] == "true"
        assert self.orders_with(stack, description) == [{"id": taken_over.json()["order_id"]}]


class TestRefundRaces:
    def test_two_refunds_that_exceed_the_payment_one_is_refused(
        self, stack: Stack, replica: Replica, faults: Callable[..., None]
    ) -> None:
        intent = paid_order(stack, amount=2000)
        faults(route="POST /v1/refunds", latency_ms=800, times=1)
        body = {"payment_intent": intent["id"], "amount": 1500}
        responses = at_once(
            lambda: stack.api.post("/refunds", json=body),
            lambda: replica.api.post("/refunds", json=body),
        )

        assert sorted(r.status_code for r in responses) == [200, 400], [r.text for r in responses]
        refused = next(r for r in responses if r.status_code == 400).json()["error"]
        assert (refused["code"], refused["param"]) == ("amount_too_large", "amount")
        assert "left to refund" in refused["message"]  # ours, before Stripe was called
        refunded = next(r for r in responses if r.status_code == 200).json()
        order = stack.order(intent["order_id"])
        assert (order["status"], order["amount_refunded"]) == ("partially_refunded", 1500)
        charge = stack.stripe.v1.charges.retrieve(snapshot(stack, intent["id"])["latest_charge"])
        assert charge.amount_refunded == 1500
        on_stripe = stack.stripe.v1.refunds.list(params={"payment_intent": intent["id"]}).data
        assert [r.id for r in on_stripe] == [refunded["id"]]
        rows = stack.rows("SELECT stripe_id FROM refunds WHERE order_id = :o", o=order["id"])
        assert rows == [{"stripe_id": refunded["id"]}]

    def test_two_full_refunds_at_once_refund_once(
        self, stack: Stack, replica: Replica, faults: Callable[..., None]
    ) -> None:
        intent = paid_order(stack, amount=3000)
        faults(route="POST /v1/refunds", latency_ms=800, times=1)
        body = {"payment_intent": intent["id"]}
        responses = at_once(
            lambda: stack.api.post("/refunds", json=body),
            lambda: replica.api.post("/refunds", json=body),
        )

        assert sorted(r.status_code for r in responses) == [200, 409], [r.text for r in responses]
        refused = next(r for r in responses if r.status_code == 409).json()["error"]
        # The order is `refunded` by the time the second request holds it.
        assert refused["code"] == "order_not_refundable"
        order = stack.wait_for_order(intent["order_id"], "refunded")
        assert order["amount_refunded"] == 3000
        charge = stack.stripe.v1.charges.retrieve(snapshot(stack, intent["id"])["latest_charge"])
        assert (charge.amount_refunded, charge.refunded) == (3000, True)
        assert len(stack.stripe.v1.refunds.list(params={"payment_intent": intent["id"]}).data) == 1

    def test_many_small_refunds_never_exceed_the_payment(
        self, stack: Stack, replica: Replica
    ) -> None:
        intent = paid_order(stack, amount=1000)
        body = {"payment_intent": intent["id"], "amount": 300}
        calls = [
            (lambda c=client: c.post("/refunds", json=body))  # type: ignore[misc]
            for client in clients(stack, replica) * 3
        ]
        responses = at_once(*calls)

        codes = sorted(r.status_code for r in responses)
        assert codes == [200, 200, 200, 400, 400, 400], [r.text for r in responses]
        order = stack.wait_for_order(intent["order_id"], "partially_refunded")
        assert order["amount_refunded"] == 900
        charge = stack.stripe.v1.charges.retrieve(snapshot(stack, intent["id"])["latest_charge"])
        assert charge.amount_refunded == 900


class TestCaptureRaces:
    def test_two_captures_at_once_capture_once(
        self, stack: Stack, replica: Replica, faults: Callable[..., None]
    ) -> None:
        intent = authorized_order(stack, amount=5000)
        faults(route=f"POST /v1/payment_intents/{intent['id']}/capture", latency_ms=800, times=1)
        path = f"/payment-intents/{intent['id']}/capture"
        responses = at_once(
            lambda: stack.api.post(path, json={}),
            lambda: replica.api.post(path, json={}),
        )

        assert sorted(r.status_code for r in responses) == [200, 400], [r.text for r in responses]
        refused = next(r for r in responses if r.status_code == 400).json()["error"]
        assert refused["code"] == "payment_intent_unexpected_state"
        order = stack.wait_for_order(intent["order_id"], "paid")
        assert order["amount_received"] == 5000
        assert [h for h in history(order) if h[1] == "paid"] == [("authorized", "paid")]
        on_stripe = snapshot(stack, intent["id"])
        assert (on_stripe["status"], on_stripe["amount_received"]) == ("succeeded", 5000)

    def test_a_second_capture_is_refused(self, stack: Stack, replica: Replica) -> None:
        intent = authorized_order(stack, amount=5000)
        path = f"/payment-intents/{intent['id']}/capture"
        first = replica.api.post(path, json={"amount_to_capture": 3000})
        assert first.status_code == 200, first.text

        for client in clients(stack, replica):
            again = client.post(path, json={"amount_to_capture": 3000})
            assert again.status_code == 400, again.text
            assert again.json()["error"]["code"] == "payment_intent_unexpected_state"
        order = stack.wait_for_order(intent["order_id"], "paid")
        assert order["amount_received"] == 3000
        assert snapshot(stack, intent["id"])["amount_received"] == 3000


class TestNothingHeldWhileStripeAnswers:
    """A create waiting on a slow Stripe holds no database lock: its order is committed, and
    another writer (a webhook, a replica, another request) can take the row at once."""

    def test_the_order_is_committed_and_unlocked_during_the_stripe_call(
        self, stack: Stack, faults: Callable[..., None]
    ) -> None:
        faults(route="POST /v1/payment_intents", latency_ms=2000, times=1)
        description = f"in flight {secrets.token_hex(6)}"
        body = {"amount": 2000, "currency": "usd", "description": description}
        with ThreadPoolExecutor(1) as pool:
            pending = pool.submit(stack.api.post, "/payment-intents", json=body)
            rows: list[dict[str, Any]] = []
            while not rows and not pending.done():
                rows = stack.rows(
                    "SELECT id, status, payment_intent FROM orders WHERE description = :d",
                    d=description,
                )
            assert rows, "the order was not committed before Stripe answered"
            assert rows[0]["status"] == "pending"
            assert rows[0]["payment_intent"] is None
            time.sleep(0.5)  # the request is past its commit and waiting on Stripe (2 s)
            assert not pending.done()
            # Taken with no waiting: Postgres would refuse NOWAIT on a locked row, SQLite
            # `BEGIN IMMEDIATE` (busy timeout 0) while another connection holds its write lock.
            with stack.engine.connect() as connection:
                if stack.backend == "postgres":
                    locked = connection.execute(
                        text("SELECT id FROM orders WHERE id = :id FOR UPDATE NOWAIT"),
                        {"id": rows[0]["id"]},
                    ).all()
                    assert [row.id for row in locked] == [rows[0]["id"]]
                    connection.rollback()
                else:
                    connection.exec_driver_sql("PRAGMA busy_timeout = 0")
                    try:
                        connection.exec_driver_sql("BEGIN IMMEDIATE")
                        connection.exec_driver_sql("ROLLBACK")
                    finally:
                        # Not back into the shared pool with no busy timeout.
                        connection.invalidate()
            assert not pending.done()
            created = pending.result()
        assert created.status_code == 200, created.text
        intent = created.json()
        assert intent["order_id"] == rows[0]["id"]
        order = stack.rows(
            "SELECT status, payment_intent FROM orders WHERE id = :id", id=intent["order_id"]
        )
        assert order == [{"status": "pending", "payment_intent": intent["id"]}]
