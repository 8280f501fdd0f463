"""Charges through the SDK: the charge a confirmation makes, retrieve, list and its filters."""

from __future__ import annotations

import pytest
import stripe

from tests.emulator.test_payment_intents import RETURN_URL, authorized_intent, paid_intent


class TestCharges:
    def test_retrieve_has_every_field_stripe_fills(self, client: stripe.StripeClient) -> None:
        pi = paid_intent(
            client,
            customer="cus_123",
            description="Order 7",
            metadata={"order_id": "7"},
            receipt_email="jane@example.com",
            statement_descriptor_suffix="ORDER 7",
        )
        assert isinstance(pi.latest_charge, str)
        charge = client.v1.charges.retrieve(pi.latest_charge)
        assert charge.id.startswith("ch_")
        assert charge.object == "charge"
        assert charge.amount == 2000
        assert charge.currency == "usd"
        assert charge.customer == "cus_123"
        assert charge.description == "Order 7"
        assert charge.metadata.to_dict() == {"order_id": "7"}
        assert charge.receipt_email == "jane@example.com"
        assert charge.statement_descriptor_suffix == "ORDER 7"
        assert charge.calculated_statement_descriptor == "EMU* ORDER 7"
        assert charge.payment_intent == pi.id
        assert charge.disputed is False
        assert charge.refunded is False
        assert charge.livemode is False
        assert charge.fraud_details is not None
        assert charge.fraud_details.to_dict() == {}
        assert charge.receipt_url is not None
        assert charge.billing_details is not None
        assert charge.failure_code is None
        details = charge.payment_method_details
        assert details is not None
        assert details.card is not None
        assert details.card.exp_year is not None
        assert details.card.checks is not None
        assert details.card.checks.cvc_check == "pass"
        assert details.card.funding == "credit"
        assert "refunds" not in charge.to_dict()

    def test_an_unknown_charge_is_a_404(self, client: stripe.StripeClient) -> None:
        with pytest.raises(stripe.InvalidRequestError) as caught:
            client.v1.charges.retrieve("ch_missing")
        assert caught.value.http_status == 404
        assert caught.value.error is not None
        assert caught.value.error.code == "resource_missing"
        assert caught.value.error.message == "No such charge: 'ch_missing'"

    def test_list_filters_by_payment_intent_and_customer(self, client: stripe.StripeClient) -> None:
        first = paid_intent(client, customer="cus_123")
        second = paid_intent(client)
        third = authorized_intent(client)
        everything = client.v1.charges.list()
        assert [c.id for c in everything.data] == [
            third.latest_charge,
            second.latest_charge,
            first.latest_charge,
        ]
        assert everything.url == "/v1/charges"
        by_intent = client.v1.charges.list(params={"payment_intent": second.id})
        assert [c.id for c in by_intent.data] == [second.latest_charge]
        by_customer = client.v1.charges.list(params={"customer": "cus_123"})
        assert [c.id for c in by_customer.data] == [first.latest_charge]
        page = client.v1.charges.list(params={"limit": 1})
        assert page.has_more is True
        assert [c.id for c in page.data] == [third.latest_charge]
        after = client.v1.charges.list(params={"limit": 2, "starting_after": page.data[0].id})
        assert [c.id for c in after.data] == [second.latest_charge, first.latest_charge]
        assert after.has_more is False

    def test_expand_refunds_and_payment_intent(self, client: stripe.StripeClient) -> None:
        pi = paid_intent(client)
        assert isinstance(pi.latest_charge, str)
        refund = client.v1.refunds.create(params={"payment_intent": pi.id, "amount": 500})
        charge = client.v1.charges.retrieve(
            pi.latest_charge, params={"expand": ["refunds", "payment_intent"]}
        )
        assert charge.refunds is not None
        assert [r.id for r in charge.refunds.data] == [refund.id]
        assert charge.refunds.url == f"/v1/charges/{charge.id}/refunds"
        assert isinstance(charge.payment_intent, stripe.PaymentIntent)
        assert charge.payment_intent.id == pi.id

    def test_a_declined_charge_is_listed_with_its_intent(self, client: stripe.StripeClient) -> None:
        pi = client.v1.payment_intents.create(params={"amount": 1500, "currency": "usd"})
        with pytest.raises(stripe.CardError):
            client.v1.payment_intents.confirm(
                pi.id, params={"payment_method": "pm_card_chargeDeclined", "return_url": RETURN_URL}
            )
        charges = client.v1.charges.list(params={"payment_intent": pi.id}).data
        assert [c.status for c in charges] == ["failed"]
        assert charges[0].amount == 1500
