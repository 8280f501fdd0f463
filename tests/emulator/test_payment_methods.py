"""Payment methods through the SDK: create, retrieve, update, attach, detach, list, and a
customer's own payment methods."""

from __future__ import annotations

import re
from typing import Any

import pytest
import stripe

from tests.fixtures.emulator import WEBHOOK_SECRET, WebhookReceiver

PM_ID = re.compile(r"pm_[A-Za-z0-9]{24}")


def raw(obj: Any) -> dict[str, Any]:
    """An SDK object as plain JSON-shaped dicts."""
    return dict(obj.to_dict())


def loose(params: dict[str, Any]) -> Any:
    """Params built at run time, which the SDK's TypedDicts cannot check statically."""
    return params


def default_of(customer: stripe.Customer) -> Any:
    assert customer.invoice_settings is not None
    return customer.invoice_settings.default_payment_method


def new_customer(client: stripe.StripeClient) -> stripe.Customer:
    return client.v1.customers.create(params={"email": "jane@example.com"})


def card_params(number: str = "4242424242424242", **extra: Any) -> dict[str, Any]:
    return {"number": number, "exp_month": 12, "exp_year": 2034, "cvc": "123", **extra}


def create_card(client: stripe.StripeClient, number: str = "4242424242424242", **card: Any) -> Any:
    return client.v1.payment_methods.create(
        params=loose({"type": "card", "card": card_params(number, **card)})
    )


def attach(client: stripe.StripeClient, pm: str, customer: str) -> stripe.PaymentMethod:
    return client.v1.payment_methods.attach(pm, params={"customer": customer})


def events_of(client: stripe.StripeClient, type_: str, object_id: str) -> list[stripe.Event]:
    events = client.v1.events.list(params={"type": type_, "limit": 100})
    return [e for e in events.data if e.data.object["id"] == object_id]


