"""Refunds through the SDK: by intent or charge, partial and full, the charge following, the
refusals, retrieve, update, list and cancel, with events and signed webhooks."""

from __future__ import annotations

import pytest
import stripe

from tests.emulator.test_payment_intents import (
    authorized_intent,
    event_types,
    new_intent,
    paid_intent,
    signed_event,
)
from tests.fixtures.emulator import WebhookReceiver


class TestRefunds:
    def test_the_seed_refund_then_the_rest(
        self, client: stripe.StripeClient, webhooks: WebhookReceiver
    ) -> None:
        pi = paid_intent(client)
        assert isinstance(pi.latest_charge, str)
        refund = client.v1.refunds.create(
            params={"payment_intent": pi.id, "amount": 1000, "reason": "requested_by_customer"}
        )
        assert refund.id.startswith("re_")
        assert refund.object == "refund"
        assert refund.amount == 1000
        assert refund.currency == "usd"
        assert refund.status == "succeeded"
        assert refund.reason == "requested_by_customer"
        assert refund.charge == pi.latest_charge
        assert refund.payment_intent == pi.id
        assert isinstance(refund.balance_transaction, str)
        assert refund.balance_transaction.startswith("txn_")
        assert client.v1.refunds.retrieve(refund.id).to_dict() == refund.to_dict()
        charge = client.v1.charges.retrieve(pi.latest_charge)
        assert charge.amount_refunded == 1000
        assert charge.refunded is False

        rest = client.v1.refunds.create(params={"payment_intent": pi.id})
        assert rest.amount == 1000
        assert rest.reason is None
        charge = client.v1.charges.retrieve(pi.latest_charge)
        assert charge.amount_refunded == 2000
        assert charge.refunded is True
        assert client.v1.payment_intents.retrieve(pi.id).status == "succeeded"

        assert event_types(client, refund.id) == ["refund.created"]
        assert event_types(client, charge.id) == [
            "charge.succeeded",
            "charge.refunded",
            "charge.refunded",
        ]
        refunded = list(client.v1.events.list(params={"type": "charge.refunded"}).data)
        assert refunded[0].data.previous_attributes is not None
        assert refunded[0].data.previous_attributes.to_dict() == {
            "amount_refunded": 1000,
            "refunded": False,
        }
        assert refunded[1].data.previous_attributes is not None
        assert refunded[1].data.previous_attributes.to_dict() == {"amount_refunded": 0}
        event = signed_event(webhooks, "refund.created", rest.id)
        assert event.data.object["amount"] == 1000
        signed_event(webhooks, "charge.refunded", charge.id)

    def test_refund_by_charge(self, client: stripe.StripeClient) -> None:
        pi = paid_intent(client)
        assert isinstance(pi.latest_charge, str)
        refund = client.v1.refunds.create(
            params={"charge": pi.latest_charge, "metadata": {"ticket": "42"}}
        )
        assert refund.amount == 2000
        assert refund.payment_intent == pi.id
        assert refund.metadata is not None
        assert refund.metadata.to_dict() == {"ticket": "42"}
        assert client.v1.charges.retrieve(pi.latest_charge).refunded is True

    def test_neither_charge_nor_intent_is_refused(self, client: stripe.StripeClient) -> None:
        with pytest.raises(stripe.InvalidRequestError) as caught:
            client.v1.refunds.create(params={"amount": 100})
        assert caught.value.http_status == 400
        assert caught.value.error is not None
        assert caught.value.error.type == "invalid_request_error"
        assert caught.value.error.message == (
            "One of the following params should be provided for this request: payment_intent "
            "or charge."
        )

    def test_more_than_is_left_is_refused(self, client: stripe.StripeClient) -> None:
        pi = paid_intent(client)
        client.v1.refunds.create(params={"payment_intent": pi.id, "amount": 1500})
        with pytest.raises(stripe.InvalidRequestError) as caught:
            client.v1.refunds.create(params={"payment_intent": pi.id, "amount": 600})
        assert caught.value.http_status == 400
        assert caught.value.error is not None
        assert caught.value.error.param == "amount"
        assert caught.value.error.message == (
            "Refund amount ($6.00) is greater than unrefunded amount on charge ($5.00)"
        )
        assert isinstance(pi.latest_charge, str)
        assert client.v1.charges.retrieve(pi.latest_charge).amount_refunded == 1500

    def test_a_fully_refunded_charge_is_refused(self, client: stripe.StripeClient) -> None:
        pi = paid_intent(client)
        client.v1.refunds.create(params={"payment_intent": pi.id})
        with pytest.raises(stripe.InvalidRequestError) as caught:
            client.v1.refunds.create(params={"payment_intent": pi.id})
        assert caught.value.http_status == 400
        assert caught.value.error is not None
        assert caught.value.error.code == "charge_already_refunded"
        assert caught.value.error.message == f"Charge {pi.latest_charge} has already been refunded."

    @pytest.mark.parametrize("state", ["requires_payment_method", "requires_capture", "canceled"])
    def test_an_intent_without_a_successful_charge_is_refused(
        self, client: stripe.StripeClient, state: str
    ) -> None:
        if state == "requires_capture":
            pi = authorized_intent(client)
        else:
            pi = new_intent(client)
            if state == "canceled":
                client.v1.payment_intents.cancel(pi.id)
        with pytest.raises(stripe.InvalidRequestError) as caught:
            client.v1.refunds.create(params={"payment_intent": pi.id})
        assert caught.value.http_status == 400
        assert caught.value.error is not None
        assert caught.value.error.message == (
            f"This PaymentIntent ({pi.id}) does not have a successful charge to refund."
        )
        assert client.v1.refunds.list().data == []

    def test_an_unknown_intent_or_charge_is_a_404(self, client: stripe.StripeClient) -> None:
        with pytest.raises(stripe.InvalidRequestError) as caught:
            client.v1.refunds.create(params={"payment_intent": "pi_missing"})
        assert caught.value.http_status == 404
        assert caught.value.error is not None
        assert caught.value.error.param == "payment_intent"
        with pytest.raises(stripe.InvalidRequestError) as caught:
            client.v1.refunds.create(params={"charge": "ch_missing"})
        assert caught.value.http_status == 404
        assert caught.value.error is not None
        assert caught.value.error.param == "charge"

    def test_a_partially_captured_payment_refunds_what_was_captured(
        self, client: stripe.StripeClient
    ) -> None:
        pi = authorized_intent(client)
        client.v1.payment_intents.capture(pi.id, params={"amount_to_capture": 4500})
        refund = client.v1.refunds.create(params={"payment_intent": pi.id})
        assert refund.amount == 4500
        assert isinstance(pi.latest_charge, str)
        charge = client.v1.charges.retrieve(pi.latest_charge)
        assert charge.amount_refunded == 5000
        assert charge.refunded is True

    def test_update_merges_metadata(self, client: stripe.StripeClient) -> None:
        pi = paid_intent(client)
        refund = client.v1.refunds.create(params={"payment_intent": pi.id, "metadata": {"a": "1"}})
        updated = client.v1.refunds.update(refund.id, params={"metadata": {"b": "2"}})
        assert updated.metadata is not None
        assert updated.metadata.to_dict() == {"a": "1", "b": "2"}
        again = client.v1.refunds.retrieve(refund.id)
        assert again.metadata is not None
        assert again.metadata.to_dict() == {"a": "1", "b": "2"}
        assert event_types(client, refund.id) == ["refund.created", "refund.updated"]

    def test_list_filters_by_intent_and_charge(self, client: stripe.StripeClient) -> None:
        one = paid_intent(client)
        two = paid_intent(client)
        first = client.v1.refunds.create(params={"payment_intent": one.id, "amount": 100})
        second = client.v1.refunds.create(params={"payment_intent": two.id, "amount": 100})
        third = client.v1.refunds.create(params={"payment_intent": one.id, "amount": 100})
        everything = client.v1.refunds.list()
        assert [r.id for r in everything.data] == [third.id, second.id, first.id]
        assert everything.url == "/v1/refunds"
        by_intent = client.v1.refunds.list(params={"payment_intent": one.id})
        assert [r.id for r in by_intent.data] == [third.id, first.id]
        assert isinstance(two.latest_charge, str)
        by_charge = client.v1.refunds.list(params={"charge": two.latest_charge})
        assert [r.id for r in by_charge.data] == [second.id]
        page = client.v1.refunds.list(params={"limit": 2})
        assert page.has_more is True

    def test_a_succeeded_refund_cannot_be_canceled(self, client: stripe.StripeClient) -> None:
        pi = paid_intent(client)
        refund = client.v1.refunds.create(params={"payment_intent": pi.id})
        with pytest.raises(stripe.InvalidRequestError) as caught:
            client.v1.refunds.cancel(refund.id)
        assert caught.value.http_status == 400
        assert caught.value.error is not None
        assert caught.value.error.type == "invalid_request_error"
        assert client.v1.refunds.retrieve(refund.id).status == "succeeded"

    def test_an_unknown_refund_is_a_404(self, client: stripe.StripeClient) -> None:
        with pytest.raises(stripe.InvalidRequestError) as caught:
            client.v1.refunds.retrieve("re_missing")
        assert caught.value.http_status == 404
        assert caught.value.error is not None
        assert caught.value.error.code == "resource_missing"
        assert caught.value.error.message == "No such refund: 're_missing'"

    def test_an_unknown_reason_is_refused(self, client: stripe.StripeClient) -> None:
        pi = paid_intent(client)
        with pytest.raises(stripe.InvalidRequestError) as caught:
            client.v1.refunds.create(params={"payment_intent": pi.id, "reason": "changed_mind"})
        assert caught.value.http_status == 400
        assert caught.value.error is not None
        assert caught.value.error.param == "reason"
