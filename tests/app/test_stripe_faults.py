"""Stripe failing under the service: 500s, dropped connections, lost answers, 429s and declines,
each injected for real through the emulator's `/_emulator/faults`, on both databases.

The service runs with the SDK's `max_network_retries` at its default, 2 (3 attempts per call),
and 2 retries of a 429 (`STRIPE_RATE_LIMIT_RETRIES`)."""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx
import pytest

from tests.fixtures.service import Stack, fault

CREATE_ROUTE = "POST /v1/payment_intents"
ATTEMPTS = 3  # one call and the SDK's 2 retries
RATE_LIMIT_ATTEMPTS = 3  # one call and the gateway's 2 retries of a 429
RETURN_URL = "https://example.com/order/complete"


def marker() -> str:
    return f"fault-{uuid.uuid4().hex[:12]}"


def active(stack: Stack, fault_id: str) -> dict[str, Any] | None:
    """The fault as the emulator holds it now (its `times` left), None once used up."""
    listed = httpx.get(f"{stack.emulator.url}/_emulator/faults", timeout=10).json()["data"]
    return next((f for f in listed if f["id"] == fault_id), None)


def create_body(description: str, **extra: Any) -> dict[str, Any]:
    return {
        "amount": 2000,
        "currency": "usd",
        "description": description,
        "automatic_payment_methods": {"enabled": True},
        **extra,
    }


def stripe_intents_of(stack: Stack, order_id: str) -> list[Any]:
    """The payment intents Stripe holds for one of our orders."""
    found = stack.stripe.v1.payment_intents.search(
        params={"query": f"metadata['service_order_id']:'{order_id}'", "limit": 100}
    )
    return list(found.data)


def stripe_intents_described(stack: Stack, description: str, since: int) -> list[Any]:
    listed = stack.stripe.v1.payment_intents.list(params={"created": {"gte": since}, "limit": 100})
    return [pi for pi in listed.auto_paging_iter() if pi.description == description]


def orders_described(stack: Stack, description: str) -> list[dict[str, Any]]:
    return stack.rows("SELECT * FROM orders WHERE description = :d", d=description)


def assert_one_order_one_intent(stack: Stack, description: str, since: int) -> dict[str, Any]:
    [order] = orders_described(stack, description)
    [intent] = stripe_intents_of(stack, order["id"])
    assert [pi.id for pi in stripe_intents_described(stack, description, since)] == [intent.id]
    return order


class TestRetriedCreate:
    """A 500 or a dropped connection on create: the SDK retries with the same Stripe
    idempotency key, and the caller gets one answer for one order and one intent."""

    @pytest.mark.parametrize(
        "spec",
        [
            {"status": 500, "times": 1},
            {"status": 500, "times": ATTEMPTS - 1},
            {"drop": "before", "times": 1},
            {"drop": "after", "times": 1},
            {"drop": "after", "times": ATTEMPTS - 1},
        ],
        ids=["500-once", "500-twice", "drop-before", "drop-after", "drop-after-twice"],
    )
    def test_one_order_one_intent_one_answer(self, stack: Stack, spec: dict[str, Any]) -> None:
        since = int(time.time()) - 1
        description = marker()

        with fault(stack, route=CREATE_ROUTE, **spec) as injected:
            response = stack.api.post("/payment-intents", json=create_body(description))
            assert active(stack, injected["id"]) is None  # every faulted attempt happened

        assert response.status_code == 200, response.text
        created = response.json()
        order = assert_one_order_one_intent(stack, description, since)
        assert created["order_id"] == order["id"]
        assert order["payment_intent"] == created["id"]
        assert created["client_secret"].startswith(created["id"])
        assert stack.order(order["id"])["status"] == "pending"


