"""Subscriptions and SetupIntents through the SDK: made by completed checkout sessions, then
retrieved and listed."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import stripe

from tests.fixtures.emulator import WEBHOOK_SECRET, WebhookReceiver


def subscribe(
    client: stripe.StripeClient, controls: httpx.Client, price: str, **extra: Any
) -> stripe.checkout.Session:
    params: dict[str, Any] = {
        "line_items": [{"price": price, "quantity": 1}],
        "mode": "subscription",
        "customer": "cus_123",
        **extra,
    }
    session = client.v1.checkout.sessions.create(params=params)  # type: ignore[arg-type]
    controls.post(f"/_emulator/checkout/sessions/{session.id}/complete", json={}).raise_for_status()
    return client.v1.checkout.sessions.retrieve(session.id)


def save_card(
    client: stripe.StripeClient, controls: httpx.Client, customer: str | None = "cus_123"
) -> stripe.checkout.Session:
    params: dict[str, Any] = {"mode": "setup", "currency": "usd"}
    if customer is not None:
        params["customer"] = customer
    session = client.v1.checkout.sessions.create(params=params)  # type: ignore[arg-type]
    controls.post(f"/_emulator/checkout/sessions/{session.id}/complete", json={}).raise_for_status()
    return client.v1.checkout.sessions.retrieve(session.id)


class TestSubscriptions:
    def test_retrieve(
        self, client: stripe.StripeClient, controls: httpx.Client, webhooks: WebhookReceiver
    ) -> None:
        session = subscribe(client, controls, "price_monthly")
        assert isinstance(session.subscription, str)
        sub = client.v1.subscriptions.retrieve(session.subscription)
        assert sub.id.startswith("sub_")
        assert sub.object == "subscription"
        assert sub.status == "active"
        assert sub.customer == "cus_123"
        assert sub.currency == "usd"
        assert sub.collection_method == "charge_automatically"
        assert sub.cancel_at_period_end is False
        assert sub.trial_start is None
        assert sub.trial_end is None
        items = sub["items"]
        assert items.object == "list"
        item = items.data[0]
        assert item.id.startswith("si_")
        assert item.subscription == sub.id
        assert item.price.id == "price_monthly"
        assert item.plan.id == "price_monthly"
        assert item.plan.amount == 2900
        assert item.current_period_start == sub.start_date
        # one calendar month: 28 to 31 days
        assert 28 * 86400 <= item.current_period_end - item.current_period_start <= 31 * 86400
        webhooks.wait_for_event("customer.subscription.created", sub.id)
        delivery = next(
            r for r in webhooks.received if r.event["type"] == "customer.subscription.created"
        )
        event = stripe.Webhook.construct_event(
            delivery.body, delivery.headers["Stripe-Signature"], WEBHOOK_SECRET
        )
        assert event.data.object["id"] == sub.id
        assert event.data.object["status"] == "active"

    def test_list_filters(self, client: stripe.StripeClient, controls: httpx.Client) -> None:
        monthly = subscribe(client, controls, "price_monthly")
        trial = subscribe(
            client, controls, "price_monthly", subscription_data={"trial_period_days": 7}
        )
        yearly_price = client.v1.prices.create(
            params={
                "currency": "usd",
                "unit_amount": 30000,
                "product": "prod_premium",
                "recurring": {"interval": "year"},
            }
        )
        yearly = subscribe(client, controls, yearly_price.id)
        listed = client.v1.subscriptions.list()
        assert [s.id for s in listed.data] == [
            yearly.subscription,
            trial.subscription,
            monthly.subscription,
        ]
        trialing = client.v1.subscriptions.list(params={"status": "trialing"})
        assert [s.id for s in trialing.data] == [trial.subscription]
        by_price = client.v1.subscriptions.list(params={"price": yearly_price.id})
        assert [s.id for s in by_price.data] == [yearly.subscription]
        by_customer = client.v1.subscriptions.list(params={"customer": "cus_123", "limit": 1})
        assert len(by_customer.data) == 1
        assert by_customer.has_more is True
        assert client.v1.subscriptions.list(params={"customer": "cus_other"}).data == []
        assert client.v1.subscriptions.list(params={"status": "canceled"}).data == []

    def test_unknown(self, client: stripe.StripeClient) -> None:
        with pytest.raises(stripe.InvalidRequestError) as info:
            client.v1.subscriptions.retrieve("sub_nope")
        assert info.value.http_status == 404
        assert info.value.code == "resource_missing"
        assert info.value.param == "id"


class TestSetupIntents:
    def test_retrieve_and_list(self, client: stripe.StripeClient, controls: httpx.Client) -> None:
        first = save_card(client, controls)
        second = save_card(client, controls, customer=None)
        assert isinstance(first.setup_intent, str)
        assert isinstance(second.setup_intent, str)
        seti = client.v1.setup_intents.retrieve(first.setup_intent)
        assert seti.id.startswith("seti_")
        assert seti.status == "succeeded"
        assert seti.usage == "off_session"
        assert seti.customer == "cus_123"
        assert seti.client_secret is not None
        assert seti.client_secret.startswith(seti.id + "_secret_")
        assert seti.payment_method_types == ["card"]
        guest = client.v1.setup_intents.retrieve(second.setup_intent)
        assert guest.customer is None
        listed = client.v1.setup_intents.list()
        assert [s.id for s in listed.data] == [second.setup_intent, first.setup_intent]
        mine = client.v1.setup_intents.list(params={"customer": "cus_123"})
        assert [s.id for s in mine.data] == [first.setup_intent]
        assert isinstance(seti.payment_method, str)
        by_pm = client.v1.setup_intents.list(params={"payment_method": seti.payment_method})
        assert [s.id for s in by_pm.data] == [first.setup_intent]

    def test_declined_card_is_not_saved(
        self, client: stripe.StripeClient, controls: httpx.Client
    ) -> None:
        session = client.v1.checkout.sessions.create(
            params={"mode": "setup", "currency": "usd", "customer": "cus_123"}
        )
        answer = controls.post(
            f"/_emulator/checkout/sessions/{session.id}/complete",
            json={"payment_method": "pm_card_chargeDeclined"},
        )
        assert answer.status_code == 402
        assert answer.json()["error"]["code"] == "card_declined"
        assert client.v1.checkout.sessions.retrieve(session.id).status == "open"
        assert client.v1.setup_intents.list().data == []

    def test_unknown(self, client: stripe.StripeClient) -> None:
        with pytest.raises(stripe.InvalidRequestError) as info:
            client.v1.setup_intents.retrieve("seti_nope")
        assert info.value.http_status == 404
        assert info.value.code == "resource_missing"
        assert info.value.param == "id"
