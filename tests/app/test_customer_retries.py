"""`POST /customers` when Stripe's answer is lost or Stripe refuses, through the real SDK and the
emulator's injected faults, on both databases: one Stripe customer per `Idempotency-Key`, and no
row left behind by a refusal."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from tests.fixtures.service import Stack, backdate, extra_service, fault

CREATE_ROUTE = "POST /v1/customers"
ATTEMPTS = 3  # the stack's service: one call and the SDK's 2 retries
SHORT_TIMEOUT_SECONDS = 1
# Longer than the short timeout: Stripe finishes creating the customer after the service gave up.
SLOW_MS = 2500


@pytest.fixture(scope="module")
def impatient(stack: Stack) -> Iterator[httpx.Client]:
    """A second service on the stack's database and emulator that waits at most a second for
    Stripe and does not retry."""
    with extra_service(
        stack, STRIPE_TIMEOUT_SECONDS=str(SHORT_TIMEOUT_SECONDS), STRIPE_MAX_NETWORK_RETRIES="0"
    ) as api:
        yield api


def unique_email() -> str:
    return f"retry-{uuid.uuid4().hex[:12]}@example.com"


def on_stripe(stack: Stack, email: str) -> list[str]:
    """The ids of the customers Stripe holds with this email."""
    listed = stack.stripe.v1.customers.list(params={"email": email, "limit": 100})
    return [c.id for c in listed.data]


def rows(stack: Stack, email: str) -> list[dict[str, Any]]:
    return stack.rows("SELECT * FROM customers WHERE email = :e ORDER BY id", e=email)


def listed(stack: Stack, email: str) -> list[str]:
    response = stack.api.get("/customers", params={"email": email})
    assert response.status_code == 200, response.text
    return [c["id"] for c in response.json()["data"]]


def wait_for_stripe(stack: Stack, email: str, timeout: float = 10.0) -> list[str]:
    """Stripe's customers with this email, once the slow create has finished there."""
    deadline = time.monotonic() + timeout
    found = on_stripe(stack, email)
    while not found and time.monotonic() < deadline:
        time.sleep(0.1)
        found = on_stripe(stack, email)
    return found