class TestLostAnswer:
    """Stripe created the intent but every answer was lost: the outcome is unknown (503, the
    order named), the order is kept, and the retry with the same Idempotency-Key links the
    intent Stripe made instead of making a second one."""

    def test_503_unknown_then_the_retry_links_the_same_intent(self, stack: Stack) -> None:
        since = int(time.time()) - 1
        description = marker()
        body = create_body(description)
        headers = {"Idempotency-Key": f"lost-{description}"}

        # Its `payment_intent.created` webhook is lost too: only the retry can link it.
        with (
            fault(stack, route=CREATE_ROUTE, drop="after", times=ATTEMPTS + 2),
            fault(stack, webhook="drop", event_type="payment_intent.created", times=1),
        ):
            lost = stack.api.post("/payment-intents", json=body, headers=headers)

            assert lost.status_code == 503, lost.text
            assert lost.headers["retry-after"] == "1"
            error = lost.json()["error"]
            assert error["type"] == "api_error"
            assert error["code"] == "stripe_outcome_unknown"
            order_id = error["order_id"]
            [order] = orders_described(stack, description)
            assert order["id"] == order_id
            assert order["status"] == "pending"
            assert order["payment_intent"] is None
            assert order["idempotency_key"] == headers["Idempotency-Key"]
            # Stripe did create it, once.
            [made] = stripe_intents_of(stack, order_id)

        retried = stack.api.post("/payment-intents", json=body, headers=headers)

        assert retried.status_code == 200, retried.text
        assert retried.json()["id"] == made.id
        assert retried.json()["order_id"] == order_id
        order = assert_one_order_one_intent(stack, description, since)
        assert order["payment_intent"] == made.id
        assert stack.order(order_id)["payment_intent"] == made.id

        again = stack.api.post("/payment-intents", json=body, headers=headers)
        assert again.status_code == 200
        assert again.json() == retried.json()
        assert again.headers.get("idempotent-replayed") == "true"
        assert_one_order_one_intent(stack, description, since)

    def test_the_key_cannot_be_reused_for_another_payment(self, stack: Stack) -> None:
        description = marker()
        headers = {"Idempotency-Key": f"lost-{description}"}
        with fault(stack, route=CREATE_ROUTE, drop="after", times=ATTEMPTS):
            lost = stack.api.post(
                "/payment-intents", json=create_body(description), headers=headers
            )
        assert lost.status_code == 503, lost.text
        order_id = lost.json()["error"]["order_id"]

        other = stack.api.post(
            "/payment-intents", json=create_body(description, amount=9900), headers=headers
        )

        assert other.status_code == 400, other.text
        error = other.json()["error"]
        assert error["type"] == "idempotency_error"
        assert error["code"] == "idempotency_key_reused"
        assert order_id in error["message"]
        [order] = orders_described(stack, description)
        assert order["id"] == order_id
        assert order["amount"] == 2000
        assert len(stripe_intents_of(stack, order_id)) == 1

    def test_without_a_key_the_order_is_kept_and_named(self, stack: Stack) -> None:
        description = marker()
        with fault(stack, route=CREATE_ROUTE, drop="after", times=ATTEMPTS):
            lost = stack.api.post("/payment-intents", json=create_body(description))

        assert lost.status_code == 503, lost.text
        order_id = lost.json()["error"]["order_id"]
        [order] = orders_described(stack, description)
        assert order["id"] == order_id
        [made] = stripe_intents_of(stack, order_id)
        # Stripe's `payment_intent.created` webhook names the order: it links the intent.
        deadline = time.monotonic() + 10
        while stack.order(order_id)["payment_intent"] is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert stack.order(order_id)["payment_intent"] == made.id
        assert stack.order(order_id)["status"] == "pending"

    def test_a_stripe_refusal_still_leaves_no_order(self, stack: Stack) -> None:
        description = marker()
        headers = {"Idempotency-Key": f"refused-{description}"}

        response = stack.api.post(
            "/payment-intents",
            json=create_body(description, customer="cus_missing"),
            headers=headers,
        )

        assert response.status_code == 404, response.text
        assert response.json()["error"]["param"] == "customer"
        assert orders_described(stack, description) == []
        assert (
            stack.rows(
                "SELECT * FROM orders WHERE idempotency_key = :k", k=headers["Idempotency-Key"]
            )
            == []
        )


