"""Publishable keys and Stripe.js through plain HTTP, as a browser sends them.

Stripe's rules (docs.stripe.com/api/payment_intents/retrieve and /confirm, docs.stripe.com/keys,
docs.stripe.com/metadata): a publishable key (`pk_test_…`) with an intent's `client_secret` may
retrieve and confirm that intent and create card PaymentMethods, nothing else; every other call is
a 401 "This API call cannot be made with a publishable API key"; a client secret that is not the
intent's is a 400; what a publishable key reads is the intent's client-side fields, without
metadata. Stripe.js sends the key as the `key` parameter, so no preflight is needed.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import stripe

from emulator.client_keys import INTENT_FIELDS, SECRET_KEY_NEEDED, SECRET_MISMATCH
from emulator.config import PUBLISHABLE_KEY
from tests.fixtures.emulator import API_KEY, EmulatorProcess, WebhookReceiver

SECRET = {"Authorization": f"Bearer {API_KEY}"}
CARD = {"card[exp_month]": "12", "card[exp_year]": "2034", "card[cvc]": "123"}


def new_intent(client: stripe.StripeClient, **params: Any) -> stripe.PaymentIntent:
    return client.v1.payment_intents.create(
        params={  # type: ignore[typeddict-item]
            "amount": 2000,
            "currency": "usd",
            "metadata": {"order_id": "6735"},
            **params,
        }
    )


def card_method(controls: httpx.Client, number: str) -> httpx.Response:
    """`POST /v1/payment_methods` as the card element's frame sends it."""
    return controls.post(
        "/v1/payment_methods",
        data={"key": PUBLISHABLE_KEY, "type": "card", "card[number]": number, **CARD},
    )


def client_confirm(
    controls: httpx.Client, intent: stripe.PaymentIntent, **params: str
) -> httpx.Response:
    return controls.post(
        f"/v1/payment_intents/{intent.id}/confirm",
        data={
            "key": PUBLISHABLE_KEY,
            "client_secret": intent.client_secret or "",
            "use_stripe_sdk": "true",
            **params,
        },
    )


def intents_at_stripe(controls: httpx.Client) -> int:
    response = controls.get("/v1/payment_intents", params={"limit": 100}, headers=SECRET)
    return len(response.json()["data"])


class TestStripeJsIsServed:
    @pytest.mark.parametrize("path", ["/v3", "/v3/", "/js/v3"])
    def test_the_script_on_each_path_without_a_key(self, controls: httpx.Client, path: str) -> None:
        response = controls.get(path)

        assert response.status_code == 200
        assert response.headers["content-type"].startswith("application/javascript")
        for name in ("confirmPayment", "confirmCardPayment", "retrievePaymentIntent"):
            assert f"Stripe.prototype.{name} = function" in response.text
        assert "window.Stripe = Stripe;" in response.text

    def test_the_card_fields_frame(self, controls: httpx.Client) -> None:
        response = controls.get("/v3/elements-frame.html")

        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/html")
        for label in ("Card number", "Expiration date", "Security code", "Postal code"):
            assert label in response.text


