"""Every Stripe outcome is done, refused or unknown, and only a refusal may discard an order.

The double charge this guards against: Stripe slower than the service's timeout, the SDK's retry
with the same Stripe key answered 409 `idempotency_key_in_use` (the first request still running),
that 409 taken for a refusal, the order discarded, and the client's retry making a second order,
a second Stripe key and a second intent. Here the same retry resumes the same order.

Stripe's contract (docs.stripe.com/idempotency): a request that "conflicted with another that was
executing concurrently" saves no result, because the first is still executing: the 409 says
nothing of the outcome. The SDK retries 409s itself (stripe-python `_should_retry`).
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from tests.app.test_stripe_faults import (
    CREATE_ROUTE,
    assert_one_order_one_intent,
    create_body,
    marker,
    orders_described,
    stripe_intents_of,
)
from tests.fixtures.emulator import free_port
from tests.fixtures.service import API_KEY, Stack, extra_service, fault, start_service

STRIPE_ATTEMPTS = 3  # the service's default: one call and the SDK's 2 retries


@pytest.fixture(scope="module")
def impatient(stack: Stack) -> Iterator[httpx.Client]:
    """A second service process whose Stripe timeout (1 s, one SDK retry) is shorter than the
    emulator's injected latency."""
    with extra_service(stack, STRIPE_TIMEOUT_SECONDS="1", STRIPE_MAX_NETWORK_RETRIES="1") as api:
        yield api


def assert_unknown(response: httpx.Response) -> str:
    """A 503 `stripe_outcome_unknown` naming the order kept; that order's id."""
    assert response.status_code == 503, response.text
    assert response.headers["retry-after"] == "1"
    error = response.json()["error"]
    assert (error["type"], error["code"]) == ("api_error", "stripe_outcome_unknown")
    order_id: str = error["order_id"]
    return order_id


class TestStripeStillRunning:
    def test_a_409_in_use_after_a_timeout_keeps_the_order_and_the_retry_gets_its_intent(
        self, stack: Stack, impatient: httpx.Client
    ) -> None:
        since = int(time.time()) - 1
        description = marker()
        body = create_body(description)
        headers = {"Idempotency-Key": f"slow-{description}"}

        # The first attempt times out at 1 s; the SDK's retry finds the key in flight: 409.
        with fault(stack, route=CREATE_ROUTE, latency_ms=3000, times=1):
            unknown = impatient.post("/payment-intents", json=body, headers=headers)
            order_id = assert_unknown(unknown)
            [order] = orders_described(stack, description)
            assert (order["id"], order["status"], order["payment_intent"]) == (
                order_id,
                "pending",
                None,
            )
            assert order["idempotency_key"] == headers["Idempotency-Key"]
            # Still running at Stripe: the same key resumes the order and is told so again.
            assert_unknown(impatient.post("/payment-intents", json=body, headers=headers))

        deadline = time.monotonic() + 10
        while not stripe_intents_of(stack, order_id) and time.monotonic() < deadline:
            time.sleep(0.2)
        [made] = stripe_intents_of(stack, order_id)
        retried = impatient.post("/payment-intents", json=body, headers=headers)

        assert retried.status_code == 200, retried.text
        assert (retried.json()["id"], retried.json()["order_id"]) == (made.id, order_id)
        order = assert_one_order_one_intent(stack, description, since)
        assert order["payment_intent"] == made.id

    def test_409s_on_every_attempt_are_unknown_and_the_retry_makes_the_intent_once(
        self, stack: Stack
    ) -> None:
        since = int(time.time()) - 1
        description = marker()
        body = create_body(description)
        headers = {"Idempotency-Key": f"conflict-{description}"}

        with fault(stack, route=CREATE_ROUTE, status=409, times=STRIPE_ATTEMPTS):
            order_id = assert_unknown(
                stack.api.post("/payment-intents", json=body, headers=headers)
            )
        assert stripe_intents_of(stack, order_id) == []
        retried = stack.api.post("/payment-intents", json=body, headers=headers)

        assert retried.status_code == 200, retried.text
        assert retried.json()["order_id"] == order_id
        order = assert_one_order_one_intent(stack, description, since)
        assert order["payment_intent"] == retried.json()["id"]


class TestRefused:
    def test_stripe_refusing_the_services_key_discards_the_order(self, stack: Stack) -> None:
        description = marker()

        with fault(stack, route=CREATE_ROUTE, status=401, times=1):
            response = stack.api.post("/payment-intents", json=create_body(description))

        assert response.status_code == 502, response.text
        assert response.json()["error"]["code"] == "stripe_auth_error"
        assert orders_described(stack, description) == []