def assert_unknown(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 503, response.text
    assert response.headers["retry-after"] == "1"
    error = dict(response.json()["error"])
    assert error["type"] == "api_error"
    assert error["code"] == "stripe_outcome_unknown"
    return error


def lose_the_answer(
    stack: Stack,
    body: dict[str, Any],
    headers: dict[str, str],
    *,
    slow_for: httpx.Client | None = None,
) -> httpx.Response:
    """POST /customers while Stripe creates the customer but its answer never arrives: every
    attempt's connection cut once Stripe has answered, or (`slow_for`) Stripe slower than that
    service waits."""
    if slow_for is None:
        with fault(stack, route=CREATE_ROUTE, drop="after", times=ATTEMPTS):
            return stack.api.post("/customers", json=body, headers=headers)
    with fault(stack, route=CREATE_ROUTE, latency_ms=SLOW_MS, times=1):
        started = time.monotonic()
        lost = slow_for.post("/customers", json=body, headers=headers)
        assert time.monotonic() - started < SLOW_MS / 1000
    return lost


class TestLostAnswer:
    """Stripe created the customer but the service never heard: 503 naming the row kept, and the
    retry with the same Idempotency-Key answers with that same customer."""

    @pytest.mark.parametrize("how", ["drop-after", "timeout"])
    def test_the_retry_answers_with_the_one_customer_stripe_made(
        self, stack: Stack, impatient: httpx.Client, how: str
    ) -> None:
        email = unique_email()
        body = {"email": email, "name": "Jane Doe", "metadata": {"user_id": "usr_1"}}
        headers = {"Idempotency-Key": f"lost-{email}"}

        slow_for = impatient if how == "timeout" else None
        error = assert_unknown(lose_the_answer(stack, body, headers, slow_for=slow_for))

        [made] = wait_for_stripe(stack, email)
        [pending] = rows(stack, email)
        assert error["customer_row"] == pending["id"]
        assert pending["stripe_id"] is None
        assert pending["idempotency_key"] == headers["Idempotency-Key"]
        assert listed(stack, email) == []

        retried = stack.api.post("/customers", json=body, headers=headers)

        assert retried.status_code == 200, retried.text
        assert retried.json()["id"] == made
        assert retried.json()["email"] == email
        assert on_stripe(stack, email) == [made]
        [row] = rows(stack, email)
        assert row["id"] == pending["id"]
        assert row["stripe_id"] == made
        assert listed(stack, email) == [made]

        again = stack.api.post("/customers", json=body, headers=headers)
        assert again.status_code == 200, again.text
        assert again.json()["id"] == made
        assert on_stripe(stack, email) == [made]
        assert len(rows(stack, email)) == 1

    def test_a_row_older_than_stripe_keeps_keys_is_not_resumed(self, stack: Stack) -> None:
        """Stripe keeps an idempotency key for 24 hours: past 23, resending the row's key could
        make a second customer, so the retry is refused and names the row."""
        email = unique_email()
        body = {"email": email}
        headers = {"Idempotency-Key": f"old-{email}"}
        error = assert_unknown(lose_the_answer(stack, body, headers))
        [made] = wait_for_stripe(stack, email)
        backdate(stack, "customers", error["customer_row"], created_at=timedelta(hours=24))

        retried = stack.api.post("/customers", json=body, headers=headers)

        assert retried.status_code == 409, retried.text
        refused = retried.json()["error"]
        assert (refused["code"], refused["customer_row"]) == (
            "customer_not_resumable",
            error["customer_row"],
        )
        assert on_stripe(stack, email) == [made]
        [row] = rows(stack, email)
        assert row["stripe_id"] is None

    def test_the_kept_key_cannot_make_another_customer(self, stack: Stack) -> None:
        email = unique_email()
        body = {"email": email, "name": "Jane Doe"}
        headers = {"Idempotency-Key": f"reused-{email}"}
        error = assert_unknown(lose_the_answer(stack, body, headers))

        other = stack.api.post(
            "/customers", json={**body, "description": "another"}, headers=headers
        )

        assert other.status_code == 400, other.text
        reused = other.json()["error"]
        assert reused["type"] == "idempotency_error"
        assert reused["code"] == "idempotency_key_reused"
        assert f"customer row {error['customer_row']}" in reused["message"]
        assert len(on_stripe(stack, email)) == 1
        [pending] = rows(stack, email)
        assert pending["id"] == error["customer_row"]
        assert pending["stripe_id"] is None

    def test_the_answered_key_cannot_make_another_customer(self, stack: Stack) -> None:
        email = unique_email()
        body = {"email": email, "name": "Jane Doe"}
        headers = {"Idempotency-Key": f"answered-{email}"}
        assert_unknown(lose_the_answer(stack, body, headers))
        retried = stack.api.post("/customers", json=body, headers=headers)
        assert retried.status_code == 200, retried.text

        other = stack.api.post(
            "/customers", json={**body, "description": "another"}, headers=headers
        )

        assert other.status_code == 400, other.text
        assert other.json()["error"]["code"] == "idempotency_key_reused"
        assert on_stripe(stack, email) == [retried.json()["id"]]
        [row] = rows(stack, email)
        assert row["stripe_id"] == retried.json()["id"]

    def test_once_the_middleware_forgets_the_key_the_row_answers(self, stack: Stack) -> None:
        email = unique_email()
        body = {"email": email, "name": "Jane Doe", "phone": "+15555550100"}
        headers = {"Idempotency-Key": f"forgotten-{email}"}
        created = stack.api.post("/customers", json=body, headers=headers)
        assert created.status_code == 200, created.text

        def forget() -> None:
            """As after its 24 hours: the middleware no longer holds the key's answer."""
            with stack.engine.begin() as connection:
                connection.execute(
                    text("DELETE FROM idempotency_keys WHERE key = :k"),
                    {"k": headers["Idempotency-Key"]},
                )

        forget()
        other = stack.api.post("/customers", json={**body, "name": "Other"}, headers=headers)
        forget()
        again = stack.api.post("/customers", json=body, headers=headers)

        assert other.status_code == 400, other.text
        assert other.json()["error"]["code"] == "idempotency_key_reused"
        assert "customer row" in other.json()["error"]["message"]
        assert again.status_code == 200, again.text
        assert again.headers.get("idempotent-replayed") is None
        assert again.json()["id"] == created.json()["id"]
        assert on_stripe(stack, email) == [created.json()["id"]]
        assert len(rows(stack, email)) == 1

    def test_without_a_key_the_row_is_kept_unlisted(self, stack: Stack) -> None:
        email = unique_email()
        body = {"email": email}

        error = assert_unknown(lose_the_answer(stack, body, headers={}))

        [pending] = rows(stack, email)
        assert error["customer_row"] == pending["id"]
        assert pending["stripe_id"] is None
        assert pending["idempotency_key"] is None
        assert len(on_stripe(stack, email)) == 1
        assert listed(stack, email) == []
        page = stack.api.get("/customers", params={"limit": 100})
        assert page.status_code == 200, page.text
        assert all(c["id"].startswith("cus_") for c in page.json()["data"])

    def test_the_next_customer_gets_its_own_stripe_key(self, stack: Stack) -> None:
        # The lost answer's row keyed a Stripe call: its id is never another request's.
        assert_unknown(lose_the_answer(stack, {"email": unique_email()}, headers={}))
        email = unique_email()

        created = stack.api.post("/customers", json={"email": email})

        assert created.status_code == 200, created.text
        assert on_stripe(stack, email) == [created.json()["id"]]
        [row] = rows(stack, email)
        assert row["stripe_id"] == created.json()["id"]


class TestLostAnswerOnChanges:
    """Update and attach key Stripe from the row's state, not from the request: a lost answer
    changes nothing locally, so the retry sends the same key and Stripe replays."""

    def test_an_update_retried_is_applied_once(self, stack: Stack) -> None:
        email = unique_email()
        created = stack.api.post("/customers", json={"email": email, "name": "Before"})
        assert created.status_code == 200, created.text
        customer_id = created.json()["id"]
        path = f"/customers/{customer_id}"

        route = f"POST /v1/customers/{customer_id}"
        with fault(stack, route=route, drop="after", times=ATTEMPTS):
            lost = stack.api.patch(path, json={"name": "After"})
        assert_unknown(lost)
        [row] = rows(stack, email)
        assert (row["name"], row["version"]) == ("Before", 0)

        retried = stack.api.patch(path, json={"name": "After"})

        assert retried.status_code == 200, retried.text
        assert retried.json()["name"] == "After"
        [row] = rows(stack, email)
        assert (row["name"], row["version"]) == ("After", 1)

    def test_an_attach_retried_attaches_one_payment_method(self, stack: Stack) -> None:
        created = stack.api.post("/customers", json={"email": unique_email()})
        assert created.status_code == 200, created.text
        customer_id = created.json()["id"]
        path = f"/customers/{customer_id}/payment-methods"
        body = {"payment_method": "pm_card_visa"}

        route = "POST /v1/payment_methods/pm_card_visa/attach"
        with fault(stack, route=route, drop="after", times=ATTEMPTS):
            lost = stack.api.post(path, json=body)
        assert_unknown(lost)

        retried = stack.api.post(path, json=body)

        assert retried.status_code == 200, retried.text
        attached = stack.stripe.v1.customers.payment_methods.list(customer_id).data
        assert [pm.id for pm in attached] == [retried.json()["id"]]


class TestRefused:
    """Stripe refused to create the customer: its refusal is the answer, and no row stays."""

    @pytest.mark.parametrize(
        ("params", "spec", "status", "code"),
        [
            (
                {"invoice_settings": {"default_payment_method": "pm_card_visa"}},
                None,
                400,
                "resource_missing",
            ),
            ({"payment_method": "pm_card_chargeDeclined"}, None, 402, "card_declined"),
            ({}, {"status": 400}, 400, None),
            ({}, {"status": 401}, 502, "stripe_auth_error"),
        ],
        ids=["invalid-param", "declined", "fault-400", "fault-401"],
    )
    def test_no_row_is_left(
        self,
        stack: Stack,
        params: dict[str, Any],
        spec: dict[str, Any] | None,
        status: int,
        code: str | None,
    ) -> None:
        email = unique_email()
        body = {"email": email, **params}
        headers = {"Idempotency-Key": f"refused-{email}"}

        if spec is None:
            response = stack.api.post("/customers", json=body, headers=headers)
        else:
            with fault(stack, route=CREATE_ROUTE, times=1, **spec):
                response = stack.api.post("/customers", json=body, headers=headers)

        assert response.status_code == status, response.text
        error = response.json()["error"]
        assert error["code"] == code
        assert "customer_row" not in error
        assert rows(stack, email) == []
        assert on_stripe(stack, email) == []
        assert listed(stack, email) == []