class TestRateLimited:
    """Stripe's 429: waited out (Retry-After, capped) a bounded number of times, then a 503 with
    Retry-After to the caller."""

    def test_one_429_is_waited_out(self, stack: Stack) -> None:
        since = int(time.time()) - 1
        description = marker()

        with fault(stack, route=CREATE_ROUTE, status=429, retry_after=1, times=1) as injected:
            started = time.monotonic()
            response = stack.api.post("/payment-intents", json=create_body(description))
            elapsed = time.monotonic() - started
            assert active(stack, injected["id"]) is None

        assert response.status_code == 200, response.text
        assert elapsed >= 1.0
        order = assert_one_order_one_intent(stack, description, since)
        assert order["payment_intent"] == response.json()["id"]

    def test_a_lasting_429_is_a_503_after_a_bounded_number_of_attempts(self, stack: Stack) -> None:
        description = marker()
        times = 20

        with fault(stack, route=CREATE_ROUTE, status=429, retry_after=1, times=times) as injected:
            started = time.monotonic()
            response = stack.api.post("/payment-intents", json=create_body(description))
            elapsed = time.monotonic() - started
            left = active(stack, injected["id"])

        assert response.status_code == 503, response.text
        assert response.headers["retry-after"] == "1"
        error = response.json()["error"]
        assert error["type"] == "api_error"
        assert error["code"] == "stripe_unavailable"
        # Exactly one call and its 2 retries reached Stripe, each after Retry-After.
        assert left is not None
        assert times - left["times"] == RATE_LIMIT_ATTEMPTS
        assert elapsed >= RATE_LIMIT_ATTEMPTS - 1
        [order] = orders_described(stack, description)
        assert order["id"] == error["order_id"]
        assert order["payment_intent"] is None
        assert stripe_intents_of(stack, order["id"]) == []

    def test_a_429_on_a_read_is_retried_too(self, stack: Stack) -> None:
        created = stack.api.post("/payment-intents", json=create_body(marker()))
        assert created.status_code == 200, created.text
        intent_id = created.json()["id"]

        with fault(
            stack, route=f"GET /v1/payment_intents/{intent_id}", status=429, retry_after=1, times=2
        ) as injected:
            response = stack.api.get(f"/payment-intents/{intent_id}")
            assert active(stack, injected["id"]) is None

        assert response.status_code == 200, response.text
        assert response.json()["id"] == intent_id


class TestDeclineThenAnotherCard:
    """A declined card, then another card on the same order: a new attempt with its own Stripe
    idempotency key, so Stripe's stored decline is not replayed to it."""

    def test_declined_then_paid_with_another_card(self, stack: Stack) -> None:
        description = marker()
        created = stack.api.post("/payment-intents", json=create_body(description))
        assert created.status_code == 200, created.text
        intent_id, order_id = created.json()["id"], created.json()["order_id"]

        declined = stack.api.post(
            f"/payment-intents/{intent_id}/confirm",
            json={"payment_method": "pm_card_chargeDeclined", "return_url": RETURN_URL},
        )

        assert declined.status_code == 402, declined.text
        error = declined.json()["error"]
        assert error["type"] == "card_error"
        assert error["code"] == "card_declined"
        assert error["order_id"] == order_id
        assert stack.wait_for_order(order_id, "payment_failed")["amount_received"] == 0

        paid = stack.api.post(
            f"/payment-intents/{intent_id}/confirm",
            json={"payment_method": "pm_card_visa", "return_url": RETURN_URL},
        )

        assert paid.status_code == 200, paid.text
        assert paid.json()["status"] == "succeeded"
        order = stack.wait_for_order(order_id, "paid")
        assert order["amount_received"] == 2000
        assert [entry["to"] for entry in order["history"]][:3] == [
            "pending",
            "payment_failed",
            "paid",
        ]
        [row] = orders_described(stack, description)
        assert row["attempts"] == 2
        [intent] = stripe_intents_of(stack, order_id)
        assert intent.id == intent_id
        assert intent.status == "succeeded"