class TestRetrieveWithAPublishableKey:
    def test_the_client_secret_reads_the_client_side_fields(
        self, client: stripe.StripeClient, controls: httpx.Client
    ) -> None:
        intent = new_intent(client, customer="cus_123")

        response = controls.get(
            f"/v1/payment_intents/{intent.id}",
            params={"key": PUBLISHABLE_KEY, "client_secret": intent.client_secret},
        )

        assert response.status_code == 200, response.text
        body = response.json()
        assert set(body) == INTENT_FIELDS
        assert (body["id"], body["amount"], body["status"]) == (
            intent.id,
            2000,
            "requires_payment_method",
        )
        assert body["client_secret"] == intent.client_secret
        # Server-side only: the metadata, the customer, the charges.
        assert "metadata" not in body
        assert "customer" not in body
        assert "latest_charge" not in body

    def test_the_key_in_the_authorization_header_works_too(
        self, client: stripe.StripeClient, controls: httpx.Client
    ) -> None:
        intent = new_intent(client)

        response = controls.get(
            f"/v1/payment_intents/{intent.id}",
            params={"client_secret": intent.client_secret},
            headers={"Authorization": f"Bearer {PUBLISHABLE_KEY}"},
        )

        assert response.status_code == 200
        assert response.json()["id"] == intent.id

    @pytest.mark.parametrize("secret", ["wrong", "other intent", ""])
    def test_a_secret_that_is_not_the_intents_is_refused(
        self, client: stripe.StripeClient, controls: httpx.Client, secret: str
    ) -> None:
        intent = new_intent(client)
        other = new_intent(client)
        given = {"wrong": f"{intent.id}_secret_wrong", "other intent": other.client_secret}.get(
            secret, ""
        )

        response = controls.get(
            f"/v1/payment_intents/{intent.id}",
            params={"key": PUBLISHABLE_KEY, "client_secret": given},
        )

        assert response.status_code == 400
        error = response.json()["error"]
        assert error["type"] == "invalid_request_error"
        assert error["param"] == "client_secret"
        if secret:
            assert error["message"] == SECRET_MISMATCH
        else:
            assert error["code"] == "parameter_missing"
        assert "payment_intent" not in error

    def test_no_secret_at_all_is_refused(
        self, client: stripe.StripeClient, controls: httpx.Client
    ) -> None:
        intent = new_intent(client)

        response = controls.get(f"/v1/payment_intents/{intent.id}", params={"key": PUBLISHABLE_KEY})

        assert response.status_code == 400
        assert response.json()["error"]["code"] == "parameter_missing"

    def test_an_unknown_intent_is_404(self, controls: httpx.Client) -> None:
        response = controls.get(
            "/v1/payment_intents/pi_unknown",
            params={"key": PUBLISHABLE_KEY, "client_secret": "pi_unknown_secret_x"},
        )

        assert response.status_code == 404
        assert response.json()["error"]["code"] == "resource_missing"

    def test_the_secret_key_still_reads_everything(
        self, client: stripe.StripeClient, controls: httpx.Client
    ) -> None:
        intent = new_intent(client)

        response = controls.get(f"/v1/payment_intents/{intent.id}", headers=SECRET)

        assert response.status_code == 200
        assert response.json()["metadata"] == {"order_id": "6735"}
        assert "latest_charge" in response.json()


class TestCardPaymentMethods:
    @pytest.mark.parametrize(
        ("number", "brand"),
        [
            ("4242424242424242", "visa"),
            ("4000002760003184", "visa"),
            ("4000000000009995", "visa"),
            ("4000000000000002", "visa"),
            ("5555555555554444", "mastercard"),
        ],
    )
    def test_stripes_test_numbers_make_card_payment_methods(
        self, controls: httpx.Client, number: str, brand: str
    ) -> None:
        response = card_method(controls, number)

        assert response.status_code == 200, response.text
        method = response.json()
        assert method["id"].startswith("pm_")
        assert (method["card"]["brand"], method["card"]["last4"]) == (brand, number[-4:])
        assert "metadata" not in method
        stored = controls.get(f"/v1/payment_methods/{method['id']}", headers=SECRET)
        assert stored.json()["card"]["last4"] == number[-4:]

    def test_a_number_failing_luhn_is_an_incorrect_number(self, controls: httpx.Client) -> None:
        response = card_method(controls, "4242424242424241")

        assert response.status_code == 402
        error = response.json()["error"]
        assert (error["type"], error["code"], error["param"]) == (
            "card_error",
            "incorrect_number",
            "card[number]",
        )

    def test_a_real_card_number_is_declined_in_test_mode(self, controls: httpx.Client) -> None:
        # Stripe: "Your request was in test mode, but used a non test (live) card."
        response = card_method(controls, "4111111111111111")

        assert response.status_code == 402
        error = response.json()["error"]
        assert error["decline_code"] == "test_mode_live_card"