class TestCreate:
    def test_a_test_card_number_makes_a_card_payment_method(
        self, client: stripe.StripeClient
    ) -> None:
        pm = client.v1.payment_methods.create(
            params=loose(
                {
                    "type": "card",
                    "card": card_params("5555 5555 5555 4444"),
                    "billing_details": {
                        "name": "Jane Doe",
                        "email": "jane@example.com",
                        "address": {"postal_code": "94103", "country": "US"},
                    },
                    "metadata": {"order": "42"},
                }
            )
        )
        assert PM_ID.fullmatch(pm.id)
        assert pm.object == "payment_method"
        assert pm.type == "card"
        assert pm.customer is None
        assert pm.livemode is False
        assert pm.allow_redisplay == "unspecified"
        assert raw(pm)["metadata"] == {"order": "42"}
        assert pm.card is not None
        assert pm.card.brand == "mastercard"
        assert pm.card.last4 == "4444"
        assert (pm.card.exp_month, pm.card.exp_year) == (12, 2034)
        assert pm.card.funding == "credit"
        assert pm.card.checks is not None
        assert pm.card.checks.cvc_check == "unchecked"
        assert pm.billing_details.name == "Jane Doe"
        assert pm.billing_details.email == "jane@example.com"
        assert pm.billing_details.phone is None
        assert pm.billing_details.address is not None
        assert pm.billing_details.address.to_dict() == {
            "city": None,
            "country": "US",
            "line1": None,
            "line2": None,
            "postal_code": "94103",
            "state": None,
        }
        assert client.v1.payment_methods.retrieve(pm.id).to_dict() == pm.to_dict()

    def test_a_legacy_card_token_makes_a_card_payment_method(
        self, client: stripe.StripeClient
    ) -> None:
        pm = client.v1.payment_methods.create(
            params={"type": "card", "card": {"token": "tok_amex"}}
        )
        assert pm.card is not None
        assert (pm.card.brand, pm.card.last4) == ("amex", "0005")

    def test_an_unknown_legacy_token_is_a_404(self, client: stripe.StripeClient) -> None:
        with pytest.raises(stripe.InvalidRequestError) as caught:
            client.v1.payment_methods.create(params={"type": "card", "card": {"token": "tok_nope"}})
        assert caught.value.http_status == 404
        assert caught.value.code == "resource_missing"
        assert caught.value.param == "card[token]"

    def test_a_number_that_fails_the_checksum_is_incorrect(
        self, client: stripe.StripeClient
    ) -> None:
        with pytest.raises(stripe.CardError) as caught:
            create_card(client, "4242424242424241")
        assert caught.value.http_status == 402
        assert caught.value.code == "incorrect_number"
        assert caught.value.param == "card[number]"
        assert str(caught.value.user_message) == "Your card number is incorrect."

    def test_a_real_card_number_is_declined_in_test_mode(self, client: stripe.StripeClient) -> None:
        with pytest.raises(stripe.CardError) as caught:
            create_card(client, "4111111111111111")
        assert caught.value.http_status == 402
        assert caught.value.code == "card_declined"
        assert caught.value.error is not None
        assert caught.value.error.decline_code == "test_mode_live_card"

    @pytest.mark.parametrize(
        ("card", "code", "param"),
        [
            ({"exp_month": 13}, "invalid_expiry_month", "card[exp_month]"),
            ({"exp_year": 2001}, "invalid_expiry_year", "card[exp_year]"),
            ({"cvc": "12"}, "invalid_cvc", "card[cvc]"),
        ],
    )
    def test_bad_card_details_are_card_errors(
        self, client: stripe.StripeClient, card: dict[str, Any], code: str, param: str
    ) -> None:
        with pytest.raises(stripe.CardError) as caught:
            create_card(client, **card)
        assert caught.value.http_status == 402
        assert caught.value.code == code
        assert caught.value.param == param

    def test_a_missing_expiry_is_refused(self, client: stripe.StripeClient) -> None:
        with pytest.raises(stripe.InvalidRequestError) as caught:
            client.v1.payment_methods.create(
                params={"type": "card", "card": {"number": "4242424242424242", "exp_year": 2034}}
            )
        assert caught.value.http_status == 400
        assert caught.value.code == "parameter_missing"
        assert caught.value.param == "card[exp_month]"

    def test_a_missing_type_or_card_is_refused(self, client: stripe.StripeClient) -> None:
        with pytest.raises(stripe.InvalidRequestError) as caught:
            client.v1.payment_methods.create(params=loose({"card": card_params()}))
        assert caught.value.param == "type"
        with pytest.raises(stripe.InvalidRequestError) as caught:
            client.v1.payment_methods.create(params={"type": "card"})
        assert caught.value.http_status == 400
        assert caught.value.param == "card"

    def test_an_unmodelled_type_is_refused(self, client: stripe.StripeClient) -> None:
        with pytest.raises(stripe.InvalidRequestError) as caught:
            client.v1.payment_methods.create(params={"type": "sepa_debit"})
        assert caught.value.http_status == 400
        assert caught.value.param == "type"


class TestRetrieve:
    def test_a_test_token_answers_a_new_payment_method(self, client: stripe.StripeClient) -> None:
        pm = client.v1.payment_methods.retrieve("pm_card_mastercard")
        assert PM_ID.fullmatch(pm.id)
        assert pm.card is not None
        assert pm.card.last4 == "4444"
        assert client.v1.payment_methods.retrieve(pm.id).id == pm.id

    def test_an_unknown_payment_method_is_a_404(self, client: stripe.StripeClient) -> None:
        with pytest.raises(stripe.InvalidRequestError) as caught:
            client.v1.payment_methods.retrieve("pm_nope")
        assert caught.value.http_status == 404
        assert caught.value.code == "resource_missing"
        assert caught.value.param == "payment_method"
        assert str(caught.value.user_message) == "No such PaymentMethod: 'pm_nope'"


