"""`POST /checkout-sessions` when Stripe's answer is lost or Stripe refuses, through the real SDK
and the emulator's injected faults, on both databases: one order (payment mode) or one row
(subscription and setup modes) and one Stripe session per `Idempotency-Key`, and nothing left
behind by a refusal."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from tests.app.test_checkout_sessions import TSHIRT, new_customer
from tests.fixtures.service import Stack, backdate, fault

CREATE_ROUTE = "POST /v1/checkout/sessions"
ATTEMPTS = 3  # the stack's service: one call and the SDK's 2 retries
MODES = ["payment", "subscription"]


def new_mark() -> str:
    return f"checkout-retry-{uuid.uuid4().hex[:12]}"


def body_for(stack: Stack, mode: str, mark: str) -> dict[str, Any]:
    """A session to create, marked in its metadata so Stripe's sessions can be counted."""
    if mode == "payment":
        return {
            "mode": "payment",
            "line_items": [{"price": "price_123", "quantity": 1}, TSHIRT],
            "success_url": "https://example.com/success?session_id={CHECKOUT_SESSION_ID}",
            "cancel_url": "https://example.com/cancel",
            "metadata": {"mark": mark},
        }
    return {
        "mode": "subscription",
        "line_items": [{"price": "price_monthly", "quantity": 1}],
        "success_url": "https://example.com/success",
        "customer": new_customer(stack),
        "metadata": {"mark": mark},
    }


def on_stripe(stack: Stack, mark: str) -> list[str]:
    """The ids of the sessions Stripe holds with this mark."""
    listed = stack.stripe.v1.checkout.sessions.list(params={"limit": 100})
    return [
        s.id
        for s in listed.auto_paging_iter()
        if s.metadata is not None and s.metadata.to_dict().get("mark") == mark
    ]


def orders(stack: Stack, key: str) -> list[dict[str, Any]]:
    return stack.rows("SELECT * FROM orders WHERE idempotency_key = :k", k=key)


def kept(stack: Stack, key: str) -> list[dict[str, Any]]:
    """What the request with this key made: its order, or its order-less session row."""
    return orders(stack, key) or stack.rows(
        "SELECT * FROM checkout_sessions WHERE idempotency_key = :k", k=key
    )


def mirrors(stack: Stack, session_id: str) -> list[dict[str, Any]]:
    return stack.rows("SELECT * FROM checkout_sessions WHERE stripe_id = :id", id=session_id)


def forget(stack: Stack, key: str) -> None:
    """As after its 24 hours: the middleware no longer holds the key's answer."""
    with stack.engine.begin() as connection:
        connection.execute(text("DELETE FROM idempotency_keys WHERE key = :k"), {"k": key})