class TestConfirmWithAPublishableKey:
    def test_the_right_secret_pays_the_intent(
        self, client: stripe.StripeClient, controls: httpx.Client, webhooks: WebhookReceiver
    ) -> None:
        intent = new_intent(client, automatic_payment_methods={"enabled": True})
        method = card_method(controls, "4242424242424242").json()

        response = client_confirm(controls, intent, payment_method=method["id"])

        assert response.status_code == 200, response.text
        body = response.json()
        assert body["status"] == "succeeded"
        assert "metadata" not in body
        paid = client.v1.payment_intents.retrieve(intent.id)
        assert (paid.status, paid.amount_received, paid.payment_method) == (
            "succeeded",
            2000,
            method["id"],
        )
        webhooks.wait_for_event("payment_intent.succeeded", intent.id)

    def test_a_wrong_secret_changes_nothing(
        self, client: stripe.StripeClient, controls: httpx.Client
    ) -> None:
        intent = new_intent(client)
        other = new_intent(client)
        method = card_method(controls, "4242424242424242").json()

        response = controls.post(
            f"/v1/payment_intents/{intent.id}/confirm",
            data={
                "key": PUBLISHABLE_KEY,
                "client_secret": other.client_secret,
                "payment_method": method["id"],
                "use_stripe_sdk": "true",
            },
        )

        assert response.status_code == 400
        assert response.json()["error"]["message"] == SECRET_MISMATCH
        unchanged = client.v1.payment_intents.retrieve(intent.id)
        assert (unchanged.status, unchanged.payment_method, unchanged.latest_charge) == (
            "requires_payment_method",
            None,
            None,
        )

    def test_a_decline_carries_the_client_side_intent(
        self, client: stripe.StripeClient, controls: httpx.Client
    ) -> None:
        intent = new_intent(client)
        method = card_method(controls, "4000000000009995").json()

        response = client_confirm(controls, intent, payment_method=method["id"])

        assert response.status_code == 402
        error = response.json()["error"]
        assert (error["type"], error["code"], error["decline_code"]) == (
            "card_error",
            "card_declined",
            "insufficient_funds",
        )
        assert error["message"] == "Your card has insufficient funds."
        assert set(error["payment_intent"]) == INTENT_FIELDS
        assert error["payment_intent"]["status"] == "requires_payment_method"
        assert "metadata" not in error["payment_method"]
        assert client.v1.payment_intents.retrieve(intent.id).status == "requires_payment_method"

    def test_three_d_secure_asks_for_the_challenge_page(
        self, client: stripe.StripeClient, controls: httpx.Client
    ) -> None:
        intent = new_intent(client)
        method = card_method(controls, "4000002760003184").json()

        response = client_confirm(
            controls, intent, payment_method=method["id"], return_url="https://shop.example/done"
        )

        assert response.status_code == 200
        action = response.json()["next_action"]
        assert action["type"] == "redirect_to_url"
        page = action["redirect_to_url"]["url"]
        assert page.endswith(f"/_emulator/3ds/{intent.id}")
        # In Stripe.js's dialog the page answers the page that opened it, instead of redirecting.
        embedded = controls.get(f"/_emulator/3ds/{intent.id}", params={"embedded": "1"})
        assert f'action="/_emulator/3ds/{intent.id}?embedded=1"' in embedded.text
        done = controls.post(
            f"/_emulator/3ds/{intent.id}", params={"embedded": "1"}, data={"outcome": "succeed"}
        )
        assert done.status_code == 200
        assert '"stripeEmulator3ds": true' in done.text
        assert client.v1.payment_intents.retrieve(intent.id).status == "succeeded"

    def test_without_stripe_js_the_return_url_rule_holds(
        self, client: stripe.StripeClient, controls: httpx.Client
    ) -> None:
        intent = new_intent(client, automatic_payment_methods={"enabled": True})
        method = card_method(controls, "4242424242424242").json()

        response = controls.post(
            f"/v1/payment_intents/{intent.id}/confirm",
            data={
                "key": PUBLISHABLE_KEY,
                "client_secret": intent.client_secret,
                "payment_method": method["id"],
            },
        )

        assert response.status_code == 400
        assert "return_url" in response.json()["error"]["message"]