class TestUpdate:
    def test_an_attached_payment_method_updates_and_emits_an_event(
        self, client: stripe.StripeClient
    ) -> None:
        customer = new_customer(client)
        pm = attach(client, "pm_card_visa", customer.id)
        updated = client.v1.payment_methods.update(
            pm.id,
            params={
                "metadata": {"k": "v"},
                "billing_details": {"name": "Jane", "address": {"city": "Oslo"}},
                "card": {"exp_month": 3, "exp_year": 2035},
            },
        )
        assert raw(updated)["metadata"] == {"k": "v"}
        assert updated.billing_details.name == "Jane"
        assert updated.billing_details.address is not None
        assert updated.billing_details.address.city == "Oslo"
        assert updated.card is not None
        assert (updated.card.exp_month, updated.card.exp_year) == (3, 2035)
        assert client.v1.payment_methods.retrieve(pm.id).to_dict() == updated.to_dict()
        event = events_of(client, "payment_method.updated", pm.id)[0]
        previous = event.data.to_dict()["previous_attributes"]
        assert previous["metadata"] == {"k": None}
        assert previous["billing_details"]["name"] is None
        assert previous["card"]["exp_month"] == 12

    def test_an_unattached_payment_method_cannot_be_updated(
        self, client: stripe.StripeClient
    ) -> None:
        pm = create_card(client)
        with pytest.raises(stripe.InvalidRequestError) as caught:
            client.v1.payment_methods.update(pm.id, params={"metadata": {"k": "v"}})
        assert caught.value.http_status == 400
        assert str(caught.value.user_message) == (
            "You must save this PaymentMethod to a customer before you can update it."
        )
        assert raw(client.v1.payment_methods.retrieve(pm.id))["metadata"] == {}

    def test_an_unknown_payment_method_is_a_404(self, client: stripe.StripeClient) -> None:
        with pytest.raises(stripe.InvalidRequestError) as caught:
            client.v1.payment_methods.update("pm_nope", params={"metadata": {"k": "v"}})
        assert caught.value.http_status == 404
        assert caught.value.param == "payment_method"


class TestAttach:
    def test_attaching_a_test_token_creates_a_new_payment_method(
        self, client: stripe.StripeClient, webhooks: WebhookReceiver
    ) -> None:
        customer = new_customer(client)
        pm = attach(client, "pm_card_visa", customer.id)
        assert PM_ID.fullmatch(pm.id)
        assert pm.customer == customer.id
        assert pm.card is not None
        assert pm.card.last4 == "4242"
        assert client.v1.payment_methods.retrieve(pm.id).customer == customer.id
        second = attach(client, "pm_card_visa", customer.id)
        assert second.id != pm.id
        event = webhooks.wait_for_event("payment_method.attached", pm.id)
        received = next(r for r in webhooks.received if r.event["id"] == event["id"])
        verified = stripe.Webhook.construct_event(
            received.body, received.headers["Stripe-Signature"], WEBHOOK_SECRET
        )
        assert verified.data.object["customer"] == customer.id

    def test_attaching_a_created_payment_method(self, client: stripe.StripeClient) -> None:
        customer = new_customer(client)
        pm = create_card(client)
        attached = attach(client, pm.id, customer.id)
        assert attached.id == pm.id
        assert attached.customer == customer.id
        # Attaching again to the same customer changes nothing and emits nothing new.
        assert attach(client, pm.id, customer.id).customer == customer.id
        assert len(events_of(client, "payment_method.attached", pm.id)) == 1

    def test_a_payment_method_attached_elsewhere_is_refused(
        self, client: stripe.StripeClient
    ) -> None:
        first, second = new_customer(client), new_customer(client)
        pm = attach(client, "pm_card_visa", first.id)
        with pytest.raises(stripe.InvalidRequestError) as caught:
            attach(client, pm.id, second.id)
        assert caught.value.http_status == 400
        assert str(caught.value.user_message) == (
            "The payment method you provided has already been attached to a customer."
        )
        assert client.v1.payment_methods.retrieve(pm.id).customer == first.id

    @pytest.mark.parametrize(
        ("token", "decline_code"),
        [
            ("pm_card_chargeDeclined", "generic_decline"),
            ("pm_card_chargeDeclinedInsufficientFunds", "insufficient_funds"),
        ],
    )
    def test_a_declining_card_cannot_be_attached(
        self, client: stripe.StripeClient, token: str, decline_code: str
    ) -> None:
        customer = new_customer(client)
        with pytest.raises(stripe.CardError) as caught:
            attach(client, token, customer.id)
        assert caught.value.http_status == 402
        assert caught.value.code == "card_declined"
        assert caught.value.error is not None
        assert caught.value.error.decline_code == decline_code
        assert client.v1.customers.payment_methods.list(customer.id).data == []

    def test_a_3ds_card_attaches(self, client: stripe.StripeClient) -> None:
        customer = new_customer(client)
        pm = attach(client, "pm_card_authenticationRequired", customer.id)
        assert pm.customer == customer.id
        assert pm.card is not None
        assert pm.card.last4 == "3184"

    def test_an_unknown_customer_is_a_404(self, client: stripe.StripeClient) -> None:
        pm = create_card(client)
        with pytest.raises(stripe.InvalidRequestError) as caught:
            attach(client, pm.id, "cus_nope")
        assert caught.value.http_status == 404
        assert caught.value.code == "resource_missing"
        assert caught.value.param == "customer"
        assert str(caught.value.user_message) == "No such customer: 'cus_nope'"
        assert client.v1.payment_methods.retrieve(pm.id).customer is None

    def test_an_unknown_payment_method_is_a_404(self, client: stripe.StripeClient) -> None:
        with pytest.raises(stripe.InvalidRequestError) as caught:
            attach(client, "pm_nope", "cus_123")
        assert caught.value.http_status == 404
        assert caught.value.param == "payment_method"

    def test_the_customer_is_required(self, client: stripe.StripeClient) -> None:
        with pytest.raises(stripe.InvalidRequestError) as caught:
            client.v1.payment_methods.attach("pm_123")
        assert caught.value.http_status == 400
        assert caught.value.code == "parameter_missing"
        assert caught.value.param == "customer"


