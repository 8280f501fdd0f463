"""The seed document's snippets (checkout-and-payments.md), translated to the Python SDK and run
as written against the emulator; ids the seed leaves to the reader come from earlier steps."""

from __future__ import annotations

import importlib
from typing import Any

import httpx
import pytest
import stripe
from stripe._object_classes import OBJECT_CLASSES


def sdk_fields(object_name: str) -> set[str]:
    module, name = OBJECT_CLASSES[object_name]
    cls = getattr(importlib.import_module(module), name)
    return {
        field
        for field, hint in cls.__dict__.get("__annotations__", {}).items()
        if field.islower() and field != "deleted" and "ClassVar" not in str(hint)
    }


# Server-side confirmation of an intent that allows redirecting payment methods needs one.
RETURN_URL = "https://example.com/order/complete"

# Fields Stripe leaves out of a response unless they are expanded.
EXPAND_ONLY = {
    "customer": {
        "cash_balance",
        "invoice_credit_balance",
        "sources",
        "subscriptions",
        "tax",
        "tax_ids",
    },
    "checkout.session": {"line_items"},
    "charge": {"refunds"},
}


def assert_every_field(obj: stripe.StripeObject) -> None:
    """Stripe returns every field of an object (null where it does not apply)."""
    name = str(obj["object"])
    assert set(obj.to_dict()) == sdk_fields(name) - EXPAND_ONLY.get(name, set())


class TestCheckoutSessions:
    def test_one_time_payment(self, client: stripe.StripeClient, controls: httpx.Client) -> None:
        session = client.v1.checkout.sessions.create(
            params={
                "line_items": [
                    {"price": "price_123", "quantity": 1},
                    {
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
                    },
                ],
                "mode": "payment",
                "success_url": "https://example.com/success?session_id={CHECKOUT_SESSION_ID}",
                "cancel_url": "https://example.com/cancel",
                "customer_email": "customer@example.com",
                "allow_promotion_codes": True,
                "billing_address_collection": "required",
                "phone_number_collection": {"enabled": True},
                "metadata": {"order_id": "order_12345"},
            }
        )
        assert_every_field(session)
        price_123 = client.v1.prices.retrieve("price_123")
        assert session.amount_total == price_123.unit_amount + 2 * 2000
        assert session.url is not None
        assert httpx.get(session.url).status_code == 200
        assert session.status == "open"
        assert session.metadata.to_dict() == {"order_id": "order_12345"}

    def test_subscription(self, client: stripe.StripeClient) -> None:
        session = client.v1.checkout.sessions.create(
            params={
                "line_items": [{"price": "price_monthly", "quantity": 1}],
                "mode": "subscription",
                "success_url": "https://example.com/success",
                "cancel_url": "https://example.com/cancel",
                "customer": "cus_123",
                "subscription_data": {"trial_period_days": 14, "metadata": {"plan": "premium"}},
            }
        )
        assert session.mode == "subscription"
        assert session.customer == "cus_123"

    def test_setup_mode(self, client: stripe.StripeClient) -> None:
        session = client.v1.checkout.sessions.create(
            params={
                "mode": "setup",
                "customer": "cus_123",
                "success_url": "https://example.com/success",
                "cancel_url": "https://example.com/cancel",
                "currency": "usd",
            }
        )
        assert session.mode == "setup"

    def test_retrieve_with_expanded_objects(
        self, client: stripe.StripeClient, controls: httpx.Client
    ) -> None:
        created = client.v1.checkout.sessions.create(
            params={
                "line_items": [{"price": "price_123", "quantity": 1}],
                "mode": "payment",
                "success_url": "https://example.com/success",
                "customer": "cus_123",
            }
        )
        controls.post(
            f"/_emulator/checkout/sessions/{created.id}/complete",
            json={"payment_method": "pm_card_visa"},
        ).raise_for_status()
        session = client.v1.checkout.sessions.retrieve(
            created.id, params={"expand": ["line_items", "customer", "payment_intent"]}
        )
        assert session.line_items is not None
        assert session.line_items.data[0].price is not None
        assert session.line_items.data[0].price.id == "price_123"
        assert isinstance(session.customer, stripe.Customer)
        assert session.customer.id == "cus_123"
        assert isinstance(session.payment_intent, stripe.PaymentIntent)
        assert session.payment_intent.status == "succeeded"
        assert_every_field(session.payment_intent)