class TestServerOnlyCallsRefuseAPublishableKey:
    @pytest.mark.parametrize(
        ("method", "path", "data"),
        [
            ("POST", "/v1/payment_intents", {"amount": "2000", "currency": "usd"}),
            ("GET", "/v1/payment_intents", {}),
            ("GET", "/v1/customers", {}),
            ("POST", "/v1/customers", {"email": "a@example.com"}),
            ("POST", "/v1/refunds", {"payment_intent": "pi_x"}),
            ("GET", "/v1/events", {}),
            ("GET", "/v1/payment_methods/pm_123", {}),
            ("POST", "/v1/checkout/sessions", {"mode": "payment"}),
        ],
    )
    def test_refused_with_stripes_401(
        self, controls: httpx.Client, method: str, path: str, data: dict[str, str]
    ) -> None:
        before = intents_at_stripe(controls)
        payload = {"key": PUBLISHABLE_KEY, **data}

        if method == "GET":
            response = controls.get(path, params=payload)
        else:
            response = controls.post(path, data=payload)

        assert response.status_code == 401, response.text
        error = response.json()["error"]
        assert (error["type"], error["message"]) == ("invalid_request_error", SECRET_KEY_NEEDED)
        assert intents_at_stripe(controls) == before

    @pytest.mark.parametrize("action", ["", "/capture", "/cancel"])
    def test_the_intents_own_server_calls_are_refused_even_with_its_secret(
        self, client: stripe.StripeClient, controls: httpx.Client, action: str
    ) -> None:
        intent = new_intent(client)

        response = controls.post(
            f"/v1/payment_intents/{intent.id}{action}",
            data={"key": PUBLISHABLE_KEY, "client_secret": intent.client_secret},
        )

        assert response.status_code == 401
        assert response.json()["error"]["message"] == SECRET_KEY_NEEDED
        assert client.v1.payment_intents.retrieve(intent.id).status == "requires_payment_method"

    def test_the_secret_key_still_works_there(self, controls: httpx.Client) -> None:
        created = controls.post(
            "/v1/payment_intents", data={"amount": "2000", "currency": "usd"}, headers=SECRET
        )
        assert created.status_code == 200
        assert controls.get("/v1/customers", headers=SECRET).status_code == 200

    def test_a_live_publishable_key_is_refused(self, controls: httpx.Client) -> None:
        response = controls.get(
            "/v1/payment_intents/pi_x",
            headers={"Authorization": "Bearer pk_live_0123456789abcdef"},
        )

        assert response.status_code == 401
        assert response.json()["error"]["code"] == "livemode_mismatch"


class TestBrowsers:
    def test_answers_carry_cors_for_any_origin(
        self, client: stripe.StripeClient, controls: httpx.Client
    ) -> None:
        intent = new_intent(client)

        response = controls.get(
            f"/v1/payment_intents/{intent.id}",
            params={"key": PUBLISHABLE_KEY, "client_secret": intent.client_secret},
            headers={"Origin": "http://shop.example"},
        )

        assert response.headers["access-control-allow-origin"] == "*"

    def test_a_preflight_is_answered(self, emulator_process: EmulatorProcess) -> None:
        response = httpx.options(
            f"{emulator_process.url}/v1/payment_intents/pi_x/confirm",
            headers={
                "Origin": "http://shop.example",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization, content-type",
            },
        )

        assert response.status_code == 204
        assert response.headers["access-control-allow-origin"] == "*"
        assert "POST" in response.headers["access-control-allow-methods"]
        assert response.headers["access-control-allow-headers"] == "authorization, content-type"