class TestDetach:
    def test_detach_unsets_the_customer_and_its_default(
        self, client: stripe.StripeClient, webhooks: WebhookReceiver
    ) -> None:
        customer = new_customer(client)
        pm = attach(client, "pm_card_visa", customer.id)
        client.v1.customers.update(
            customer.id, params={"invoice_settings": {"default_payment_method": pm.id}}
        )
        detached = client.v1.payment_methods.detach(pm.id)
        assert detached.id == pm.id
        assert detached.customer is None
        assert client.v1.payment_methods.retrieve(pm.id).customer is None
        got = client.v1.customers.retrieve(customer.id)
        assert default_of(got) is None
        event = webhooks.wait_for_event("payment_method.detached", pm.id)
        assert event["data"]["previous_attributes"] == {"customer": customer.id}
        updates = events_of(client, "customer.updated", customer.id)
        assert updates[0].data.to_dict()["previous_attributes"] == {
            "invoice_settings": {"default_payment_method": pm.id}
        }
        assert client.v1.customers.payment_methods.list(customer.id).data == []

    def test_a_detached_payment_method_cannot_be_attached_again(
        self, client: stripe.StripeClient
    ) -> None:
        customer = new_customer(client)
        pm = attach(client, "pm_card_visa", customer.id)
        client.v1.payment_methods.detach(pm.id)
        with pytest.raises(stripe.InvalidRequestError) as caught:
            attach(client, pm.id, customer.id)
        assert caught.value.http_status == 400
        assert "detached from a Customer, and may not be used again" in str(
            caught.value.user_message
        )

    def test_an_unattached_payment_method_cannot_be_detached(
        self, client: stripe.StripeClient
    ) -> None:
        with pytest.raises(stripe.InvalidRequestError) as caught:
            client.v1.payment_methods.detach("pm_123")
        assert caught.value.http_status == 400
        assert str(caught.value.user_message) == (
            "The payment method you provided is not attached to a customer so detachment is "
            "impossible."
        )

    def test_an_unknown_payment_method_is_a_404(self, client: stripe.StripeClient) -> None:
        with pytest.raises(stripe.InvalidRequestError) as caught:
            client.v1.payment_methods.detach("pm_nope")
        assert caught.value.http_status == 404
        assert caught.value.param == "payment_method"