def assert_unknown(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 503, response.text
    assert response.headers["retry-after"] == "1"
    error = dict(response.json()["error"])
    assert error["code"] == "stripe_outcome_unknown", error
    return error


def assert_reused(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 400, response.text
    error = dict(response.json()["error"])
    assert (error["type"], error["code"]) == ("idempotency_error", "idempotency_key_reused")
    return error


def lose_the_answer(stack: Stack, body: dict[str, Any], headers: dict[str, str]) -> dict[str, Any]:
    """Create the session while Stripe makes it but its answer never arrives (every attempt's
    connection cut once Stripe has answered): the 503's error."""
    with fault(stack, route=CREATE_ROUTE, drop="after", times=ATTEMPTS):
        return assert_unknown(stack.api.post("/checkout-sessions", json=body, headers=headers))


def assert_kept(stack: Stack, mode: str, error: dict[str, Any], key: str) -> dict[str, Any]:
    """The order or row the lost answer left, named by the 503, with no session yet."""
    [made] = kept(stack, key)
    if mode == "payment":
        assert error["order_id"] == made["id"]
        assert "checkout_row" not in error
        assert made["status"] == "pending"
        assert made["checkout_session"] is None
    else:
        assert error["checkout_row"] == made["id"]
        assert "order_id" not in error
        assert made["stripe_id"] is None
    return made


class TestLostAnswer:
    """Stripe made the session but the service never heard: 503 naming what it kept, and the
    retry with the same Idempotency-Key answers with that same session."""

    @pytest.mark.parametrize("mode", MODES)
    def test_the_retry_answers_with_the_one_session_stripe_made(
        self, stack: Stack, mode: str
    ) -> None:
        mark = new_mark()
        body = body_for(stack, mode, mark)
        headers = {"Idempotency-Key": f"lost-{mark}"}

        error = lose_the_answer(stack, body, headers)

        pending = assert_kept(stack, mode, error, headers["Idempotency-Key"])
        [made] = on_stripe(stack, mark)
        assert mirrors(stack, made) == []

        retried = stack.api.post("/checkout-sessions", json=body, headers=headers)

        assert retried.status_code == 200, retried.text
        session = retried.json()
        assert session["id"] == made
        assert on_stripe(stack, mark) == [made]
        [after] = kept(stack, headers["Idempotency-Key"])
        assert after["id"] == pending["id"]
        [mirror] = mirrors(stack, made)
        if mode == "payment":
            assert session["order_id"] == pending["id"]
            assert session["client_reference_id"] == pending["id"]
            assert after["checkout_session"] == made
            assert after["status"] == "pending"
            assert mirror["order_id"] == pending["id"]
            order = stack.order(pending["id"])
            assert [h["to"] for h in order["history"]] == ["pending"]
        else:
            assert session["order_id"] is None
            assert mirror["id"] == pending["id"]
            assert mirror["mode"] == "subscription"

        again = stack.api.post("/checkout-sessions", json=body, headers=headers)
        assert again.status_code == 200, again.text
        assert again.json()["id"] == made
        assert on_stripe(stack, mark) == [made]
        assert len(kept(stack, headers["Idempotency-Key"])) == 1

    def test_a_resumed_order_is_touched_before_stripe_is_called(self, stack: Stack) -> None:
        # Reconcile abandons an unlinked pending order untouched for its minimum age: a retry
        # marks the order first, so it is left alone while the retry waits for Stripe.
        mark = new_mark()
        body = body_for(stack, "payment", mark)
        headers = {"Idempotency-Key": f"touched-{mark}"}
        error = lose_the_answer(stack, body, headers)
        backdate(stack, "orders", error["order_id"], updated_at=timedelta(hours=1))

        again = lose_the_answer(stack, body, headers)

        assert again["order_id"] == error["order_id"]
        order = stack.order(error["order_id"])
        assert (order["status"], order["checkout_session"]) == ("pending", None)
        touched = datetime.fromisoformat(order["updated_at"].replace("Z", "+00:00"))
        assert touched > datetime.now(UTC) - timedelta(minutes=5)
        [made] = on_stripe(stack, mark)

        retried = stack.api.post("/checkout-sessions", json=body, headers=headers)

        assert retried.status_code == 200, retried.text
        assert retried.json()["id"] == made
        assert on_stripe(stack, mark) == [made]

    def test_an_order_older_than_stripe_keeps_keys_is_not_resumed(self, stack: Stack) -> None:
        mark = new_mark()
        body = body_for(stack, "payment", mark)
        headers = {"Idempotency-Key": f"old-{mark}"}
        error = lose_the_answer(stack, body, headers)
        backdate(stack, "orders", error["order_id"], created_at=timedelta(hours=24))

        retried = stack.api.post("/checkout-sessions", json=body, headers=headers)

        assert retried.status_code == 409, retried.text
        refused = retried.json()["error"]
        assert (refused["code"], refused["order_id"]) == ("order_not_resumable", error["order_id"])
        [order] = orders(stack, headers["Idempotency-Key"])
        assert (order["status"], order["checkout_session"]) == ("pending", None)
        assert len(on_stripe(stack, mark)) == 1

    def test_the_next_request_gets_its_own_stripe_key(self, stack: Stack) -> None:
        # The kept row keyed a Stripe call: its id is never another request's.
        lose_the_answer(stack, body_for(stack, "subscription", new_mark()), headers={})
        mark = new_mark()

        created = stack.api.post("/checkout-sessions", json=body_for(stack, "subscription", mark))

        assert created.status_code == 200, created.text
        assert on_stripe(stack, mark) == [created.json()["id"]]


class TestKeyReused:
    """The same Idempotency-Key with another request: refused, nothing new made, and what the
    first request made is kept for its own retry."""

    def test_another_amount_is_refused_before_stripe(self, stack: Stack) -> None:
        mark = new_mark()
        body = body_for(stack, "payment", mark)
        headers = {"Idempotency-Key": f"amount-{mark}"}
        error = lose_the_answer(stack, body, headers)

        other = stack.api.post(
            "/checkout-sessions",
            json={**body, "line_items": [{"price": "price_123", "quantity": 3}]},
            headers=headers,
        )

        reused = assert_reused(other)
        assert f"order {error['order_id']}" in reused["message"]
        assert_kept(stack, "payment", error, headers["Idempotency-Key"])
        assert len(on_stripe(stack, mark)) == 1

        retried = stack.api.post("/checkout-sessions", json=body, headers=headers)
        assert retried.status_code == 200, retried.text
        assert on_stripe(stack, mark) == [retried.json()["id"]]

    @pytest.mark.parametrize("mode", MODES)
    def test_another_parameter_is_refused_by_stripes_key(self, stack: Stack, mode: str) -> None:
        # `success_url` is kept by Stripe only: Stripe refuses its key with other parameters.
        mark = new_mark()
        body = body_for(stack, mode, mark)
        headers = {"Idempotency-Key": f"param-{mark}"}
        error = lose_the_answer(stack, body, headers)

        other = stack.api.post(
            "/checkout-sessions",
            json={**body, "success_url": "https://example.com/elsewhere"},
            headers=headers,
        )

        assert_reused(other)
        assert_kept(stack, mode, error, headers["Idempotency-Key"])
        assert len(on_stripe(stack, mark)) == 1

    @pytest.mark.parametrize("mode", MODES)
    def test_once_the_middleware_forgets_the_key_the_session_answers(
        self, stack: Stack, mode: str
    ) -> None:
        mark = new_mark()
        body = body_for(stack, mode, mark)
        headers = {"Idempotency-Key": f"forgotten-{mark}"}
        created = stack.api.post("/checkout-sessions", json=body, headers=headers)
        assert created.status_code == 200, created.text

        forget(stack, headers["Idempotency-Key"])
        other = stack.api.post(
            "/checkout-sessions",
            json={**body, "cancel_url": "https://example.com/elsewhere"},
            headers=headers,
        )
        forget(stack, headers["Idempotency-Key"])
        again = stack.api.post("/checkout-sessions", json=body, headers=headers)

        assert_reused(other)
        assert again.status_code == 200, again.text
        assert again.headers.get("idempotent-replayed") is None
        assert again.json()["id"] == created.json()["id"]
        assert again.json()["order_id"] == created.json()["order_id"]
        assert on_stripe(stack, mark) == [created.json()["id"]]
        assert len(kept(stack, headers["Idempotency-Key"])) == 1

    def test_a_payment_intents_order_is_not_resumed(self, stack: Stack) -> None:
        # Orders keep their key whichever endpoint made them: one made by `POST /payment-intents`
        # is never given a checkout session.
        mark = new_mark()
        headers = {"Idempotency-Key": f"endpoint-{mark}"}
        intent = stack.api.post(
            "/payment-intents",
            json={"amount": 4500, "currency": "usd", "metadata": {"mark": mark}},
            headers=headers,
        )
        assert intent.status_code == 200, intent.text
        forget(stack, headers["Idempotency-Key"])

        other = stack.api.post(
            "/checkout-sessions", json=body_for(stack, "payment", mark), headers=headers
        )

        reused = assert_reused(other)
        assert f"order {intent.json()['order_id']} with another endpoint" in reused["message"]
        [order] = orders(stack, headers["Idempotency-Key"])
        assert order["checkout_session"] is None
        assert on_stripe(stack, mark) == []


class TestRefused:
    """Stripe refused to create the session: its refusal is the answer, and no order or row
    stays."""

    @pytest.mark.parametrize("mode", MODES)
    @pytest.mark.parametrize(
        ("change", "spec", "status", "code"),
        [
            ({"customer": "cus_nope"}, None, 400, "resource_missing"),
            ({}, {"status": 400}, 400, None),
            ({}, {"status": 401}, 502, "stripe_auth_error"),
        ],
        ids=["invalid-param", "fault-400", "fault-401"],
    )
    def test_nothing_is_left(
        self,
        stack: Stack,
        mode: str,
        change: dict[str, Any],
        spec: dict[str, Any] | None,
        status: int,
        code: str | None,
    ) -> None:
        mark = new_mark()
        body = {**body_for(stack, mode, mark), **change}
        headers = {"Idempotency-Key": f"refused-{mark}"}

        if spec is None:
            response = stack.api.post("/checkout-sessions", json=body, headers=headers)
        else:
            with fault(stack, route=CREATE_ROUTE, times=1, **spec):
                response = stack.api.post("/checkout-sessions", json=body, headers=headers)

        assert response.status_code == status, response.text
        error = response.json()["error"]
        assert error["code"] == code
        assert "order_id" not in error
        assert "checkout_row" not in error
        assert kept(stack, headers["Idempotency-Key"]) == []
        assert on_stripe(stack, mark) == []
