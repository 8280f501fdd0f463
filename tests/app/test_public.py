"""`POST /api/create-payment-intent`: the browser's endpoint, amounts computed by the server."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from tests.app.test_stripe_faults import ATTEMPTS, CREATE_ROUTE, fault, stripe_intents_of
from tests.fixtures.service import CORS_ORIGIN, Stack

PATH = "/api/create-payment-intent"
RETURN_URL = "https://example.com/order/complete"


def order_count(stack: Stack) -> int:
    return int(stack.rows("SELECT count(*) AS n FROM orders")[0]["n"])


def error_of(response: Any, status: int, code: str, param: str | None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error = dict(response.json()["error"])
    assert (error["code"], error["param"]) == (code, param), error
    return error


def new_price(stack: Stack, **params: Any) -> str:
    product = stack.stripe.v1.products.create(params={"name": f"item {uuid.uuid4().hex[:6]}"})
    return stack.stripe.v1.prices.create(
        params={"product": product.id, "currency": "usd", "unit_amount": 700, **params}
    ).id


class TestCart:
    def test_the_amount_is_computed_from_stripe_prices(self, stack: Stack) -> None:
        response = stack.public.post(
            PATH,
            json={"items": [{"price": "price_tshirt", "quantity": 2}, {"price": "price_mug"}]},
        )

        assert response.status_code == 200, response.text
        body = response.json()
        assert set(body) == {"clientSecret", "paymentIntentId", "orderId", "amount", "currency"}
        assert (body["amount"], body["currency"]) == (2 * 2000 + 1200, "usd")
        assert body["clientSecret"].startswith(f"{body['paymentIntentId']}_secret_")
        intent = stack.stripe.v1.payment_intents.retrieve(body["paymentIntentId"])
        assert intent.amount == 5200
        assert intent.automatic_payment_methods is not None
        assert intent.automatic_payment_methods.enabled is True
        assert intent.metadata["service_order_id"] == body["orderId"]
        [order] = stack.rows("SELECT * FROM orders WHERE id = :id", id=body["orderId"])
        assert (order["status"], order["amount"], order["payment_intent"]) == (
            "pending",
            5200,
            body["paymentIntentId"],
        )

        paid = stack.api.post(
            f"/payment-intents/{body['paymentIntentId']}/confirm",
            json={"payment_method": "pm_card_visa", "return_url": RETURN_URL},
        )
        assert paid.status_code == 200, paid.text
        stack.wait_for_order(body["orderId"], "paid")

    def test_the_seeds_price(self, stack: Stack) -> None:
        response = stack.public.post(PATH, json={"items": [{"price": "price_123", "quantity": 3}]})
        assert response.status_code == 200, response.text
        assert (response.json()["amount"], response.json()["currency"]) == (4500, "usd")

    @pytest.mark.parametrize(
        "body",
        [
            {"amount": 1, "currency": "usd"},
            {"items": [{"price": "price_123", "quantity": 1}], "amount": 1},
            {"items": [{"price": "price_123", "quantity": 1}], "currency": "eur"},
        ],
    )
    def test_an_amount_from_the_browser_is_refused(
        self, stack: Stack, body: dict[str, Any]
    ) -> None:
        before = order_count(stack)
        response = stack.public.post(PATH, json=body)

        param = "amount" if "amount" in body else "currency"
        error = error_of(response, 400, "parameter_invalid", param)
        assert "computed by the server" in error["message"]
        assert order_count(stack) == before

    @pytest.mark.parametrize(
        ("items", "code", "param"),
        [
            ([{"price": "price_123"}, {"price": "nope"}], "resource_missing", "items[1][price]"),
            ([{"price": "price_monthly"}], "price_not_one_time", "items[0][price]"),
            ([{"price": "price_123", "quantity": 0}], "parameter_invalid", "items[0][quantity]"),
            ([{"price": "price_123", "quantity": 101}], "parameter_invalid", "items[0][quantity]"),
            ([{"price": "price_123", "quantity": 1.5}], "parameter_invalid", "items[0][quantity]"),
            ([{"price": "price_123", "qty": 1}], "parameter_invalid", "items[0][qty]"),
            ([], "parameter_invalid", "items"),
            ([{"price": "price_123"}] * 101, "parameter_invalid", "items"),
        ],
    )  # fmt: skip
    def test_bad_carts_are_refused(
        self, stack: Stack, items: list[dict[str, Any]], code: str, param: str
    ) -> None:
        before = order_count(stack)
        response = stack.public.post(PATH, json={"items": items})
        error_of(response, 400, code, param)
        assert order_count(stack) == before

    def test_inactive_and_foreign_currency_prices_are_refused(self, stack: Stack) -> None:
        inactive = new_price(stack)
        stack.stripe.v1.prices.update(inactive, params={"active": False})
        euros = new_price(stack, currency="eur")

        response = stack.public.post(PATH, json={"items": [{"price": inactive}]})
        error_of(response, 400, "price_inactive", "items[0][price]")
        response = stack.public.post(
            PATH, json={"items": [{"price": "price_123"}, {"price": euros}]}
        )
        error = error_of(response, 400, "currency_mismatch", "items[1][price]")
        assert "EUR" in error["message"]

    def test_an_empty_body_says_what_to_send(self, stack: Stack) -> None:
        error = error_of(stack.public.post(PATH, json={}), 400, "parameter_missing", "items")
        assert "order_id" in error["message"]


class TestOrder:
    def test_reuses_the_orders_payment_intent(self, stack: Stack) -> None:
        created = stack.api.post(
            "/payment-intents",
            json={
                "amount": 3300,
                "currency": "usd",
                "automatic_payment_methods": {"enabled": True},
            },
        ).json()

        response = stack.public.post(PATH, json={"order_id": created["order_id"]})

        assert response.status_code == 200, response.text
        assert response.json() == {
            "clientSecret": created["client_secret"],
            "paymentIntentId": created["id"],
            "orderId": created["order_id"],
            "amount": 3300,
            "currency": "usd",
        }
        mirrors = stack.rows(
            "SELECT id FROM payment_intents WHERE order_id = :o", o=created["order_id"]
        )
        assert len(mirrors) == 1

    def test_a_failed_order_can_be_retried_but_a_paid_one_cannot(self, stack: Stack) -> None:
        created = stack.api.post(
            "/payment-intents", json={"amount": 2500, "currency": "usd"}
        ).json()
        declined = stack.api.post(
            f"/payment-intents/{created['id']}/confirm",
            json={"payment_method": "pm_card_chargeDeclined", "return_url": RETURN_URL},
        )
        assert declined.status_code == 402
        stack.wait_for_order(created["order_id"], "payment_failed")

        retry = stack.public.post(PATH, json={"order_id": created["order_id"]})
        assert retry.status_code == 200, retry.text
        assert retry.json()["paymentIntentId"] == created["id"]

        stack.api.post(
            f"/payment-intents/{created['id']}/confirm",
            json={"payment_method": "pm_card_visa", "return_url": RETURN_URL},
        )
        stack.wait_for_order(created["order_id"], "paid")
        again = stack.public.post(PATH, json={"order_id": created["order_id"]})
        error = error_of(again, 409, "order_not_payable", None)
        assert "paid" in error["message"]

    def test_unknown_order_is_404(self, stack: Stack) -> None:
        response = stack.public.post(PATH, json={"order_id": "ord_doesnotexist"})
        error_of(response, 404, "resource_missing", "order_id")

    def test_items_and_order_together_are_refused(self, stack: Stack) -> None:
        response = stack.public.post(
            PATH, json={"order_id": "ord_x", "items": [{"price": "price_123"}]}
        )
        error_of(response, 400, "parameter_invalid", "items")


class TestCors:
    def test_the_configured_origin_may_call_it(self, stack: Stack) -> None:
        preflight = stack.public.options(
            PATH,
            headers={
                "Origin": CORS_ORIGIN,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "content-type",
            },
        )
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == CORS_ORIGIN
        assert "POST" in preflight.headers["access-control-allow-methods"]

        response = stack.public.post(
            PATH, json={"items": [{"price": "price_123"}]}, headers={"Origin": CORS_ORIGIN}
        )
        assert response.status_code == 200
        assert response.headers["access-control-allow-origin"] == CORS_ORIGIN

    def test_another_origin_gets_no_cors_headers(self, stack: Stack) -> None:
        preflight = stack.public.options(
            PATH,
            headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
        )
        assert preflight.status_code == 400
        assert "access-control-allow-origin" not in preflight.headers

        response = stack.public.post(
            PATH,
            json={"items": [{"price": "price_123"}]},
            headers={"Origin": "https://evil.example"},
        )
        assert "access-control-allow-origin" not in response.headers


class TestLostAnswer:
    """The cart's order is committed before Stripe is called, as `POST /payment-intents` does:
    when every answer to the create is lost, a retry with the same Idempotency-Key links the
    intent Stripe made."""

    def test_the_retry_with_the_same_key_gets_the_same_intent(self, stack: Stack) -> None:
        price = new_price(stack)
        body = {"items": [{"price": price, "quantity": 3}]}
        headers = {"Idempotency-Key": f"cart-{uuid.uuid4().hex}"}
        before = order_count(stack)

        # Its `payment_intent.created` webhook is lost too: only the retry can link it.
        with (
            fault(stack, route=CREATE_ROUTE, drop="after", times=ATTEMPTS + 2),
            fault(stack, webhook="drop", event_type="payment_intent.created", times=1),
        ):
            lost = stack.public.post(PATH, json=body, headers=headers)

            error = error_of(lost, 503, "stripe_outcome_unknown", None)
            assert lost.headers["retry-after"] == "1"
            order_id = error["order_id"]
            [order] = stack.rows("SELECT * FROM orders WHERE id = :id", id=order_id)
            assert (order["status"], order["amount"], order["payment_intent"]) == (
                "pending",
                2100,
                None,
            )
            assert order["idempotency_key"] == headers["Idempotency-Key"]
            [made] = stripe_intents_of(stack, order_id)  # Stripe did make it, once

        retried = stack.public.post(PATH, json=body, headers=headers)

        assert retried.status_code == 200, retried.text
        answer = retried.json()
        assert (answer["paymentIntentId"], answer["orderId"], answer["amount"]) == (
            made.id,
            order_id,
            2100,
        )
        assert answer["clientSecret"] == made.client_secret
        assert order_count(stack) == before + 1
        assert [pi.id for pi in stripe_intents_of(stack, order_id)] == [made.id]
        [order] = stack.rows("SELECT * FROM orders WHERE id = :id", id=order_id)
        assert (order["status"], order["payment_intent"]) == ("pending", made.id)
        again = stack.public.post(PATH, json=body, headers=headers)
        assert again.status_code == 200, again.text
        assert again.json()["clientSecret"] == made.client_secret
        assert order_count(stack) == before + 1

    def test_the_same_key_for_another_cart_is_refused(self, stack: Stack) -> None:
        headers = {"Idempotency-Key": f"cart-{uuid.uuid4().hex}"}
        with fault(stack, route=CREATE_ROUTE, drop="after", times=ATTEMPTS + 2):
            lost = stack.public.post(
                PATH, json={"items": [{"price": "price_mug"}]}, headers=headers
            )
        order_id = error_of(lost, 503, "stripe_outcome_unknown", None)["order_id"]
        before = order_count(stack)

        other = stack.public.post(
            PATH, json={"items": [{"price": "price_mug", "quantity": 2}]}, headers=headers
        )

        error = error_of(other, 400, "idempotency_key_reused", None)
        assert order_id in error["message"]
        assert order_count(stack) == before


class TestIdempotencyScope:
    def test_a_stored_answer_is_never_replayed_to_another_address(self, stack: Stack) -> None:
        """Anonymous callers' keys are scoped by address: the same key and cart from two
        browsers are two orders, and neither sees the other's client secret."""
        key = f"cart-{uuid.uuid4()}"
        body = {"items": [{"price": "price_mug", "quantity": 1}]}
        answers = []
        for address in ("127.0.0.21", "127.0.0.22", "127.0.0.21"):
            with httpx.Client(
                base_url=stack.url, transport=httpx.HTTPTransport(local_address=address)
            ) as browser:
                response = browser.post(
                    "/api/create-payment-intent", json=body, headers={"Idempotency-Key": key}
                )
                assert response.status_code == 200, response.text
                answers.append(response)
        first, other, again = (a.json() for a in answers)
        assert first["orderId"] != other["orderId"]
        assert first["clientSecret"] != other["clientSecret"]
        assert again == first
        assert answers[2].headers.get("idempotent-replayed") == "true"
