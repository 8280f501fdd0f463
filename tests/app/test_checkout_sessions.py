"""`/checkout-sessions` through the whole stack: service, emulator, webhooks back, both
databases. Sessions are paid with the emulator's control, as a customer on the hosted page."""

from __future__ import annotations

import time
import uuid
from typing import Any

from tests.fixtures.service import Stack

TSHIRT = {
    "price_data": {
        "currency": "usd",
        "unit_amount": 2000,
        "product_data": {
            "name": "T-shirt",
            "description": "Comfortable cotton t-shirt",
            "images": ["https://example.com/tshirt.png"],
        },
    },
    "quantity": 2,
}
SEED_PAYMENT = {
    "line_items": [{"price": "price_123", "quantity": 1}, TSHIRT],
    "mode": "payment",
    "success_url": "https://example.com/success?session_id={CHECKOUT_SESSION_ID}",
    "cancel_url": "https://example.com/cancel",
    "customer_email": "customer@example.com",
    "allow_promotion_codes": True,
    "billing_address_collection": "required",
    "phone_number_collection": {"enabled": True},
    "metadata": {"order_id": "order_12345"},
}


def new_customer(stack: Stack) -> str:
    email = f"checkout-{uuid.uuid4().hex[:12]}@example.com"
    response = stack.api.post("/customers", json={"email": email, "name": "Jane Doe"})
    assert response.status_code == 200, response.text
    return str(response.json()["id"])


def create(stack: Stack, body: dict[str, Any]) -> dict[str, Any]:
    response = stack.api.post("/checkout-sessions", json=body)
    assert response.status_code == 200, response.text
    return dict(response.json())


def complete(stack: Stack, session_id: str, payment_method: str = "pm_card_visa") -> None:
    stack.controls(
        f"/_emulator/checkout/sessions/{session_id}/complete", {"payment_method": payment_method}
    )


def mirror(stack: Stack, session_id: str) -> dict[str, Any]:
    rows = stack.rows("SELECT * FROM checkout_sessions WHERE stripe_id = :id", id=session_id)
    assert len(rows) == 1, rows
    return rows[0]


def counts(stack: Stack) -> tuple[int, int]:
    orders = stack.rows("SELECT count(*) AS n FROM orders")[0]["n"]
    sessions = stack.rows("SELECT count(*) AS n FROM checkout_sessions")[0]["n"]
    return orders, sessions