class TestPaymentIntents:
    def test_create_as_written_is_refused_for_statement_descriptor(
        self, client: stripe.StripeClient
    ) -> None:
        params: dict[str, Any] = {
            "amount": 2000,
            "currency": "usd",
            "customer": "cus_123",
            "automatic_payment_methods": {"enabled": True},
            "description": "Software subscription",
            "metadata": {"order_id": "order_12345", "product": "pro_subscription"},
            "receipt_email": "customer@example.com",
            "statement_descriptor": "MYCOMPANY SUB",
        }
        with pytest.raises(stripe.InvalidRequestError) as info:
            client.v1.payment_intents.create(params=params)  # type: ignore[arg-type]
        assert info.value.param == "statement_descriptor"
        assert client.v1.payment_intents.list().data == []
        del params["statement_descriptor"]
        params["statement_descriptor_suffix"] = "MYCOMPANY SUB"
        intent = client.v1.payment_intents.create(params=params)  # type: ignore[arg-type]
        assert_every_field(intent)
        assert intent.status == "requires_payment_method"
        assert intent.client_secret is not None
        assert intent.client_secret.startswith(intent.id + "_secret_")
        assert intent.statement_descriptor_suffix == "MYCOMPANY SUB"

    def test_confirm_server_side(self, client: stripe.StripeClient) -> None:
        intent = client.v1.payment_intents.create(
            params={
                "amount": 2000,
                "currency": "usd",
                "automatic_payment_methods": {"enabled": True},
            }
        )
        confirmed = client.v1.payment_intents.confirm(
            intent.id,
            params={
                "payment_method": "pm_card_visa",
                "return_url": "https://example.com/order/complete",
            },
        )
        assert confirmed.status == "succeeded"
        assert confirmed.amount_received == 2000
        assert isinstance(confirmed.latest_charge, str)
        charge = client.v1.charges.retrieve(confirmed.latest_charge)
        assert_every_field(charge)
        assert charge.paid is True

    def test_manual_capture(self, client: stripe.StripeClient) -> None:
        intent = client.v1.payment_intents.create(
            params={
                "amount": 5000,
                "currency": "usd",
                "capture_method": "manual",
                "automatic_payment_methods": {"enabled": True},
            }
        )
        client.v1.payment_intents.confirm(
            intent.id, params={"payment_method": "pm_card_visa", "return_url": RETURN_URL}
        )
        captured = client.v1.payment_intents.capture(intent.id, params={"amount_to_capture": 4500})
        assert captured.status == "succeeded"
        assert captured.amount_received == 4500

    def test_cancel(self, client: stripe.StripeClient) -> None:
        intent = client.v1.payment_intents.create(params={"amount": 2000, "currency": "usd"})
        cancelled = client.v1.payment_intents.cancel(
            intent.id, params={"cancellation_reason": "requested_by_customer"}
        )
        assert cancelled.status == "canceled"
        assert cancelled.cancellation_reason == "requested_by_customer"

    def test_search(self, client: stripe.StripeClient) -> None:
        for order_id in ("12345", "67890"):
            intent = client.v1.payment_intents.create(
                params={"amount": 2000, "currency": "usd", "metadata": {"order_id": order_id}}
            )
            client.v1.payment_intents.confirm(
                intent.id, params={"payment_method": "pm_card_visa", "return_url": RETURN_URL}
            )
        results = client.v1.payment_intents.search(
            params={"query": "status:'succeeded' AND metadata['order_id']:'12345'"}
        )
        assert [pi.metadata["order_id"] for pi in results.data] == ["12345"]

    def test_express_endpoint_pattern(self, client: stripe.StripeClient) -> None:
        intent = client.v1.payment_intents.create(
            params={
                "amount": 1999,
                "currency": "usd",
                "automatic_payment_methods": {"enabled": True},
            }
        )
        assert intent.client_secret is not None


class TestCustomersAndRefunds:
    def test_create_customer(self, client: stripe.StripeClient) -> None:
        customer = client.v1.customers.create(
            params={
                "email": "user@example.com",
                "name": "Jane Doe",
                "metadata": {"user_id": "usr_123"},
            }
        )
        assert_every_field(customer)
        assert customer.email == "user@example.com"

    def test_attach_payment_method(self, client: stripe.StripeClient) -> None:
        customer = client.v1.customers.create(params={"email": "user@example.com"})
        pm = client.v1.payment_methods.attach("pm_card_visa", params={"customer": customer.id})
        assert_every_field(pm)
        updated = client.v1.customers.update(
            customer.id, params={"invoice_settings": {"default_payment_method": pm.id}}
        )
        assert updated.invoice_settings is not None
        assert updated.invoice_settings.default_payment_method == pm.id

    def test_refund(self, client: stripe.StripeClient) -> None:
        intent = client.v1.payment_intents.create(
            params={
                "amount": 2000,
                "currency": "usd",
                "confirm": True,
                "payment_method": "pm_card_visa",
                "return_url": RETURN_URL,
            }
        )
        refund = client.v1.refunds.create(
            params={"payment_intent": intent.id, "amount": 1000, "reason": "requested_by_customer"}
        )
        assert_every_field(refund)
        assert refund.amount == 1000
        rest = client.v1.refunds.create(params={"payment_intent": intent.id})
        assert rest.amount == 1000
        assert isinstance(intent.latest_charge, str)
        assert client.v1.charges.retrieve(intent.latest_charge).refunded is True

    def test_idempotency_key(self, client: stripe.StripeClient) -> None:
        order_id = 42
        first = client.v1.payment_intents.create(
            params={"amount": 2000, "currency": "usd"},
            options={"idempotency_key": f"order_{order_id}"},
        )
        again = client.v1.payment_intents.create(
            params={"amount": 2000, "currency": "usd"},
            options={"idempotency_key": f"order_{order_id}"},
        )
        assert again.id == first.id
        assert len(client.v1.payment_intents.list().data) == 1