class TestKilledMidCreate:
    def test_a_retry_takes_over_at_once_from_a_process_killed_mid_create(
        self, stack: Stack
    ) -> None:
        if stack.backend != "postgres":
            pytest.skip("SQLite runs one process: its claims live by their lease (120 s)")
        since = int(time.time()) - 1
        description = marker()
        body = create_body(description)
        headers = {"Idempotency-Key": f"killed-{description}"}
        port = free_port()
        doomed = start_service(stack.database_url, stack.emulator.url, port)
        answers: list[Any] = []

        def first() -> None:
            try:
                answers.append(
                    httpx.post(
                        f"http://127.0.0.1:{port}/payment-intents",
                        json=body,
                        headers={**headers, "Authorization": f"Bearer {API_KEY}"},
                        timeout=30,
                    )
                )
            except httpx.HTTPError as exc:
                answers.append(exc)

        with fault(stack, route=CREATE_ROUTE, latency_ms=1500, times=1):
            thread = threading.Thread(target=first)
            thread.start()
            deadline = time.monotonic() + 10
            while not orders_described(stack, description) and time.monotonic() < deadline:
                time.sleep(0.05)
            os.kill(doomed.pid, signal.SIGKILL)
            doomed.wait()
            thread.join()
        [order] = orders_described(stack, description)
        claimed = stack.rows(
            "SELECT status_code FROM idempotency_keys WHERE key = :k", k=headers["Idempotency-Key"]
        )
        assert claimed == [{"status_code": None}]  # the dead process's claim is still there
        assert isinstance(answers[0], httpx.HTTPError)

        # The emulator finishes the dead request's intent: until then Stripe says it is in use.
        retries: list[httpx.Response] = []
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            retries.append(stack.api.post("/payment-intents", json=body, headers=headers))
            if retries[-1].status_code != 503:
                break
            time.sleep(0.3)

        assert [r.json()["error"]["code"] for r in retries[:-1]] == ["stripe_outcome_unknown"] * (
            len(retries) - 1
        )
        assert retries[-1].status_code == 200, retries[-1].text
        assert retries[-1].json()["order_id"] == order["id"]
        linked = assert_one_order_one_intent(stack, description, since)
        assert linked["payment_intent"] == retries[-1].json()["id"]


class TestOldOrders:
    def test_an_unlinked_order_older_than_stripe_keeps_keys_is_not_sent_again(
        self, stack: Stack
    ) -> None:
        # Stripe keeps an idempotency key's result "for at least 24 hours"
        # (docs.stripe.com/idempotency); a retry later could make a second intent.
        description = marker()
        body = create_body(description)
        headers = {"Idempotency-Key": f"old-{description}"}
        with fault(stack, route=CREATE_ROUTE, drop="before", times=STRIPE_ATTEMPTS):
            order_id = assert_unknown(
                stack.api.post("/payment-intents", json=body, headers=headers)
            )
        with stack.engine.begin() as connection:
            connection.execute(
                text("UPDATE orders SET created_at = :at WHERE id = :id"),
                {"at": datetime.now(UTC) - timedelta(hours=24), "id": order_id},
            )

        retried = stack.api.post("/payment-intents", json=body, headers=headers)

        assert retried.status_code == 409, retried.text
        error = retried.json()["error"]
        assert (error["code"], error["order_id"]) == ("order_not_resumable", order_id)
        assert stripe_intents_of(stack, order_id) == []
        [order] = orders_described(stack, description)
        assert (order["status"], order["payment_intent"]) == ("pending", None)


def forget_the_answer(stack: Stack, key: str) -> None:
    """As if the process had died after its transaction committed, before the answer was kept
    under the key: the claim in flight, its holder gone, its lease over."""
    with stack.engine.begin() as connection:
        connection.execute(
            text(
                "UPDATE idempotency_keys SET status_code = NULL, response = NULL, "
                "holder = NULL, created_at = :at WHERE key = :k"
            ),
            {"at": datetime.now(UTC) - timedelta(hours=1), "k": key},
        )


class TestAnswerLostAfterCommit:
    """Found by the soak: a confirm whose process was killed after it committed, before the
    answer was kept, was retried under a new Stripe key (the attempt counter had moved) and got
    Stripe's 400 `payment_intent_unexpected_state`. With an Idempotency-Key the Stripe key is
    derived from it, so the retry is the same Stripe request and gets the same answer."""

    @pytest.mark.parametrize(
        ("action", "create", "body", "status", "order_status"),
        [
            ("confirm", {}, {"payment_method": "pm_card_visa"}, "succeeded", "paid"),
            (
                "capture",
                {"capture_method": "manual", "confirm": True, "payment_method": "pm_card_visa"},
                {},
                "succeeded",
                "paid",
            ),
            ("cancel", {}, {}, "canceled", "canceled"),
        ],
    )
    def test_the_retry_is_the_same_stripe_request(
        self,
        stack: Stack,
        action: str,
        create: dict[str, Any],
        body: dict[str, Any],
        status: str,
        order_status: str,
    ) -> None:
        no_redirects = {"enabled": True, "allow_redirects": "never"}
        params = {"amount": 2000, "currency": "usd", "automatic_payment_methods": no_redirects}
        created = stack.api.post("/payment-intents", json={**params, **create}).json()
        headers = {"Idempotency-Key": f"{action}-{marker()}"}
        path = f"/payment-intents/{created['id']}/{action}"
        first = stack.api.post(path, json=body, headers=headers)
        assert first.json()["status"] == status, first.text
        forget_the_answer(stack, headers["Idempotency-Key"])

        retried = stack.api.post(path, json=body, headers=headers)

        assert retried.status_code == 200, retried.text
        assert (retried.json()["id"], retried.json()["status"]) == (created["id"], status)
        charges = stack.stripe.v1.charges.list(params={"payment_intent": created["id"]}).data
        assert len(charges) == (0 if action == "cancel" else 1)
        order = stack.wait_for_order(created["order_id"], order_status)
        moves = [entry["to"] for entry in order["history"]]
        assert moves.count(order_status) == 1, moves