def assert_error(response: Any, status: int, code: str | None, param: str | None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error = dict(response.json()["error"])
    assert error["code"] == code, error
    assert error["param"] == param, error
    return error


class TestPaymentMode:
    def test_the_seeds_session_creates_an_order_for_the_line_items(self, stack: Stack) -> None:
        price = stack.stripe.v1.prices.retrieve("price_123")
        assert price.unit_amount is not None
        expected = price.unit_amount + 2 * 2000

        session = create(stack, SEED_PAYMENT)

        assert session["object"] == "checkout.session"
        assert session["id"].startswith("cs_")
        assert session["mode"] == "payment"
        assert session["status"] == "open"
        assert session["url"]
        assert session["amount_total"] == expected
        assert session["currency"] == "usd"
        assert session["customer_email"] == "customer@example.com"
        assert session["allow_promotion_codes"] is True
        assert session["billing_address_collection"] == "required"
        assert session["phone_number_collection"] == {"enabled": True}
        order_id = session["order_id"]
        assert order_id.startswith("ord_")
        assert session["client_reference_id"] == order_id
        # The shop's own `order_id` stays theirs; ours has its own key.
        assert session["metadata"] == {"order_id": "order_12345", "service_order_id": order_id}
        order = stack.order(order_id)
        assert order["status"] == "pending"
        assert order["amount"] == expected
        assert order["currency"] == "usd"
        assert order["checkout_session"] == session["id"]
        assert order["metadata"] == {"order_id": "order_12345"}
        row = mirror(stack, session["id"])
        assert row["order_id"] == order_id
        assert row["mode"] == "payment"
        assert row["amount_total"] == expected

    def test_paying_the_session_makes_the_order_paid(self, stack: Stack) -> None:
        session = create(stack, SEED_PAYMENT)

        complete(stack, session["id"])

        order = stack.wait_for_order(session["order_id"], "paid")
        assert order["amount_received"] == session["amount_total"]
        assert order["payment_intent"].startswith("pi_")
        intent = stack.stripe.v1.payment_intents.retrieve(order["payment_intent"])
        assert intent.metadata["service_order_id"] == session["order_id"]

    def test_retrieve_expands_line_items_customer_and_payment_intent(self, stack: Stack) -> None:
        customer = new_customer(stack)
        session = create(
            stack,
            {
                **{k: v for k, v in SEED_PAYMENT.items() if k != "customer_email"},
                "customer": customer,
                "payment_intent_data": {
                    "description": "Seed checkout",
                    "metadata": {"channel": "web"},
                },
            },
        )
        complete(stack, session["id"])
        stack.wait_for_order(session["order_id"], "paid")

        response = stack.api.get(
            f"/checkout-sessions/{session['id']}",
            params=[
                ("expand", "line_items"),
                ("expand", "customer"),
                ("expand", "payment_intent"),
            ],
        )

        assert response.status_code == 200, response.text
        found = response.json()
        assert found["order_id"] == session["order_id"]
        assert found["status"] == "complete"
        assert found["payment_status"] == "paid"
        items = found["line_items"]["data"]
        assert [(i["price"]["id"] == "price_123", i["quantity"]) for i in items] == [
            (True, 1),
            (False, 2),
        ]
        assert items[1]["description"] == "T-shirt"
        assert found["customer"]["id"] == customer
        intent = found["payment_intent"]
        assert intent["status"] == "succeeded"
        assert intent["description"] == "Seed checkout"
        assert intent["metadata"] == {"channel": "web", "service_order_id": session["order_id"]}
        row = mirror(stack, session["id"])
        assert row["status"] == "complete"
        assert row["payment_intent"] == intent["id"]
        assert stack.order(session["order_id"])["payment_intent"] == intent["id"]

    def test_manual_capture_passes_through_payment_intent_data(self, stack: Stack) -> None:
        session = create(
            stack,
            {
                "mode": "payment",
                "line_items": [TSHIRT],
                "success_url": "https://example.com/success",
                "payment_intent_data": {"capture_method": "manual"},
            },
        )

        complete(stack, session["id"])

        order = stack.wait_for_order(session["order_id"], "authorized")
        intent = stack.stripe.v1.payment_intents.retrieve(order["payment_intent"])
        assert intent.capture_method == "manual"
        assert intent.status == "requires_capture"

    def test_expire_makes_the_order_expired(self, stack: Stack) -> None:
        session = create(stack, SEED_PAYMENT)

        response = stack.api.post(f"/checkout-sessions/{session['id']}/expire")

        assert response.status_code == 200, response.text
        assert response.json()["status"] == "expired"
        assert response.json()["order_id"] == session["order_id"]
        order = stack.order(session["order_id"])
        assert order["status"] == "expired"
        sources = [h["source"] for h in order["history"]]
        assert f"api:POST /checkout-sessions/{session['id']}/expire" in sources
        assert stack.stripe.v1.checkout.sessions.retrieve(session["id"]).status == "expired"
        assert mirror(stack, session["id"])["status"] == "expired"
        # Stripe's checkout.session.expired arrives and changes nothing.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            events = stack.rows(
                "SELECT outcome FROM webhook_events WHERE type = 'checkout.session.expired' "
                "AND object_id = :id",
                id=session["id"],
            )
            if events:
                break
            time.sleep(0.05)
        assert events
        order = stack.order(session["order_id"])
        assert order["status"] == "expired"
        assert [h["to"] for h in order["history"]] == ["pending", "expired"]

    def test_expiring_again_replays_the_expiry(self, stack: Stack) -> None:
        session = create(stack, SEED_PAYMENT)
        first = stack.api.post(f"/checkout-sessions/{session['id']}/expire")
        assert first.status_code == 200, first.text

        again = stack.api.post(f"/checkout-sessions/{session['id']}/expire")

        assert again.status_code == 200, again.text
        assert again.json()["status"] == "expired"
        order = stack.order(session["order_id"])
        assert [h["to"] for h in order["history"]] == ["pending", "expired"]

    def test_a_paid_session_cannot_be_expired(self, stack: Stack) -> None:
        session = create(stack, SEED_PAYMENT)
        complete(stack, session["id"])
        stack.wait_for_order(session["order_id"], "paid")

        response = stack.api.post(f"/checkout-sessions/{session['id']}/expire")

        assert response.status_code == 400, response.text
        assert "status of `complete`" in response.json()["error"]["message"]
        assert stack.order(session["order_id"])["status"] == "paid"


