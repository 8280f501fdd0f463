"""PaymentIntents through the SDK: create, confirm (every outcome), retrieve, update, list,
capture and cancel, the 3-D Secure and settlement controls, events and signed webhooks."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import stripe

from tests.fixtures.emulator import WEBHOOK_SECRET, WebhookReceiver

RETURN_URL = "https://example.com/order/complete"
STATE = "payment_intent_unexpected_state"


def event_types(client: stripe.StripeClient, object_id: str) -> list[str]:
    """The types of the events about one object, oldest first."""
    events = client.v1.events.list(params={"limit": 100})
    return [e.type for e in reversed(events.data) if e.data.object["id"] == object_id]


def signed_event(webhooks: WebhookReceiver, type_: str, object_id: str) -> stripe.Event:
    """The delivery of an event about `object_id`, its signature checked as a receiver would."""

    def match(event: dict[str, Any]) -> bool:
        return bool(event["type"] == type_ and event["data"]["object"]["id"] == object_id)

    found = webhooks.wait_for(lambda rs: any(match(r.event) for r in rs))
    received = next(r for r in found if match(r.event))
    event: stripe.Event = stripe.Webhook.construct_event(
        received.body.decode(), received.headers["Stripe-Signature"], WEBHOOK_SECRET
    )
    return event


def new_intent(client: stripe.StripeClient, **params: Any) -> stripe.PaymentIntent:
    return client.v1.payment_intents.create(
        params={"amount": 2000, "currency": "usd", **params}  # type: ignore[typeddict-item]
    )


def paid_intent(client: stripe.StripeClient, **params: Any) -> stripe.PaymentIntent:
    return new_intent(
        client, confirm=True, payment_method="pm_card_visa", return_url=RETURN_URL, **params
    )


def authorized_intent(client: stripe.StripeClient, amount: int = 5000) -> stripe.PaymentIntent:
    return new_intent(
        client,
        amount=amount,
        capture_method="manual",
        confirm=True,
        payment_method="pm_card_visa",
        return_url=RETURN_URL,
    )


class TestCreatePaymentIntent:
    SEED = {
        "amount": 2000,
        "currency": "usd",
        "customer": "cus_123",
        "automatic_payment_methods": {"enabled": True},
        "description": "Software subscription",
        "metadata": {"order_id": "order_12345", "product": "pro_subscription"},
        "receipt_email": "customer@example.com",
        "statement_descriptor": "MYCOMPANY SUB",
    }

    def test_the_seed_create_is_refused_for_its_statement_descriptor(
        self, client: stripe.StripeClient
    ) -> None:
        with pytest.raises(stripe.InvalidRequestError) as caught:
            client.v1.payment_intents.create(params=self.SEED)  # type: ignore[arg-type]
        err = caught.value
        assert err.http_status == 400
        assert err.error is not None
        assert err.error.type == "invalid_request_error"
        assert err.error.param == "statement_descriptor"
        assert err.error.message is not None
        assert "statement_descriptor_suffix" in err.error.message
        assert client.v1.payment_intents.list().data == []

    def test_the_seed_create_without_statement_descriptor(
        self, client: stripe.StripeClient, webhooks: WebhookReceiver
    ) -> None:
        params = {k: v for k, v in self.SEED.items() if k != "statement_descriptor"}
        pi = client.v1.payment_intents.create(params=params)  # type: ignore[arg-type]
        assert pi.id.startswith("pi_")
        assert pi.object == "payment_intent"
        assert pi.amount == 2000
        assert pi.currency == "usd"
        assert pi.customer == "cus_123"
        assert pi.description == "Software subscription"
        assert pi.metadata.to_dict() == {"order_id": "order_12345", "product": "pro_subscription"}
        assert pi.receipt_email == "customer@example.com"
        assert pi.status == "requires_payment_method"
        assert pi.capture_method == "automatic_async"
        assert pi.confirmation_method == "automatic"
        assert pi.automatic_payment_methods is not None
        assert pi.automatic_payment_methods.to_dict() == {
            "allow_redirects": "always",
            "enabled": True,
        }
        assert pi.payment_method_types == ["card"]
        assert pi.payment_method_options is not None
        assert pi.payment_method_options.to_dict()["card"] == {
            "installments": None,
            "mandate_options": None,
            "network": None,
            "request_three_d_secure": "automatic",
        }
        assert pi.amount_capturable == 0
        assert pi.amount_received == 0
        assert pi.amount_details is not None
        assert pi.amount_details.to_dict() == {"tip": {}}
        assert pi.client_secret is not None
        assert pi.client_secret.startswith(pi.id + "_secret_")
        assert pi.latest_charge is None
        assert pi.payment_method is None
        assert pi.statement_descriptor is None
        assert pi.livemode is False
        assert client.v1.payment_intents.retrieve(pi.id).to_dict() == pi.to_dict()
        assert event_types(client, pi.id) == ["payment_intent.created"]
        event = signed_event(webhooks, "payment_intent.created", pi.id)
        assert event.data.object["status"] == "requires_payment_method"

    def test_statement_descriptor_suffix_is_accepted(self, client: stripe.StripeClient) -> None:
        pi = new_intent(client, statement_descriptor_suffix="ORDER 42")
        assert pi.statement_descriptor_suffix == "ORDER 42"
        assert client.v1.payment_intents.retrieve(pi.id).statement_descriptor_suffix == "ORDER 42"
        longest = new_intent(client, statement_descriptor_suffix="B" * 17)
        assert longest.statement_descriptor_suffix == "B" * 17

    @pytest.mark.parametrize("suffix", ["A" * 18, "12345", "ORDER*42", "ORDER <42>", 'SAY "HI"'])
    def test_a_bad_statement_descriptor_suffix_is_refused(
        self, client: stripe.StripeClient, suffix: str
    ) -> None:
        with pytest.raises(stripe.InvalidRequestError) as caught:
            new_intent(client, statement_descriptor_suffix=suffix)
        assert caught.value.http_status == 400
        assert caught.value.error is not None
        assert caught.value.error.param == "statement_descriptor_suffix"
        assert client.v1.payment_intents.list().data == []

    def test_statement_descriptor_is_accepted_without_cards(
        self, client: stripe.StripeClient
    ) -> None:
        pi = new_intent(
            client,
            allowed_payment_method_types=["us_bank_account"],
            statement_descriptor="MYCOMPANY SUB",
        )
        assert pi.statement_descriptor == "MYCOMPANY SUB"
        assert pi.payment_method_types == ["us_bank_account"]
        assert pi.automatic_payment_methods is None

    def test_automatic_payment_methods_with_allowed_types_is_refused(
        self, client: stripe.StripeClient
    ) -> None:
        with pytest.raises(stripe.InvalidRequestError) as caught:
            new_intent(
                client,
                automatic_payment_methods={"enabled": True},
                allowed_payment_method_types=["card"],
            )
        assert caught.value.http_status == 400
        assert caught.value.error is not None
        assert caught.value.error.param == "automatic_payment_methods"

    def test_return_url_without_confirm_is_refused(self, client: stripe.StripeClient) -> None:
        with pytest.raises(stripe.InvalidRequestError) as caught:
            new_intent(client, return_url=RETURN_URL)
        assert caught.value.http_status == 400
        assert caught.value.error is not None
        assert caught.value.error.param == "return_url"

    def test_an_unknown_customer_is_refused(self, client: stripe.StripeClient) -> None:
        with pytest.raises(stripe.InvalidRequestError) as caught:
            new_intent(client, customer="cus_missing")
        assert caught.value.http_status == 404
        assert caught.value.error is not None
        assert caught.value.error.code == "resource_missing"
        assert caught.value.error.param == "customer"

    def test_an_amount_under_the_minimum_is_refused(self, client: stripe.StripeClient) -> None:
        with pytest.raises(stripe.InvalidRequestError) as caught:
            new_intent(client, amount=49)
        assert caught.value.http_status == 400
        assert caught.value.error is not None
        assert caught.value.error.code == "amount_too_small"
        assert caught.value.error.param == "amount"

    def test_the_currency_is_lowercased(self, client: stripe.StripeClient) -> None:
        pi = new_intent(client, currency="EUR")
        assert pi.currency == "eur"

    def test_an_unsupported_currency_is_refused(self, client: stripe.StripeClient) -> None:
        with pytest.raises(stripe.InvalidRequestError) as caught:
            new_intent(client, currency="xyz")
        assert caught.value.http_status == 400
        assert caught.value.error is not None
        assert caught.value.error.param == "currency"

    def test_a_payment_method_without_confirm_waits_for_confirmation(
        self, client: stripe.StripeClient
    ) -> None:
        pi = new_intent(client, payment_method="pm_card_visa")
        assert pi.status == "requires_confirmation"
        assert pi.payment_method is not None
        assert isinstance(pi.payment_method, str)
        assert pi.payment_method.startswith("pm_")
        pm = client.v1.payment_methods.retrieve(pi.payment_method)
        assert pm.card is not None
        assert pm.card.last4 == "4242"
        confirmed = client.v1.payment_intents.confirm(pi.id, params={"return_url": RETURN_URL})
        assert confirmed.status == "succeeded"
        assert confirmed.payment_method == pi.payment_method

    def test_manual_capture_create_from_the_seed(self, client: stripe.StripeClient) -> None:
        pi = client.v1.payment_intents.create(
            params={
                "amount": 5000,
                "currency": "usd",
                "capture_method": "manual",
                "automatic_payment_methods": {"enabled": True},
            }
        )
        assert pi.capture_method == "manual"
        assert pi.status == "requires_payment_method"


class TestConfirmPaymentIntent:
    def test_the_seed_confirm_succeeds_with_a_charge(
        self, client: stripe.StripeClient, webhooks: WebhookReceiver
    ) -> None:
        pi = new_intent(client, automatic_payment_methods={"enabled": True})
        confirmed = client.v1.payment_intents.confirm(
            pi.id, params={"payment_method": "pm_card_visa", "return_url": RETURN_URL}
        )
        assert confirmed.status == "succeeded"
        assert confirmed.amount_received == 2000
        assert confirmed.amount_capturable == 0
        assert confirmed.next_action is None
        assert confirmed.last_payment_error is None
        assert isinstance(confirmed.latest_charge, str)
        assert confirmed.latest_charge.startswith("ch_")
        assert isinstance(confirmed.payment_method, str)
        again = client.v1.payment_intents.retrieve(pi.id)
        assert again.to_dict() == confirmed.to_dict()
        charge = client.v1.charges.retrieve(confirmed.latest_charge)
        assert charge.status == "succeeded"
        assert charge.paid is True
        assert charge.captured is True
        assert charge.amount == charge.amount_captured == 2000
        assert charge.amount_refunded == 0
        assert charge.payment_intent == pi.id
        assert charge.payment_method == confirmed.payment_method
        assert isinstance(charge.balance_transaction, str)
        assert charge.balance_transaction.startswith("txn_")
        assert charge.outcome is not None
        assert charge.outcome.network_status == "approved_by_network"
        assert charge.outcome.type == "authorized"
        assert charge.outcome.risk_level == "normal"
        assert charge.outcome.seller_message == "Payment complete."
        details = charge.payment_method_details
        assert details is not None
        assert details.card is not None
        assert details.type == "card"
        assert details.card.brand == "visa"
        assert details.card.last4 == "4242"
        assert details.card.network == "visa"
        assert details.card.three_d_secure is None
        assert event_types(client, pi.id) == ["payment_intent.created", "payment_intent.succeeded"]
        assert event_types(client, charge.id) == ["charge.succeeded"]
        events = client.v1.events.list(params={"limit": 3}).data
        assert [e.type for e in events][:2] == ["payment_intent.succeeded", "charge.succeeded"]
        event = signed_event(webhooks, "payment_intent.succeeded", pi.id)
        assert event.data.object["latest_charge"] == charge.id
        assert signed_event(webhooks, "charge.succeeded", charge.id).data.object["paid"] is True

    def test_automatic_payment_methods_need_a_return_url(self, client: stripe.StripeClient) -> None:
        pi = new_intent(client)
        with pytest.raises(stripe.InvalidRequestError) as caught:
            client.v1.payment_intents.confirm(pi.id, params={"payment_method": "pm_card_visa"})
        assert caught.value.http_status == 400
        assert caught.value.error is not None
        assert caught.value.error.message is not None
        assert "return_url" in caught.value.error.message
        assert client.v1.payment_intents.retrieve(pi.id).status == "requires_payment_method"

    def test_no_redirects_need_no_return_url(self, client: stripe.StripeClient) -> None:
        pi = new_intent(
            client, automatic_payment_methods={"enabled": True, "allow_redirects": "never"}
        )
        confirmed = client.v1.payment_intents.confirm(
            pi.id, params={"payment_method": "pm_card_mastercard"}
        )
        assert confirmed.status == "succeeded"

    def test_confirm_without_a_payment_method_is_refused(self, client: stripe.StripeClient) -> None:
        pi = new_intent(client)
        with pytest.raises(stripe.InvalidRequestError) as caught:
            client.v1.payment_intents.confirm(pi.id, params={"return_url": RETURN_URL})
        assert caught.value.http_status == 400
        assert caught.value.error is not None
        assert caught.value.error.code == STATE
        assert caught.value.error.message is not None
        assert "missing a payment method" in caught.value.error.message
        assert caught.value.error.payment_intent is not None
        assert caught.value.error.payment_intent.id == pi.id

    def test_an_unknown_payment_method_is_refused(self, client: stripe.StripeClient) -> None:
        pi = new_intent(client)
        with pytest.raises(stripe.InvalidRequestError) as caught:
            client.v1.payment_intents.confirm(
                pi.id, params={"payment_method": "pm_missing", "return_url": RETURN_URL}
            )
        assert caught.value.http_status == 404
        assert caught.value.error is not None
        assert caught.value.error.code == "resource_missing"
        assert caught.value.error.param == "payment_method"

    def test_confirming_a_succeeded_intent_is_refused(self, client: stripe.StripeClient) -> None:
        pi = paid_intent(client)
        with pytest.raises(stripe.InvalidRequestError) as caught:
            client.v1.payment_intents.confirm(
                pi.id, params={"payment_method": "pm_card_visa", "return_url": RETURN_URL}
            )
        assert caught.value.http_status == 400
        assert caught.value.error is not None
        assert caught.value.error.code == STATE
        assert caught.value.error.message == (
            "You cannot confirm this PaymentIntent because it has already succeeded after being "
            "previously confirmed."
        )
        assert len(client.v1.charges.list(params={"payment_intent": pi.id}).data) == 1

    def test_confirming_a_canceled_intent_is_refused(self, client: stripe.StripeClient) -> None:
        pi = new_intent(client)
        client.v1.payment_intents.cancel(pi.id)
        with pytest.raises(stripe.InvalidRequestError) as caught:
            client.v1.payment_intents.confirm(
                pi.id, params={"payment_method": "pm_card_visa", "return_url": RETURN_URL}
            )
        assert caught.value.error is not None
        assert caught.value.error.code == STATE
        assert caught.value.error.message is not None
        assert "status of canceled" in caught.value.error.message

    @pytest.mark.parametrize(
        ("token", "decline_code", "message"),
        [
            ("pm_card_chargeDeclined", "generic_decline", "Your card was declined."),
            (
                "pm_card_chargeDeclinedInsufficientFunds",
                "insufficient_funds",
                "Your card has insufficient funds.",
            ),
        ],
    )
    def test_a_decline_raises_a_card_error_and_resets_the_intent(
        self,
        client: stripe.StripeClient,
        webhooks: WebhookReceiver,
        token: str,
        decline_code: str,
        message: str,
    ) -> None:
        pi = new_intent(client)
        with pytest.raises(stripe.CardError) as caught:
            client.v1.payment_intents.confirm(
                pi.id, params={"payment_method": token, "return_url": RETURN_URL}
            )
        err = caught.value
        assert err.http_status == 402
        assert err.code == "card_declined"
        assert err.error is not None
        assert err.error.type == "card_error"
        assert err.error.decline_code == decline_code
        assert err.error.message == message
        assert err.error.payment_intent is not None
        assert err.error.payment_intent.status == "requires_payment_method"
        assert err.error.payment_method is not None
        charge_id = err.error.charge
        assert isinstance(charge_id, str)
        assert charge_id.startswith("ch_")

        again = client.v1.payment_intents.retrieve(pi.id)
        assert again.status == "requires_payment_method"
        assert again.payment_method is None
        assert again.latest_charge == charge_id
        error = again.last_payment_error
        assert error is not None
        assert error.type == "card_error"
        assert error.code == "card_declined"
        assert error.decline_code == decline_code
        assert error.message == message
        assert error.charge == charge_id
        assert error.doc_url == "https://stripe.com/docs/error-codes/card-declined"
        assert error.payment_method is not None
        assert error.payment_method.id == err.error.payment_method.id

        charge = client.v1.charges.retrieve(charge_id)
        assert charge.status == "failed"
        assert charge.paid is False
        assert charge.captured is False
        assert charge.failure_code == "card_declined"
        assert charge.failure_message == message
        assert charge.outcome is not None
        assert charge.outcome.type == "issuer_declined"
        assert charge.outcome.network_status == "declined_by_network"
        assert charge.outcome.reason == decline_code
        assert event_types(client, pi.id) == [
            "payment_intent.created",
            "payment_intent.payment_failed",
        ]
        assert event_types(client, charge_id) == ["charge.failed"]
        event = signed_event(webhooks, "payment_intent.payment_failed", pi.id)
        assert event.data.object["last_payment_error"]["decline_code"] == decline_code

    def test_a_retry_after_a_decline_succeeds_with_a_new_charge(
        self, client: stripe.StripeClient
    ) -> None:
        pi = new_intent(client)
        with pytest.raises(stripe.CardError) as caught:
            client.v1.payment_intents.confirm(
                pi.id, params={"payment_method": "pm_card_chargeDeclined", "return_url": RETURN_URL}
            )
        assert caught.value.error is not None
        failed_charge = caught.value.error.charge
        confirmed = client.v1.payment_intents.confirm(
            pi.id, params={"payment_method": "pm_card_visa", "return_url": RETURN_URL}
        )
        assert confirmed.status == "succeeded"
        assert confirmed.last_payment_error is None
        assert confirmed.latest_charge != failed_charge
        charges = client.v1.charges.list(params={"payment_intent": pi.id}).data
        assert [c.status for c in charges] == ["succeeded", "failed"]

    def test_a_decline_at_create_keeps_the_intent(self, client: stripe.StripeClient) -> None:
        with pytest.raises(stripe.CardError) as caught:
            paid_intent_with(client, "pm_card_chargeDeclined")
        assert caught.value.error is not None
        assert caught.value.error.payment_intent is not None
        pi_id = caught.value.error.payment_intent.id
        pi = client.v1.payment_intents.retrieve(pi_id)
        assert pi.status == "requires_payment_method"
        assert pi.last_payment_error is not None
        assert event_types(client, pi_id) == [
            "payment_intent.created",
            "payment_intent.payment_failed",
        ]

    def test_a_token_is_not_attached_to_the_customer(self, client: stripe.StripeClient) -> None:
        pi = paid_intent(client, customer="cus_123")
        assert isinstance(pi.payment_method, str)
        assert client.v1.payment_methods.retrieve(pi.payment_method).customer is None

    def test_setup_future_usage_attaches_the_payment_method(
        self, client: stripe.StripeClient
    ) -> None:
        pi = paid_intent(client, customer="cus_123", setup_future_usage="off_session")
        assert pi.setup_future_usage == "off_session"
        assert isinstance(pi.payment_method, str)
        assert client.v1.payment_methods.retrieve(pi.payment_method).customer == "cus_123"
        assert event_types(client, pi.payment_method) == ["payment_method.attached"]

    def test_a_payment_method_of_another_customer_is_refused(
        self, client: stripe.StripeClient
    ) -> None:
        other = client.v1.customers.create(params={"email": "other@example.com"})
        pm = client.v1.payment_methods.attach("pm_card_visa", params={"customer": other.id})
        pi = new_intent(client, customer="cus_123")
        with pytest.raises(stripe.InvalidRequestError) as caught:
            client.v1.payment_intents.confirm(
                pi.id, params={"payment_method": pm.id, "return_url": RETURN_URL}
            )
        assert caught.value.http_status == 400
        assert caught.value.error is not None
        assert caught.value.error.param == "payment_method"
        assert client.v1.payment_intents.retrieve(pi.id).status == "requires_payment_method"

    def test_manual_capture_authorizes(
        self, client: stripe.StripeClient, webhooks: WebhookReceiver
    ) -> None:
        pi = authorized_intent(client)
        assert pi.status == "requires_capture"
        assert pi.amount_capturable == 5000
        assert pi.amount_received == 0
        assert isinstance(pi.latest_charge, str)
        charge = client.v1.charges.retrieve(pi.latest_charge)
        assert charge.status == "succeeded"
        assert charge.paid is True
        assert charge.captured is False
        assert charge.amount_captured == 0
        assert charge.balance_transaction is None
        assert event_types(client, pi.id) == [
            "payment_intent.created",
            "payment_intent.amount_capturable_updated",
        ]
        assert event_types(client, charge.id) == ["charge.succeeded"]
        signed_event(webhooks, "payment_intent.amount_capturable_updated", pi.id)


def paid_intent_with(client: stripe.StripeClient, token: str, **params: Any) -> None:
    new_intent(client, confirm=True, payment_method=token, return_url=RETURN_URL, **params)


class TestThreeDSecure:
    def test_a_redirect_then_a_successful_authentication(
        self, client: stripe.StripeClient, controls: httpx.Client, webhooks: WebhookReceiver
    ) -> None:
        pi = new_intent(client)
        confirmed = client.v1.payment_intents.confirm(
            pi.id,
            params={"payment_method": "pm_card_authenticationRequired", "return_url": RETURN_URL},
        )
        assert confirmed.status == "requires_action"
        assert confirmed.latest_charge is None
        assert confirmed.next_action is not None
        assert confirmed.next_action.type == "redirect_to_url"
        redirect = confirmed.next_action.redirect_to_url
        assert redirect is not None
        assert redirect.return_url == RETURN_URL
        assert redirect.url is not None
        assert redirect.url.endswith(f"/_emulator/3ds/{pi.id}")
        assert client.v1.payment_intents.retrieve(pi.id).status == "requires_action"
        signed_event(webhooks, "payment_intent.requires_action", pi.id)

        r = controls.post(
            f"/_emulator/payment_intents/{pi.id}/authenticate", json={"outcome": "succeed"}
        )
        assert r.status_code == 200
        assert r.json()["status"] == "succeeded"
        done = client.v1.payment_intents.retrieve(pi.id)
        assert done.status == "succeeded"
        assert done.next_action is None
        assert isinstance(done.latest_charge, str)
        charge = client.v1.charges.retrieve(done.latest_charge)
        assert charge.status == "succeeded"
        assert charge.payment_method_details is not None
        card = charge.payment_method_details.card
        assert card is not None
        assert card.three_d_secure is not None
        assert card.three_d_secure.result == "authenticated"
        assert event_types(client, pi.id) == [
            "payment_intent.created",
            "payment_intent.requires_action",
            "payment_intent.succeeded",
        ]

    def test_use_stripe_sdk_then_a_failed_authentication(
        self, client: stripe.StripeClient, controls: httpx.Client
    ) -> None:
        pi = new_intent(
            client, automatic_payment_methods={"enabled": True, "allow_redirects": "never"}
        )
        confirmed = client.v1.payment_intents.confirm(
            pi.id, params={"payment_method": "pm_card_authenticationRequired"}
        )
        assert confirmed.status == "requires_action"
        assert confirmed.next_action is not None
        assert confirmed.next_action.type == "use_stripe_sdk"
        r = controls.post(
            f"/_emulator/payment_intents/{pi.id}/authenticate", json={"outcome": "fail"}
        )
        assert r.status_code == 200
        failed = client.v1.payment_intents.retrieve(pi.id)
        assert failed.status == "requires_payment_method"
        assert failed.payment_method is None
        assert failed.next_action is None
        assert failed.last_payment_error is not None
        assert failed.last_payment_error.code == "payment_intent_authentication_failure"
        assert failed.latest_charge is None
        assert event_types(client, pi.id)[-1] == "payment_intent.payment_failed"
        again = controls.post(
            f"/_emulator/payment_intents/{pi.id}/authenticate", json={"outcome": "succeed"}
        )
        assert again.status_code == 400
        assert again.json()["error"]["code"] == STATE

    def test_manual_capture_after_authentication(
        self, client: stripe.StripeClient, controls: httpx.Client
    ) -> None:
        pi = new_intent(
            client,
            capture_method="manual",
            confirm=True,
            payment_method="pm_card_authenticationRequired",
            return_url=RETURN_URL,
        )
        assert pi.status == "requires_action"
        controls.post(
            f"/_emulator/payment_intents/{pi.id}/authenticate", json={"outcome": "succeed"}
        ).raise_for_status()
        done = client.v1.payment_intents.retrieve(pi.id)
        assert done.status == "requires_capture"
        assert done.amount_capturable == 2000

    def test_the_hosted_page_redirects_to_the_return_url(
        self, client: stripe.StripeClient, controls: httpx.Client
    ) -> None:
        pi = paid_intent_3ds(client, return_url=RETURN_URL + "?order=7")
        page = controls.get(f"/_emulator/3ds/{pi.id}")
        assert page.status_code == 200
        assert "Complete" in page.text
        assert "Fail" in page.text
        r = controls.post(f"/_emulator/3ds/{pi.id}", data={"outcome": "fail"})
        assert r.status_code == 303
        location = urlsplit(r.headers["Location"])
        assert f"{location.scheme}://{location.netloc}{location.path}" == RETURN_URL
        query = parse_qs(location.query)
        assert query == {
            "order": ["7"],
            "payment_intent": [pi.id],
            "payment_intent_client_secret": [pi.client_secret],
            "redirect_status": ["failed"],
        }
        assert client.v1.payment_intents.retrieve(pi.id).status == "requires_payment_method"

    def test_the_hosted_page_completes_the_payment(
        self, client: stripe.StripeClient, controls: httpx.Client
    ) -> None:
        pi = paid_intent_3ds(client, return_url=RETURN_URL)
        r = controls.post(f"/_emulator/3ds/{pi.id}", data={"outcome": "succeed"})
        assert r.status_code == 303
        assert "redirect_status=succeeded" in r.headers["Location"]
        assert client.v1.payment_intents.retrieve(pi.id).status == "succeeded"

    def test_off_session_declines_with_authentication_required(
        self, client: stripe.StripeClient
    ) -> None:
        with pytest.raises(stripe.CardError) as caught:
            paid_intent_with(client, "pm_card_authenticationRequired", off_session=True)
        err = caught.value
        assert err.http_status == 402
        assert err.code == "authentication_required"
        assert err.error is not None
        assert err.error.decline_code == "authentication_required"
        assert err.error.payment_intent is not None
        pi = client.v1.payment_intents.retrieve(err.error.payment_intent.id)
        assert pi.status == "requires_payment_method"
        assert pi.last_payment_error is not None
        assert pi.last_payment_error.code == "authentication_required"


def paid_intent_3ds(client: stripe.StripeClient, return_url: str) -> stripe.PaymentIntent:
    return new_intent(
        client,
        confirm=True,
        payment_method="pm_card_authenticationRequired",
        return_url=return_url,
    )


class TestProcessing:
    def test_the_delayed_card_stays_processing_until_settled(
        self, client: stripe.StripeClient, controls: httpx.Client, webhooks: WebhookReceiver
    ) -> None:
        pi = paid_intent_with_card(client, "pm_card_delayedSettlement")
        assert pi.status == "processing"
        assert isinstance(pi.latest_charge, str)
        charge = client.v1.charges.retrieve(pi.latest_charge)
        assert charge.status == "pending"
        assert charge.paid is False
        signed_event(webhooks, "payment_intent.processing", pi.id)

        with pytest.raises(stripe.InvalidRequestError) as caught:
            client.v1.payment_intents.confirm(
                pi.id, params={"payment_method": "pm_card_visa", "return_url": RETURN_URL}
            )
        assert caught.value.error is not None
        assert caught.value.error.code == STATE

        r = controls.post(f"/_emulator/payment_intents/{pi.id}/settle", json={"outcome": "succeed"})
        assert r.status_code == 200
        done = client.v1.payment_intents.retrieve(pi.id)
        assert done.status == "succeeded"
        assert done.amount_received == 2000
        assert done.processing is None
        charge = client.v1.charges.retrieve(pi.latest_charge)
        assert charge.status == "succeeded"
        assert charge.paid is True
        assert charge.amount_captured == 2000
        assert event_types(client, pi.id) == [
            "payment_intent.created",
            "payment_intent.processing",
            "payment_intent.succeeded",
        ]
        assert event_types(client, charge.id) == ["charge.pending", "charge.succeeded"]

    def test_a_failed_settlement(self, client: stripe.StripeClient, controls: httpx.Client) -> None:
        pi = paid_intent_with_card(client, "pm_card_delayedSettlement")
        r = controls.post(f"/_emulator/payment_intents/{pi.id}/settle", json={"outcome": "fail"})
        assert r.status_code == 200
        failed = client.v1.payment_intents.retrieve(pi.id)
        assert failed.status == "requires_payment_method"
        assert failed.last_payment_error is not None
        assert failed.last_payment_error.code == "card_declined"
        assert isinstance(pi.latest_charge, str)
        assert client.v1.charges.retrieve(pi.latest_charge).status == "failed"
        assert event_types(client, pi.id)[-1] == "payment_intent.payment_failed"
        assert event_types(client, pi.latest_charge) == ["charge.pending", "charge.failed"]

    def test_settling_an_intent_that_is_not_processing_is_refused(
        self, client: stripe.StripeClient, controls: httpx.Client
    ) -> None:
        pi = paid_intent(client)
        r = controls.post(f"/_emulator/payment_intents/{pi.id}/settle", json={"outcome": "succeed"})
        assert r.status_code == 400
        assert r.json()["error"]["code"] == STATE
        missing = controls.post("/_emulator/payment_intents/pi_missing/settle", json={})
        assert missing.status_code == 404


def paid_intent_with_card(client: stripe.StripeClient, token: str) -> stripe.PaymentIntent:
    return new_intent(client, confirm=True, payment_method=token, return_url=RETURN_URL)


class TestRetrieveUpdateListPaymentIntents:
    def test_retrieve_with_the_client_secret(self, client: stripe.StripeClient) -> None:
        pi = new_intent(client)
        assert pi.client_secret is not None
        found = client.v1.payment_intents.retrieve(
            pi.id, params={"client_secret": pi.client_secret}
        )
        assert found.id == pi.id
        with pytest.raises(stripe.InvalidRequestError) as caught:
            client.v1.payment_intents.retrieve(pi.id, params={"client_secret": "nope"})
        assert caught.value.http_status == 400
        assert caught.value.error is not None
        assert caught.value.error.param == "client_secret"

    def test_an_unknown_intent_is_a_404(self, client: stripe.StripeClient) -> None:
        with pytest.raises(stripe.InvalidRequestError) as caught:
            client.v1.payment_intents.retrieve("pi_missing")
        assert caught.value.http_status == 404
        assert caught.value.error is not None
        assert caught.value.error.code == "resource_missing"
        assert caught.value.error.param == "intent"
        assert caught.value.error.message == "No such payment_intent: 'pi_missing'"

    def test_update_merges_metadata_and_sets_fields(self, client: stripe.StripeClient) -> None:
        pi = new_intent(client, metadata={"a": "1", "b": "2"})
        updated = client.v1.payment_intents.update(
            pi.id,
            params={
                "amount": 3000,
                "description": "Bigger order",
                "metadata": {"b": "", "c": "3"},
                "receipt_email": "x@example.com",
                "statement_descriptor_suffix": "ORDER 9",
                "shipping": {"name": "Jane", "address": {"line1": "1 Main St", "country": "US"}},
            },
        )
        assert updated.amount == 3000
        assert updated.description == "Bigger order"
        assert updated.metadata.to_dict() == {"a": "1", "c": "3"}
        assert updated.receipt_email == "x@example.com"
        assert updated.shipping is not None
        assert updated.shipping.name == "Jane"
        assert updated.shipping.address is not None
        assert updated.shipping.address.line1 == "1 Main St"
        assert updated.shipping.address.city is None
        assert client.v1.payment_intents.retrieve(pi.id).to_dict() == updated.to_dict()

    def test_update_with_a_payment_method_awaits_confirmation(
        self, client: stripe.StripeClient
    ) -> None:
        pi = new_intent(client)
        updated = client.v1.payment_intents.update(
            pi.id, params={"payment_method": "pm_card_mastercard"}
        )
        assert updated.status == "requires_confirmation"
        confirmed = client.v1.payment_intents.confirm(pi.id, params={"return_url": RETURN_URL})
        assert confirmed.status == "succeeded"
        assert isinstance(confirmed.latest_charge, str)
        charge = client.v1.charges.retrieve(confirmed.latest_charge)
        assert charge.payment_method_details is not None
        assert charge.payment_method_details.card is not None
        assert charge.payment_method_details.card.brand == "mastercard"

    def test_the_amount_of_a_succeeded_intent_cannot_change(
        self, client: stripe.StripeClient
    ) -> None:
        pi = paid_intent(client)
        with pytest.raises(stripe.InvalidRequestError) as caught:
            client.v1.payment_intents.update(pi.id, params={"amount": 100})
        assert caught.value.http_status == 400
        assert caught.value.error is not None
        assert caught.value.error.code == STATE
        assert caught.value.error.param == "amount"
        assert caught.value.error.message is not None
        assert "status of succeeded" in caught.value.error.message
        assert client.v1.payment_intents.retrieve(pi.id).amount == 2000
        described = client.v1.payment_intents.update(pi.id, params={"description": "Done"})
        assert described.description == "Done"

    def test_update_refuses_a_card_statement_descriptor(self, client: stripe.StripeClient) -> None:
        pi = new_intent(client)
        with pytest.raises(stripe.InvalidRequestError) as caught:
            client.v1.payment_intents.update(pi.id, params={"statement_descriptor": "MYCO"})
        assert caught.value.error is not None
        assert caught.value.error.param == "statement_descriptor"

    def test_list_pages_newest_first(self, client: stripe.StripeClient) -> None:
        ids = [new_intent(client, amount=1000 + i).id for i in range(3)]
        page = client.v1.payment_intents.list(params={"limit": 2})
        assert [p.id for p in page.data] == [ids[2], ids[1]]
        assert page.has_more is True
        rest = client.v1.payment_intents.list(params={"limit": 2, "starting_after": ids[1]})
        assert [p.id for p in rest.data] == [ids[0]]
        assert rest.has_more is False
        before = client.v1.payment_intents.list(params={"ending_before": ids[0]})
        assert [p.id for p in before.data] == [ids[2], ids[1]]

    def test_list_filters_by_customer_and_created(self, client: stripe.StripeClient) -> None:
        mine = new_intent(client, customer="cus_123")
        new_intent(client)
        found = client.v1.payment_intents.list(params={"customer": "cus_123"})
        assert [p.id for p in found.data] == [mine.id]
        assert found.url == "/v1/payment_intents"
        later = client.v1.payment_intents.list(params={"created": {"gt": mine.created + 3600}})
        assert later.data == []
        with pytest.raises(stripe.InvalidRequestError) as caught:
            client.v1.payment_intents.list(params={"customer": "cus_missing"})
        assert caught.value.error is not None
        assert caught.value.error.param == "customer"

    def test_expand_latest_charge_customer_and_payment_method(
        self, client: stripe.StripeClient
    ) -> None:
        pi = paid_intent(client, customer="cus_123")
        expanded = client.v1.payment_intents.retrieve(
            pi.id, params={"expand": ["latest_charge", "customer", "payment_method"]}
        )
        assert isinstance(expanded.latest_charge, stripe.Charge)
        assert expanded.latest_charge.id == pi.latest_charge
        assert isinstance(expanded.customer, stripe.Customer)
        assert expanded.customer.id == "cus_123"
        assert isinstance(expanded.payment_method, stripe.PaymentMethod)
        assert expanded.payment_method.id == pi.payment_method
        assert client.v1.payment_intents.retrieve(pi.id).latest_charge == pi.latest_charge


class TestCapturePaymentIntent:
    def test_the_seed_partial_capture(
        self, client: stripe.StripeClient, webhooks: WebhookReceiver
    ) -> None:
        pi = authorized_intent(client)
        captured = client.v1.payment_intents.capture(pi.id, params={"amount_to_capture": 4500})
        assert captured.status == "succeeded"
        assert captured.amount_received == 4500
        assert captured.amount_capturable == 0
        assert client.v1.payment_intents.retrieve(pi.id).to_dict() == captured.to_dict()
        assert isinstance(pi.latest_charge, str)
        charge = client.v1.charges.retrieve(pi.latest_charge)
        assert charge.captured is True
        assert charge.amount_captured == 4500
        assert charge.amount_refunded == 500
        assert charge.refunded is False
        assert isinstance(charge.balance_transaction, str)
        assert event_types(client, pi.id)[-1] == "payment_intent.succeeded"
        assert event_types(client, charge.id) == ["charge.succeeded", "charge.captured"]
        event = signed_event(webhooks, "charge.captured", charge.id)
        assert event.data.object["amount_captured"] == 4500

    def test_a_full_capture_by_default(self, client: stripe.StripeClient) -> None:
        pi = authorized_intent(client)
        captured = client.v1.payment_intents.capture(pi.id)
        assert captured.amount_received == 5000
        assert isinstance(pi.latest_charge, str)
        charge = client.v1.charges.retrieve(pi.latest_charge)
        assert charge.amount_captured == 5000
        assert charge.amount_refunded == 0

    def test_capturing_more_than_authorized_is_refused(self, client: stripe.StripeClient) -> None:
        pi = authorized_intent(client)
        with pytest.raises(stripe.InvalidRequestError) as caught:
            client.v1.payment_intents.capture(pi.id, params={"amount_to_capture": 5001})
        assert caught.value.http_status == 400
        assert caught.value.error is not None
        assert caught.value.error.code == "amount_too_large"
        assert caught.value.error.param == "amount_to_capture"
        assert client.v1.payment_intents.retrieve(pi.id).status == "requires_capture"

    def test_a_second_capture_is_refused(self, client: stripe.StripeClient) -> None:
        pi = authorized_intent(client)
        client.v1.payment_intents.capture(pi.id, params={"amount_to_capture": 1000})
        with pytest.raises(stripe.InvalidRequestError) as caught:
            client.v1.payment_intents.capture(pi.id)
        assert caught.value.http_status == 400
        assert caught.value.error is not None
        assert caught.value.error.code == STATE
        assert client.v1.payment_intents.retrieve(pi.id).amount_received == 1000

    def test_capture_needs_requires_capture(self, client: stripe.StripeClient) -> None:
        pi = new_intent(client)
        with pytest.raises(stripe.InvalidRequestError) as caught:
            client.v1.payment_intents.capture(pi.id)
        assert caught.value.http_status == 400
        assert caught.value.error is not None
        assert caught.value.error.code == STATE
        assert caught.value.error.message == (
            "This PaymentIntent could not be captured because it has a status of "
            "requires_payment_method. Only a PaymentIntent with one of the following statuses "
            "may be captured: requires_capture."
        )


class TestCancelPaymentIntent:
    def test_the_seed_cancel(self, client: stripe.StripeClient, webhooks: WebhookReceiver) -> None:
        pi = new_intent(client)
        canceled = client.v1.payment_intents.cancel(
            pi.id, params={"cancellation_reason": "requested_by_customer"}
        )
        assert canceled.status == "canceled"
        assert canceled.cancellation_reason == "requested_by_customer"
        assert isinstance(canceled.canceled_at, int)
        assert canceled.canceled_at >= pi.created
        assert client.v1.payment_intents.retrieve(pi.id).to_dict() == canceled.to_dict()
        assert event_types(client, pi.id) == ["payment_intent.created", "payment_intent.canceled"]
        event = signed_event(webhooks, "payment_intent.canceled", pi.id)
        assert event.data.object["cancellation_reason"] == "requested_by_customer"

    def test_cancel_releases_an_authorization(self, client: stripe.StripeClient) -> None:
        pi = authorized_intent(client)
        canceled = client.v1.payment_intents.cancel(pi.id)
        assert canceled.status == "canceled"
        assert canceled.amount_capturable == 0
        assert canceled.cancellation_reason is None
        assert isinstance(pi.latest_charge, str)
        charge = client.v1.charges.retrieve(pi.latest_charge)
        assert charge.captured is False
        assert charge.refunded is True
        assert charge.amount_refunded == 5000
        assert event_types(client, charge.id) == ["charge.succeeded", "charge.refunded"]

    def test_cancel_from_requires_action(self, client: stripe.StripeClient) -> None:
        pi = paid_intent_3ds(client, return_url=RETURN_URL)
        canceled = client.v1.payment_intents.cancel(
            pi.id, params={"cancellation_reason": "abandoned"}
        )
        assert canceled.status == "canceled"
        assert canceled.next_action is None

    def test_cancel_of_a_succeeded_intent_is_refused(self, client: stripe.StripeClient) -> None:
        pi = paid_intent(client)
        with pytest.raises(stripe.InvalidRequestError) as caught:
            client.v1.payment_intents.cancel(pi.id)
        assert caught.value.http_status == 400
        assert caught.value.error is not None
        assert caught.value.error.code == STATE
        assert caught.value.error.message == (
            "You cannot cancel this PaymentIntent because it has a status of succeeded. Only a "
            "PaymentIntent with one of the following statuses may be canceled: "
            "requires_payment_method, requires_capture, requires_reauthorization, "
            "requires_confirmation, requires_action, processing."
        )
        assert client.v1.payment_intents.retrieve(pi.id).status == "succeeded"

    def test_an_unknown_cancellation_reason_is_refused(self, client: stripe.StripeClient) -> None:
        pi = new_intent(client)
        with pytest.raises(stripe.InvalidRequestError) as caught:
            client.v1.payment_intents.cancel(
                pi.id,
                params={"cancellation_reason": "bored"},
            )
        assert caught.value.http_status == 400
        assert caught.value.error is not None
        assert caught.value.error.param == "cancellation_reason"
        assert client.v1.payment_intents.retrieve(pi.id).status == "requires_payment_method"

    def test_cancel_of_a_processing_payment_fails_its_charge(
        self, client: stripe.StripeClient
    ) -> None:
        pi = paid_intent_with_card(client, "pm_card_delayedSettlement")
        canceled = client.v1.payment_intents.cancel(pi.id)
        assert canceled.status == "canceled"
        assert canceled.processing is None
        assert isinstance(pi.latest_charge, str)
        charge = client.v1.charges.retrieve(pi.latest_charge)
        assert charge.status == "failed"
        assert event_types(client, charge.id) == ["charge.pending", "charge.failed"]