class TestList:
    def test_filters_by_customer_and_type(self, client: stripe.StripeClient) -> None:
        customer, other = new_customer(client), new_customer(client)
        a = attach(client, "pm_card_visa", customer.id)
        b = attach(client, "pm_card_mastercard", customer.id)
        attach(client, "pm_card_visa", other.id)
        page = client.v1.payment_methods.list(params={"customer": customer.id})
        assert [p.id for p in page.data] == [b.id, a.id]
        assert page.url == "/v1/payment_methods"
        typed = client.v1.payment_methods.list(params={"customer": customer.id, "type": "card"})
        assert len(typed.data) == 2
        none = client.v1.payment_methods.list(params={"customer": customer.id, "type": "link"})
        assert none.data == []

    def test_without_a_customer_lists_every_payment_method(
        self, client: stripe.StripeClient
    ) -> None:
        pm = create_card(client)
        ids = [p.id for p in client.v1.payment_methods.list().data]
        assert ids == [pm.id, "pm_123"]

    def test_an_unknown_customer_is_a_404(self, client: stripe.StripeClient) -> None:
        with pytest.raises(stripe.InvalidRequestError) as caught:
            client.v1.payment_methods.list(params={"customer": "cus_nope"})
        assert caught.value.http_status == 404
        assert caught.value.param == "customer"


class TestCustomerPaymentMethods:
    def test_lists_a_customers_payment_methods_in_pages(self, client: stripe.StripeClient) -> None:
        customer = new_customer(client)
        made = [attach(client, "pm_card_visa", customer.id).id for _ in range(3)]
        attach(client, "pm_card_visa", "cus_123")
        newest_first = list(reversed(made))
        page = client.v1.customers.payment_methods.list(customer.id, params={"limit": 2})
        assert [p.id for p in page.data] == newest_first[:2]
        assert page.has_more is True
        assert page.url == f"/v1/customers/{customer.id}/payment_methods"
        rest = client.v1.customers.payment_methods.list(
            customer.id, params={"limit": 2, "starting_after": page.data[-1].id}
        )
        assert [p.id for p in rest.data] == newest_first[2:]
        assert rest.has_more is False
        back = client.v1.customers.payment_methods.list(
            customer.id, params={"ending_before": newest_first[2]}
        )
        assert [p.id for p in back.data] == newest_first[:2]
        typed = client.v1.customers.payment_methods.list(customer.id, params={"type": "card"})
        assert len(typed.data) == 3
        assert (
            client.v1.customers.payment_methods.list(
                customer.id, params={"type": "sepa_debit"}
            ).data
            == []
        )

    def test_a_cursor_from_another_customer_is_refused(self, client: stripe.StripeClient) -> None:
        customer = new_customer(client)
        foreign = attach(client, "pm_card_visa", "cus_123")
        with pytest.raises(stripe.InvalidRequestError) as caught:
            client.v1.customers.payment_methods.list(
                customer.id, params={"starting_after": foreign.id}
            )
        assert caught.value.http_status == 400
        assert caught.value.param == "starting_after"

    def test_retrieves_one_of_the_customers_payment_methods(
        self, client: stripe.StripeClient
    ) -> None:
        customer = new_customer(client)
        pm = attach(client, "pm_card_visa", customer.id)
        got = client.v1.customers.payment_methods.retrieve(customer.id, pm.id)
        assert got.id == pm.id
        assert got.customer == customer.id

    def test_a_payment_method_of_another_customer_is_a_404(
        self, client: stripe.StripeClient
    ) -> None:
        customer = new_customer(client)
        pm = attach(client, "pm_card_visa", "cus_123")
        with pytest.raises(stripe.InvalidRequestError) as caught:
            client.v1.customers.payment_methods.retrieve(customer.id, pm.id)
        assert caught.value.http_status == 404
        assert caught.value.code == "resource_missing"
        assert caught.value.param == "payment_method"

    def test_an_unknown_customer_is_a_404(self, client: stripe.StripeClient) -> None:
        for call in (
            lambda: client.v1.customers.payment_methods.list("cus_nope"),
            lambda: client.v1.customers.payment_methods.retrieve("cus_nope", "pm_123"),
        ):
            with pytest.raises(stripe.InvalidRequestError) as caught:
                call()
            assert caught.value.http_status == 404
            assert caught.value.param == "customer"