class TestOtherModes:
    def test_subscription_mode_has_no_order(self, stack: Stack) -> None:
        customer = new_customer(stack)
        session = create(
            stack,
            {
                "line_items": [{"price": "price_monthly", "quantity": 1}],
                "mode": "subscription",
                "success_url": "https://example.com/success",
                "cancel_url": "https://example.com/cancel",
                "customer": customer,
                "subscription_data": {"trial_period_days": 14, "metadata": {"plan": "premium"}},
            },
        )

        assert session["mode"] == "subscription"
        assert session["order_id"] is None
        assert session["customer"] == customer
        assert session["amount_total"] == 0
        row = mirror(stack, session["id"])
        assert row["order_id"] is None
        assert row["mode"] == "subscription"

        complete(stack, session["id"])

        found = stack.api.get(
            f"/checkout-sessions/{session['id']}", params={"expand": "customer"}
        ).json()
        assert found["status"] == "complete"
        assert found["customer"]["id"] == customer
        assert found["order_id"] is None
        subscription = stack.stripe.v1.subscriptions.retrieve(found["subscription"])
        assert subscription.status == "trialing"
        assert subscription.metadata.to_dict() == {"plan": "premium"}
        assert subscription.customer == customer
        assert mirror(stack, session["id"])["subscription"] == found["subscription"]

    def test_setup_mode_saves_a_card_without_an_order(self, stack: Stack) -> None:
        customer = new_customer(stack)
        session = create(
            stack,
            {
                "mode": "setup",
                "currency": "usd",
                "customer": customer,
                "success_url": "https://example.com/success",
                "cancel_url": "https://example.com/cancel",
            },
        )

        assert session["mode"] == "setup"
        assert session["order_id"] is None
        assert session["amount_total"] is None

        complete(stack, session["id"])

        found = stack.api.get(
            f"/checkout-sessions/{session['id']}", params={"expand": "setup_intent"}
        ).json()
        assert found["status"] == "complete"
        assert found["setup_intent"]["status"] == "succeeded"
        methods = stack.api.get(f"/customers/{customer}/payment-methods").json()["data"]
        assert [m["id"] for m in methods] == [found["setup_intent"]["payment_method"]]

    def test_an_order_less_session_can_be_expired(self, stack: Stack) -> None:
        session = create(
            stack, {"mode": "setup", "currency": "usd", "success_url": "https://example.com/s"}
        )

        response = stack.api.post(f"/checkout-sessions/{session['id']}/expire")

        assert response.status_code == 200, response.text
        assert response.json()["status"] == "expired"
        assert response.json()["order_id"] is None


