"""`/payment-intents` through the whole stack: service, emulator, webhooks back, both databases."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest

from tests.fixtures.service import Stack

RETURN_URL = "https://example.com/order/complete"
SUFFIX = "statement_descriptor_suffix"


def marker() -> str:
    return f"test-{uuid.uuid4().hex[:12]}"


def new_customer(stack: Stack) -> str:
    return stack.stripe.v1.customers.create(params={"email": "pi@example.com"}).id


def create(stack: Stack, **params: Any) -> dict[str, Any]:
    body = {"amount": 2000, "currency": "usd", "automatic_payment_methods": {"enabled": True}}
    body.update(params)
    response = stack.api.post("/payment-intents", json=body)
    assert response.status_code == 200, response.text
    return dict(response.json())


def confirm(stack: Stack, intent_id: str, payment_method: str) -> Any:
    return stack.api.post(
        f"/payment-intents/{intent_id}/confirm",
        json={"payment_method": payment_method, "return_url": RETURN_URL},
    )


def orders_described(stack: Stack, description: str) -> list[dict[str, Any]]:
    return stack.rows("SELECT * FROM orders WHERE description = :d", d=description)


def stripe_intents_described(stack: Stack, description: str, since: int) -> list[Any]:
    listed = stack.stripe.v1.payment_intents.list(params={"created": {"gte": since}, "limit": 100})
    return [pi for pi in listed.auto_paging_iter() if pi.description == description]


def assert_error(response: Any, status: int, code: str | None, param: str | None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error = dict(response.json()["error"])
    assert error["code"] == code, error
    assert error["param"] == param, error
    return error


class TestCreate:
    def test_the_seeds_params_create_an_order_and_an_intent(self, stack: Stack) -> None:
        customer = new_customer(stack)
        intent = create(
            stack,
            customer=customer,
            description="Software subscription",
            metadata={"order_id": "order_12345", "product": "pro_subscription"},
            receipt_email="customer@example.com",
            statement_descriptor_suffix="PRO SUB",
        )

        assert intent["object"] == "payment_intent"
        assert intent["id"].startswith("pi_")
        assert intent["client_secret"].startswith(f"{intent['id']}_secret_")
        assert intent["amount"] == 2000
        assert intent["currency"] == "usd"
        assert intent["customer"] == customer
        assert intent["status"] == "requires_payment_method"
        assert intent["receipt_email"] == "customer@example.com"
        assert intent["statement_descriptor_suffix"] == "PRO SUB"
        order_id = intent["order_id"]
        assert order_id.startswith("ord_")
        # The shop's own metadata as given; our order id under its own key.
        assert intent["metadata"] == {
            "order_id": "order_12345",
            "product": "pro_subscription",
            "service_order_id": order_id,
        }
        on_stripe = stack.stripe.v1.payment_intents.retrieve(intent["id"])
        assert on_stripe.metadata.to_dict() == intent["metadata"]
        assert on_stripe.description == "Software subscription"

        [order] = stack.rows("SELECT * FROM orders WHERE id = :id", id=order_id)
        assert order["status"] == "pending"
        assert order["payment_intent"] == intent["id"]
        assert (order["amount"], order["currency"], order["customer"]) == (2000, "usd", customer)
        [mirror] = stack.rows(
            "SELECT * FROM payment_intents WHERE stripe_id = :id", id=intent["id"]
        )
        assert mirror["order_id"] == order_id
        assert mirror["status"] == "requires_payment_method"
        assert "client_secret" not in str(mirror["data"])

    def test_statement_descriptor_is_refused_before_stripe_is_called(self, stack: Stack) -> None:
        since = int(time.time()) - 1
        description = marker()
        response = stack.api.post(
            "/payment-intents",
            json={
                "amount": 2000,
                "currency": "usd",
                "automatic_payment_methods": {"enabled": True},
                "description": description,
                "metadata": {"order_id": "order_12345"},
                "statement_descriptor": "MYCOMPANY SUB",
            },
        )

        error = assert_error(response, 400, "parameter_invalid", "statement_descriptor")
        assert error["type"] == "invalid_request_error"
        assert "statement_descriptor_suffix" in error["message"]
        assert "card payments" in error["message"]
        assert orders_described(stack, description) == []
        assert stripe_intents_described(stack, description, since) == []

    @pytest.mark.parametrize(
        ("change", "code", "param"),
        [
            ({"amount": 0}, "parameter_invalid", "amount"),
            ({"amount": -100}, "parameter_invalid", "amount"),
            ({"amount": 10.5}, "parameter_invalid", "amount"),
            ({"amount": "2000"}, "parameter_invalid", "amount"),
            ({"amount": 100_000_000}, "parameter_invalid", "amount"),
            ({"amount": 49}, "amount_too_small", "amount"),
            ({"amount": 49, "currency": "jpy"}, "amount_too_small", "amount"),
            ({"currency": "xyz"}, "parameter_invalid", "currency"),
            ({"currency": "kwd", "amount": 1005}, "invalid_amount", "amount"),
            ({"metadata": {f"k{i}": "v" for i in range(51)}}, "parameter_invalid", "metadata"),
            ({"metadata": {f"k{i}": "v" for i in range(50)}}, "parameter_invalid", "metadata"),
            ({"metadata": {"k" * 41: "v"}}, "parameter_invalid", "metadata"),
            ({"metadata": {"k": "v" * 501}}, "parameter_invalid", "metadata"),
            (
                {"metadata": {"service_order_id": "x"}},
                "parameter_invalid",
                "metadata[service_order_id]",
            ),
            ({"color": "blue"}, "parameter_invalid", "color"),
            ({"capture_method": "later"}, "parameter_invalid", "capture_method"),
            (
                {"automatic_payment_methods": {"enabled": True, "x": 1}},
                "parameter_invalid",
                "automatic_payment_methods[x]",
            ),
            ({"statement_descriptor_suffix": "X" * 23}, "parameter_invalid", SUFFIX),
            ({"statement_descriptor_suffix": "1234"}, "parameter_invalid", SUFFIX),
            ({"statement_descriptor_suffix": "BAD*NAME"}, "parameter_invalid", SUFFIX),
        ],
    )  # fmt: skip
    def test_invalid_bodies_are_refused_and_nothing_is_written(
        self, stack: Stack, change: dict[str, Any], code: str, param: str
    ) -> None:
        since = int(time.time()) - 1
        description = marker()
        body = {"amount": 2000, "currency": "usd", "description": description, **change}

        response = stack.api.post("/payment-intents", json=body)

        error = assert_error(response, 400, code, param)
        assert error["type"] == "invalid_request_error"
        assert error["message"]
        assert orders_described(stack, description) == []
        assert stripe_intents_described(stack, description, since) == []

    def test_a_stripe_refusal_leaves_no_order(self, stack: Stack) -> None:
        description = marker()
        response = stack.api.post(
            "/payment-intents",
            json={
                "amount": 2000,
                "currency": "usd",
                "description": description,
                "customer": "cus_nope",
            },
        )

        assert_error(response, 404, "resource_missing", "customer")
        assert orders_described(stack, description) == []

    def test_a_validation_refusal_is_not_kept_so_the_corrected_retry_uses_the_key(
        self, stack: Stack
    ) -> None:
        # Stripe "saves results only after the execution of an endpoint begins. If incoming
        # parameters fail validation [...] no idempotent result is saved" (docs.stripe.com/
        # idempotency): a request refused before it called Stripe keeps nothing for its key.
        description = marker()
        headers = {"Idempotency-Key": f"refused-{description}"}
        refused_body = {"amount": 0, "currency": "usd", "description": description}

        refused = stack.api.post("/payment-intents", json=refused_body, headers=headers)
        again = stack.api.post("/payment-intents", json=refused_body, headers=headers)
        assert orders_described(stack, description) == []
        corrected = stack.api.post(
            "/payment-intents", json={**refused_body, "amount": 2000}, headers=headers
        )
        replayed = stack.api.post(
            "/payment-intents", json={**refused_body, "amount": 2000}, headers=headers
        )

        assert refused.status_code == again.status_code == 400, refused.text
        assert again.json() == refused.json()
        assert again.headers.get("idempotent-replayed") is None
        assert corrected.status_code == 200, corrected.text
        assert replayed.json()["id"] == corrected.json()["id"]
        assert replayed.headers.get("idempotent-replayed") == "true"
        [order] = orders_described(stack, description)
        assert order["amount"] == 2000
        assert order["payment_intent"] == corrected.json()["id"]

    def test_a_stripe_refusal_is_kept_for_its_idempotency_key(self, stack: Stack) -> None:
        # Stripe's own 400 comes after the endpoint started executing: kept, as Stripe keeps it.
        description = marker()
        headers = {"Idempotency-Key": f"stripe-refused-{description}"}
        body = {"amount": 2000, "currency": "usd", "description": description, "customer": "cus_x"}

        refused = stack.api.post("/payment-intents", json=body, headers=headers)
        again = stack.api.post("/payment-intents", json=body, headers=headers)
        other = stack.api.post("/payment-intents", json={**body, "customer": None}, headers=headers)

        assert refused.status_code == 404, refused.text
        assert again.json() == refused.json()
        assert again.headers.get("idempotent-replayed") == "true"
        assert_error(other, 400, "idempotency_key_reused", None)
        assert orders_described(stack, description) == []

    def test_idempotency_key_replays_one_order_and_one_intent(self, stack: Stack) -> None:
        since = int(time.time()) - 1
        description = marker()
        body = {"amount": 3100, "currency": "eur", "description": description}
        headers = {"Idempotency-Key": f"create-{description}"}

        first = stack.api.post("/payment-intents", json=body, headers=headers)
        second = stack.api.post("/payment-intents", json=body, headers=headers)

        assert first.status_code == second.status_code == 200
        assert second.json() == first.json()
        assert second.headers.get("idempotent-replayed") == "true"
        assert len(orders_described(stack, description)) == 1
        assert [pi.id for pi in stripe_intents_described(stack, description, since)] == [
            first.json()["id"]
        ]

    def test_requires_an_api_key(self, stack: Stack) -> None:
        response = stack.public.post("/payment-intents", json={"amount": 2000, "currency": "usd"})
        assert response.status_code == 401


class TestConfirm:
    def test_server_side_confirm_pays_the_order(self, stack: Stack) -> None:
        intent = create(stack, metadata={"order_id": marker()})

        response = confirm(stack, intent["id"], "pm_card_visa")

        assert response.status_code == 200, response.text
        confirmed = response.json()
        assert confirmed["status"] == "succeeded"
        assert confirmed["order_id"] == intent["order_id"]
        assert "client_secret" not in confirmed
        order = stack.wait_for_order(intent["order_id"], "paid")
        assert order["amount_received"] == 2000
        assert stack.stripe.v1.payment_intents.retrieve(intent["id"]).status == "succeeded"

    def test_create_with_confirm(self, stack: Stack) -> None:
        intent = create(stack, confirm=True, payment_method="pm_card_visa", return_url=RETURN_URL)

        assert intent["status"] == "succeeded"
        stack.wait_for_order(intent["order_id"], "paid")

    def test_three_d_secure_waits_for_the_customer(self, stack: Stack) -> None:
        intent = create(stack)

        response = confirm(stack, intent["id"], "pm_card_authenticationRequired")

        assert response.status_code == 200, response.text
        assert response.json()["status"] == "requires_action"
        assert response.json()["next_action"]["type"] == "redirect_to_url"
        stack.wait_for_order(intent["order_id"], "requires_action")

        authenticate = f"/_emulator/payment_intents/{intent['id']}/authenticate"
        stack.controls(authenticate, {"outcome": "succeed"})

        stack.wait_for_order(intent["order_id"], "paid")
        fresh = stack.api.get(f"/payment-intents/{intent['id']}")
        assert fresh.status_code == 200
        assert fresh.json()["status"] == "succeeded"

    def test_a_declined_card_fails_the_order_then_a_retry_pays_it(self, stack: Stack) -> None:
        intent = create(stack)

        declined = confirm(stack, intent["id"], "pm_card_chargeDeclined")

        error = assert_error(declined, 402, "card_declined", None)
        assert error["type"] == "card_error"
        assert error["decline_code"] == "generic_decline"
        assert error["payment_intent"] == intent["id"]
        assert error["order_id"] == intent["order_id"]
        [order] = stack.rows("SELECT * FROM orders WHERE id = :id", id=intent["order_id"])
        assert order["status"] == "payment_failed"
        assert order["attempts"] == 1

        retried = confirm(stack, intent["id"], "pm_card_visa")

        assert retried.status_code == 200, retried.text
        assert retried.json()["status"] == "succeeded"
        order = stack.wait_for_order(intent["order_id"], "paid")
        statuses = [entry["to"] for entry in order["history"]]
        assert statuses[:3] == ["pending", "payment_failed", "paid"]

    def test_a_decline_at_create_keeps_the_order(self, stack: Stack) -> None:
        description = marker()
        response = stack.api.post(
            "/payment-intents",
            json={
                "amount": 2000,
                "currency": "usd",
                "description": description,
                "confirm": True,
                "payment_method": "pm_card_chargeDeclinedInsufficientFunds",
                "automatic_payment_methods": {"enabled": True, "allow_redirects": "never"},
            },
        )

        error = assert_error(response, 402, "card_declined", None)
        assert error["decline_code"] == "insufficient_funds"
        [order] = orders_described(stack, description)
        assert order["id"] == error["order_id"]
        assert order["status"] == "payment_failed"
        assert order["payment_intent"] == error["payment_intent"]

        retried = confirm(stack, error["payment_intent"], "pm_card_visa")
        assert retried.status_code == 200, retried.text
        stack.wait_for_order(order["id"], "paid")

    def test_stripes_refusal_is_passed_through(self, stack: Stack) -> None:
        intent = create(stack)

        response = stack.api.post(
            f"/payment-intents/{intent['id']}/confirm", json={"payment_method": "pm_card_visa"}
        )

        error = assert_error(response, 400, None, None)
        assert "return_url" in error["message"]
        # The attempt is spent, so the corrected retry is a new Stripe request.
        assert confirm(stack, intent["id"], "pm_card_visa").status_code == 200

    def test_unknown_intent_is_404(self, stack: Stack) -> None:
        response = confirm(stack, "pi_unknown", "pm_card_visa")
        assert_error(response, 404, "resource_missing", "id")


class TestCaptureAndCancel:
    def test_manual_capture_of_4500_of_5000(self, stack: Stack) -> None:
        intent = create(stack, amount=5000, capture_method="manual")
        confirmed = confirm(stack, intent["id"], "pm_card_visa")
        assert confirmed.json()["status"] == "requires_capture"
        stack.wait_for_order(intent["order_id"], "authorized")

        too_much = stack.api.post(
            f"/payment-intents/{intent['id']}/capture", json={"amount_to_capture": 5001}
        )
        assert_error(too_much, 400, "amount_too_large", "amount_to_capture")

        response = stack.api.post(
            f"/payment-intents/{intent['id']}/capture", json={"amount_to_capture": 4500}
        )

        assert response.status_code == 200, response.text
        captured = response.json()
        assert captured["status"] == "succeeded"
        assert captured["amount_received"] == 4500
        order = stack.wait_for_order(intent["order_id"], "paid")
        assert order["amount_received"] == 4500

        again = stack.api.post(
            f"/payment-intents/{intent['id']}/capture", json={"amount_to_capture": 4500}
        )
        error = assert_error(again, 400, "payment_intent_unexpected_state", None)
        assert "could not be captured" in error["message"]

    def test_cancel_with_reason(self, stack: Stack) -> None:
        intent = create(stack)

        response = stack.api.post(
            f"/payment-intents/{intent['id']}/cancel",
            json={"cancellation_reason": "requested_by_customer"},
        )

        assert response.status_code == 200, response.text
        assert response.json()["status"] == "canceled"
        assert response.json()["cancellation_reason"] == "requested_by_customer"
        order = stack.wait_for_order(intent["order_id"], "canceled")
        assert order["history"][-1]["to"] == "canceled"

    def test_cancel_reason_must_be_stripes(self, stack: Stack) -> None:
        intent = create(stack)
        response = stack.api.post(
            f"/payment-intents/{intent['id']}/cancel", json={"cancellation_reason": "bored"}
        )
        assert_error(response, 400, "parameter_invalid", "cancellation_reason")


class TestRead:
    def test_retrieve_is_fresh_from_stripe(self, stack: Stack) -> None:
        intent = create(stack)
        stack.stripe.v1.payment_intents.confirm(
            intent["id"], params={"payment_method": "pm_card_visa", "return_url": RETURN_URL}
        )

        response = stack.api.get(f"/payment-intents/{intent['id']}")

        assert response.status_code == 200
        assert response.json()["status"] == "succeeded"
        assert response.json()["order_id"] == intent["order_id"]
        assert "client_secret" not in response.json()
        stack.wait_for_order(intent["order_id"], "paid")

    def test_list_filters_by_customer_status_and_order(self, stack: Stack) -> None:
        customer = new_customer(stack)
        first = create(stack, customer=customer)
        second = create(stack, customer=customer)
        third = create(stack, customer=customer)
        assert confirm(stack, second["id"], "pm_card_visa").status_code == 200

        def ids(**params: Any) -> list[str]:
            response = stack.api.get("/payment-intents", params=params)
            assert response.status_code == 200, response.text
            assert response.json()["object"] == "list"
            return [pi["id"] for pi in response.json()["data"]]

        assert ids(customer=customer) == [third["id"], second["id"], first["id"]]
        assert ids(customer=customer, status="succeeded") == [second["id"]]
        assert ids(order=first["order_id"]) == [first["id"]]
        page = stack.api.get("/payment-intents", params={"customer": customer, "limit": 2}).json()
        assert page["has_more"] is True
        assert [pi["id"] for pi in page["data"]] == [third["id"], second["id"]]
        assert all("client_secret" not in pi for pi in page["data"])
        assert ids(customer=customer, starting_after=second["id"]) == [first["id"]]

    def test_list_refuses_a_bad_status(self, stack: Stack) -> None:
        response = stack.api.get("/payment-intents", params={"status": "done"})
        assert_error(response, 400, "parameter_invalid", "status")