class TestRefusals:
    def refused(
        self, stack: Stack, body: dict[str, Any], code: str | None, param: str | None
    ) -> dict[str, Any]:
        before = counts(stack)
        error = assert_error(stack.api.post("/checkout-sessions", json=body), 400, code, param)
        assert counts(stack) == before
        return error

    def test_setup_mode_needs_a_currency(self, stack: Stack) -> None:
        self.refused(stack, {"mode": "setup"}, "parameter_missing", "currency")

    def test_payment_mode_needs_line_items(self, stack: Stack) -> None:
        self.refused(stack, {"mode": "payment"}, "parameter_missing", "line_items")

    def test_a_line_item_has_a_price_or_price_data(self, stack: Stack) -> None:
        both = {"price": "price_123", "price_data": TSHIRT["price_data"], "quantity": 1}
        body = {"mode": "payment", "line_items": [both]}
        self.refused(stack, body, "parameter_invalid", "line_items[0]")

    def test_quantity_is_positive(self, stack: Stack) -> None:
        body = {"mode": "payment", "line_items": [{"price": "price_123", "quantity": 0}]}
        self.refused(stack, body, "parameter_invalid", "line_items[0][quantity]")

    def test_an_unknown_price_is_refused(self, stack: Stack) -> None:
        body = {"mode": "payment", "line_items": [{"price": "price_nope", "quantity": 1}]}
        self.refused(stack, body, "resource_missing", "line_items[0][price]")

    def test_a_recurring_price_is_refused_in_payment_mode(self, stack: Stack) -> None:
        body = {"mode": "payment", "line_items": [{"price": "price_monthly", "quantity": 1}]}
        self.refused(stack, body, None, "line_items[0][price]")

    def test_a_total_under_the_minimum_is_refused(self, stack: Stack) -> None:
        item = {"price_data": {**TSHIRT["price_data"], "unit_amount": 10}, "quantity": 1}
        self.refused(
            stack, {"mode": "payment", "line_items": [item]}, "amount_too_small", "line_items"
        )

    def test_mixed_currencies_are_refused(self, stack: Stack) -> None:
        eur = {"price_data": {**TSHIRT["price_data"], "currency": "eur"}, "quantity": 1}
        body = {"mode": "payment", "line_items": [TSHIRT, eur]}
        self.refused(stack, body, None, "line_items")

    def test_customer_and_customer_email_exclude_each_other(self, stack: Stack) -> None:
        body = {**SEED_PAYMENT, "customer": "cus_123"}
        self.refused(stack, body, None, "customer_email")

    def test_subscription_data_only_in_subscription_mode(self, stack: Stack) -> None:
        body = {**SEED_PAYMENT, "subscription_data": {"trial_period_days": 14}}
        self.refused(stack, body, None, "subscription_data")

    def test_the_service_order_key_is_reserved(self, stack: Stack) -> None:
        body = {**SEED_PAYMENT, "metadata": {"service_order_id": "mine"}}
        self.refused(stack, body, None, "metadata[service_order_id]")

    def test_client_reference_id_is_the_order_in_payment_mode(self, stack: Stack) -> None:
        body = {**SEED_PAYMENT, "client_reference_id": "mine"}
        self.refused(stack, body, None, "client_reference_id")

    def test_expires_at_must_be_within_a_day(self, stack: Stack) -> None:
        body = {**SEED_PAYMENT, "expires_at": int(time.time()) + 3 * 86400}
        self.refused(stack, body, None, "expires_at")

    def test_extra_fields_are_refused(self, stack: Stack) -> None:
        self.refused(stack, {**SEED_PAYMENT, "coupon": "X"}, "parameter_invalid", "coupon")

    def test_an_unknown_mode_is_refused(self, stack: Stack) -> None:
        self.refused(stack, {**SEED_PAYMENT, "mode": "donation"}, "parameter_invalid", "mode")

    def test_only_known_objects_expand(self, stack: Stack) -> None:
        session = create(stack, SEED_PAYMENT)
        response = stack.api.get(
            f"/checkout-sessions/{session['id']}", params={"expand": "invoice"}
        )
        assert_error(response, 400, "parameter_invalid", "expand[0]")

    def test_unknown_sessions_are_404(self, stack: Stack) -> None:
        for response in (
            stack.api.get("/checkout-sessions/cs_test_nope"),
            stack.api.post("/checkout-sessions/cs_test_nope/expire"),
        ):
            error = assert_error(response, 404, "resource_missing", "id")
            assert error["type"] == "invalid_request_error"

    def test_everything_needs_an_api_key(self, stack: Stack) -> None:
        before = counts(stack)
        assert stack.public.post("/checkout-sessions", json=SEED_PAYMENT).status_code == 401
        assert stack.public.get("/checkout-sessions/cs_test_nope").status_code == 401
        assert stack.public.post("/checkout-sessions/cs_test_nope/expire").status_code == 401
        assert counts(stack) == before
