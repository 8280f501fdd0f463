"""Checkout Sessions through the SDK: the seed's snippets, line items, expand, expire, list,
completion by the control and by the hosted page, and the signed webhooks that follow."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import stripe

from tests.fixtures.emulator import WEBHOOK_SECRET, WebhookReceiver

ONE_TIME: dict[str, Any] = {
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
SUBSCRIPTION: dict[str, Any] = {
    "line_items": [{"price": "price_monthly", "quantity": 1}],
    "mode": "subscription",
    "success_url": "https://example.com/success",
    "cancel_url": "https://example.com/cancel",
    "customer": "cus_123",
    "subscription_data": {"trial_period_days": 14, "metadata": {"plan": "premium"}},
}
SETUP: dict[str, Any] = {
    "mode": "setup",
    "customer": "cus_123",
    "success_url": "https://example.com/success",
    "cancel_url": "https://example.com/cancel",
    "currency": "usd",
}
TOTAL = 1500 + 2 * 2000


def complete(controls: httpx.Client, session_id: str, **body: Any) -> httpx.Response:
    return controls.post(f"/_emulator/checkout/sessions/{session_id}/complete", json=body)


def verified(webhooks: WebhookReceiver, type_: str, object_id: str) -> stripe.Event:
    """The delivery of an event, checked with the SDK's signature verification."""
    webhooks.wait_for_event(type_, object_id)
    for r in webhooks.received:
        event = r.event
        if event["type"] == type_ and event["data"]["object"]["id"] == object_id:
            verified_event: stripe.Event = stripe.Webhook.construct_event(
                r.body, r.headers["Stripe-Signature"], WEBHOOK_SECRET
            )
            return verified_event
    raise AssertionError(f"no {type_} for {object_id}")


def order_of(webhooks: WebhookReceiver, types: list[str], objects: set[str]) -> list[str]:
    """The order these types arrived in for these objects; a previous test's late
    deliveries (the receiver is shared) are someone else's."""
    return [
        e["type"]
        for e in webhooks.events()
        if e["type"] in types and e["data"]["object"]["id"] in objects
    ]


class TestCreate:
    def test_one_time_payment_snippet(self, client: stripe.StripeClient) -> None:
        session = client.v1.checkout.sessions.create(params=ONE_TIME)  # type: ignore[arg-type]
        assert session.id.startswith("cs_test_")
        assert session.object == "checkout.session"
        assert session.mode == "payment"
        assert session.status == "open"
        assert session.payment_status == "unpaid"
        assert session.amount_subtotal == TOTAL
        assert session.amount_total == TOTAL
        assert session.currency == "usd"
        assert session.payment_intent is None
        assert session.customer is None
        assert session.customer_email == "customer@example.com"
        assert session.customer_creation == "if_required"
        assert session.allow_promotion_codes is True
        assert session.billing_address_collection == "required"
        assert session.phone_number_collection is not None
        assert session.phone_number_collection.enabled is True
        assert session.metadata is not None
        assert session.metadata.to_dict() == {"order_id": "order_12345"}
        assert session.url is not None
        assert session.url.endswith(f"/checkout/pay/{session.id}")
        assert session.expires_at - session.created == 86400
        assert session.success_url == ONE_TIME["success_url"]
        assert "line_items" not in session.to_dict()
        again = client.v1.checkout.sessions.retrieve(session.id)
        assert again.to_dict() == session.to_dict()

    def test_subscription_snippet(self, client: stripe.StripeClient) -> None:
        session = client.v1.checkout.sessions.create(params=SUBSCRIPTION)  # type: ignore[arg-type]
        assert session.mode == "subscription"
        assert session.customer == "cus_123"
        assert session.subscription is None
        assert session.amount_total == 0
        assert session.payment_status == "no_payment_required"
        assert session.payment_method_collection == "always"
        assert session.customer_creation is None

    def test_setup_snippet(self, client: stripe.StripeClient) -> None:
        session = client.v1.checkout.sessions.create(params=SETUP)  # type: ignore[arg-type]
        assert session.mode == "setup"
        assert session.customer == "cus_123"
        assert session.amount_total is None
        assert session.currency == "usd"
        assert session.payment_status == "no_payment_required"
        assert session.setup_intent is None

    def test_client_reference_and_expiry(self, client: stripe.StripeClient) -> None:
        probe = client.v1.checkout.sessions.create(params=SETUP)  # type: ignore[arg-type]
        session = client.v1.checkout.sessions.create(
            params={
                "line_items": [{"price": "price_mug", "quantity": 3}],
                "mode": "payment",
                "client_reference_id": "cart_9",
                "expires_at": probe.created + 3600,
                "payment_intent_data": {"metadata": {"k": "v"}, "description": "3 mugs"},
            }
        )
        assert session.client_reference_id == "cart_9"
        assert session.expires_at == probe.created + 3600
        assert session.amount_total == 3600

    @pytest.mark.parametrize(
        ("params", "param", "code"),
        [
            ({"mode": "payment"}, "line_items", "parameter_missing"),
            (
                {"mode": "payment", "line_items": [{"price": "price_monthly", "quantity": 1}]},
                "line_items[0]",
                None,
            ),
            (
                {"mode": "subscription", "line_items": [{"price": "price_123", "quantity": 1}]},
                "line_items",
                None,
            ),
            (
                {**SETUP, "line_items": [{"price": "price_123", "quantity": 1}]},
                "line_items",
                None,
            ),
            ({"mode": "setup", "customer": "cus_123"}, "currency", "parameter_missing"),
            (
                {"mode": "payment", "line_items": [{"price": "price_x", "quantity": 1}]},
                "line_items[0][price]",
                "resource_missing",
            ),
            (
                {
                    "mode": "payment",
                    "line_items": [
                        {"price_data": {"currency": "usd", "unit_amount": 100}, "quantity": 1}
                    ],
                },
                "line_items[0][price_data][product]",
                "parameter_missing",
            ),
            (
                {"mode": "payment", "line_items": [{"price": "price_123"}]},
                "line_items[0][quantity]",
                "parameter_missing",
            ),
            (
                {
                    "mode": "payment",
                    "line_items": [{"price": "price_123", "quantity": 1}],
                    "customer": "cus_123",
                    "customer_email": "a@example.com",
                },
                "customer_email",
                None,
            ),
            (
                {
                    "mode": "payment",
                    "line_items": [{"price": "price_123", "quantity": 1}],
                    "customer": "cus_nope",
                },
                "customer",
                "resource_missing",
            ),
            (
                {
                    "mode": "payment",
                    "line_items": [{"price": "price_123", "quantity": 1}],
                    "expires_at": 1,
                },
                "expires_at",
                None,
            ),
            (
                {
                    "mode": "payment",
                    "line_items": [
                        {
                            "price_data": {
                                "currency": "usd",
                                "unit_amount": 10,
                                "product_data": {"name": "Gum"},
                            },
                            "quantity": 1,
                        }
                    ],
                },
                "line_items",
                None,
            ),
            (
                {
                    "mode": "payment",
                    "line_items": [{"price": "price_123", "quantity": 1}],
                    "subscription_data": {"trial_period_days": 3},
                },
                "subscription_data",
                None,
            ),
        ],
    )
    def test_refused(
        self, client: stripe.StripeClient, params: dict[str, Any], param: str, code: str | None
    ) -> None:
        with pytest.raises(stripe.InvalidRequestError) as info:
            client.v1.checkout.sessions.create(params=params)  # type: ignore[arg-type]
        assert info.value.http_status == 400
        assert info.value.error is not None
        assert info.value.error.type == "invalid_request_error"
        assert info.value.code == code
        assert info.value.param == param
        assert client.v1.checkout.sessions.list().data == []

    def test_recurring_in_payment_mode_message(self, client: stripe.StripeClient) -> None:
        with pytest.raises(stripe.InvalidRequestError) as info:
            client.v1.checkout.sessions.create(
                params={
                    "mode": "payment",
                    "line_items": [{"price": "price_monthly", "quantity": 1}],
                }
            )
        assert "You specified `payment` mode but passed a recurring price" in str(
            info.value.user_message
        )


class TestLineItems:
    def test_list_and_expand(self, client: stripe.StripeClient) -> None:
        session = client.v1.checkout.sessions.create(params=ONE_TIME)  # type: ignore[arg-type]
        items = client.v1.checkout.sessions.line_items.list(session.id)
        assert items["object"] == "list"
        assert items.url == f"/v1/checkout/sessions/{session.id}/line_items"
        assert [i.quantity for i in items.data] == [1, 2]
        first, second = items.data
        assert first.id.startswith("li_")
        assert first.object == "item"
        assert first.description == "Demo product"
        assert first.amount_total == 1500
        assert first.price is not None
        assert first.price.id == "price_123"
        assert second.description == "T-shirt"
        assert second.amount_subtotal == 4000
        assert second.currency == "usd"
        assert second.price is not None
        assert second.price.unit_amount == 2000
        assert second.price.active is False
        product = client.v1.products.retrieve(second.price.product)  # type: ignore[arg-type]
        assert product.name == "T-shirt"
        assert product.images == ["https://example.com/tshirt.png"]
        page = client.v1.checkout.sessions.line_items.list(session.id, params={"limit": 1})
        assert [i.id for i in page.data] == [first.id]
        assert page.has_more is True
        rest = client.v1.checkout.sessions.line_items.list(
            session.id, params={"starting_after": first.id}
        )
        assert [i.id for i in rest.data] == [second.id]
        assert rest.has_more is False
        expanded = client.v1.checkout.sessions.retrieve(
            session.id, params={"expand": ["line_items"]}
        )
        assert expanded.line_items is not None
        assert [i.id for i in expanded.line_items.data] == [first.id, second.id]
        deep = client.v1.checkout.sessions.retrieve(
            session.id, params={"expand": ["line_items.data.price.product"]}
        )
        assert deep.line_items is not None
        price = deep.line_items.data[0].price
        assert price is not None
        assert isinstance(price.product, stripe.Product)
        assert price.product.name == "Demo product"

    def test_unknown_session(self, client: stripe.StripeClient) -> None:
        with pytest.raises(stripe.InvalidRequestError) as info:
            client.v1.checkout.sessions.line_items.list("cs_test_nope")
        assert info.value.http_status == 404
        assert info.value.code == "resource_missing"
        assert info.value.param == "session"


class TestExpireListUpdate:
    def test_expire(self, client: stripe.StripeClient, webhooks: WebhookReceiver) -> None:
        session = client.v1.checkout.sessions.create(params=ONE_TIME)  # type: ignore[arg-type]
        expired = client.v1.checkout.sessions.expire(session.id)
        assert expired.status == "expired"
        assert expired.url is None
        assert client.v1.checkout.sessions.retrieve(session.id).status == "expired"
        event = verified(webhooks, "checkout.session.expired", session.id)
        assert event.data.object["status"] == "expired"
        with pytest.raises(stripe.InvalidRequestError) as info:
            client.v1.checkout.sessions.expire(session.id)
        assert info.value.http_status == 400
        assert info.value.param is None
        assert "can be expired" in str(info.value.user_message)

    def test_expires_when_its_time_passes(
        self, client: stripe.StripeClient, controls: httpx.Client, webhooks: WebhookReceiver
    ) -> None:
        session = client.v1.checkout.sessions.create(params=ONE_TIME)  # type: ignore[arg-type]
        controls.post("/_emulator/clock", json={"advance_seconds": 86400}).raise_for_status()
        assert client.v1.checkout.sessions.retrieve(session.id).status == "expired"
        webhooks.wait_for_event("checkout.session.expired", session.id)
        assert complete(controls, session.id).status_code == 400

    def test_list(self, client: stripe.StripeClient, controls: httpx.Client) -> None:
        a = client.v1.checkout.sessions.create(params=ONE_TIME)  # type: ignore[arg-type]
        b = client.v1.checkout.sessions.create(params=SUBSCRIPTION)  # type: ignore[arg-type]
        c = client.v1.checkout.sessions.create(params=ONE_TIME)  # type: ignore[arg-type]
        client.v1.checkout.sessions.expire(c.id)
        assert [s.id for s in client.v1.checkout.sessions.list().data] == [c.id, b.id, a.id]
        assert [s.id for s in client.v1.checkout.sessions.list(params={"status": "open"})] == [
            b.id,
            a.id,
        ]
        by_customer = client.v1.checkout.sessions.list(params={"customer": "cus_123"})
        assert [s.id for s in by_customer.data] == [b.id]
        complete(controls, a.id).raise_for_status()
        paid = client.v1.checkout.sessions.retrieve(a.id)
        assert isinstance(paid.payment_intent, str)
        by_intent = client.v1.checkout.sessions.list(params={"payment_intent": paid.payment_intent})
        assert [s.id for s in by_intent.data] == [a.id]

    def test_update_metadata(self, client: stripe.StripeClient) -> None:
        session = client.v1.checkout.sessions.create(params=ONE_TIME)  # type: ignore[arg-type]
        updated = client.v1.checkout.sessions.update(
            session.id, params={"metadata": {"order_id": "", "note": "gift"}}
        )
        assert updated.metadata is not None
        assert updated.metadata.to_dict() == {"note": "gift"}
        stored = client.v1.checkout.sessions.retrieve(session.id).metadata
        assert stored is not None
        assert stored.to_dict() == {"note": "gift"}

    def test_update_line_items_refused_on_hosted_page(self, client: stripe.StripeClient) -> None:
        session = client.v1.checkout.sessions.create(params=ONE_TIME)  # type: ignore[arg-type]
        with pytest.raises(stripe.InvalidRequestError) as info:
            client.v1.checkout.sessions.update(
                session.id, params={"line_items": [{"price": "price_mug", "quantity": 1}]}
            )
        assert info.value.http_status == 400
        assert info.value.param == "line_items"
        items = client.v1.checkout.sessions.line_items.list(session.id)
        assert len(items.data) == 2

    def test_unknown_session(self, client: stripe.StripeClient) -> None:
        with pytest.raises(stripe.InvalidRequestError) as info:
            client.v1.checkout.sessions.retrieve("cs_test_nope")
        assert info.value.http_status == 404
        assert info.value.code == "resource_missing"


class TestCompletePayment:
    def test_paid_with_visa(
        self, client: stripe.StripeClient, controls: httpx.Client, webhooks: WebhookReceiver
    ) -> None:
        session = client.v1.checkout.sessions.create(params=ONE_TIME)  # type: ignore[arg-type]
        answer = complete(controls, session.id, payment_method="pm_card_visa")
        assert answer.status_code == 200
        assert answer.json()["status"] == "complete"
        done = client.v1.checkout.sessions.retrieve(
            session.id, params={"expand": ["line_items", "customer", "payment_intent"]}
        )
        assert done.status == "complete"
        assert done.payment_status == "paid"
        assert done.customer is None  # customer_creation if_required: no customer in payment mode
        assert done.customer_details is not None
        assert done.customer_details.email == "customer@example.com"
        assert isinstance(done.payment_intent, stripe.PaymentIntent)
        assert done.payment_intent.status == "succeeded"
        assert done.payment_intent.amount == TOTAL
        assert done.payment_intent.currency == "usd"
        assert done.line_items is not None
        assert len(done.line_items.data) == 2
        event = verified(webhooks, "checkout.session.completed", session.id)
        assert event.data.object["payment_intent"] == done.payment_intent.id
        assert event.data.object["payment_status"] == "paid"
        types = order_of(
            webhooks,
            ["payment_intent.created", "payment_intent.succeeded", "checkout.session.completed"],
            {done.payment_intent.id, session.id},
        )
        assert types == [
            "payment_intent.created",
            "payment_intent.succeeded",
            "checkout.session.completed",
        ]
        again = complete(controls, session.id)
        assert again.status_code == 400
        assert again.json()["error"]["type"] == "invalid_request_error"

    def test_intent_data_and_customer(
        self, client: stripe.StripeClient, controls: httpx.Client
    ) -> None:
        session = client.v1.checkout.sessions.create(
            params={
                "line_items": [{"price": "price_tshirt", "quantity": 1}],
                "mode": "payment",
                "customer": "cus_123",
                "payment_intent_data": {
                    "metadata": {"order_id": "o1"},
                    "description": "One shirt",
                    "capture_method": "manual",
                },
            }
        )
        complete(controls, session.id).raise_for_status()
        done = client.v1.checkout.sessions.retrieve(session.id)
        assert done.status == "complete"
        assert done.payment_status == "unpaid"  # authorised, not captured
        assert isinstance(done.payment_intent, str)
        intent = client.v1.payment_intents.retrieve(done.payment_intent)
        assert intent.status == "requires_capture"
        assert intent.customer == "cus_123"
        assert intent.description == "One shirt"
        assert intent.metadata.to_dict() == {"order_id": "o1"}

    def test_customer_creation_always(
        self, client: stripe.StripeClient, controls: httpx.Client, webhooks: WebhookReceiver
    ) -> None:
        session = client.v1.checkout.sessions.create(
            params={**ONE_TIME, "customer_creation": "always"}  # type: ignore[arg-type]
        )
        complete(controls, session.id, name="Ada Lovelace").raise_for_status()
        done = client.v1.checkout.sessions.retrieve(session.id)
        assert isinstance(done.customer, str)
        customer = client.v1.customers.retrieve(done.customer)
        assert customer.email == "customer@example.com"
        webhooks.wait_for_event("customer.created", done.customer)

    def test_declined(
        self, client: stripe.StripeClient, controls: httpx.Client, webhooks: WebhookReceiver
    ) -> None:
        session = client.v1.checkout.sessions.create(params=ONE_TIME)  # type: ignore[arg-type]
        answer = complete(controls, session.id, payment_method="pm_card_chargeDeclined")
        assert answer.status_code == 402
        error = answer.json()["error"]
        assert error["type"] == "card_error"
        assert error["code"] == "card_declined"
        assert error["decline_code"] == "generic_decline"
        still = client.v1.checkout.sessions.retrieve(session.id)
        assert still.status == "open"
        assert still.payment_status == "unpaid"
        complete(controls, session.id, payment_method="pm_card_visa").raise_for_status()
        done = client.v1.checkout.sessions.retrieve(session.id)
        assert done.status == "complete"
        assert done.payment_intent == still.payment_intent
        verified(webhooks, "checkout.session.completed", session.id)

    def test_three_d_secure(
        self, client: stripe.StripeClient, controls: httpx.Client, webhooks: WebhookReceiver
    ) -> None:
        session = client.v1.checkout.sessions.create(params=ONE_TIME)  # type: ignore[arg-type]
        answer = complete(controls, session.id, payment_method="pm_card_authenticationRequired")
        assert answer.status_code == 200
        assert answer.json()["status"] == "open"
        pi_id = answer.json()["payment_intent"]
        assert client.v1.payment_intents.retrieve(pi_id).status == "requires_action"
        controls.post(
            f"/_emulator/payment_intents/{pi_id}/authenticate", json={"outcome": "succeed"}
        ).raise_for_status()
        done = client.v1.checkout.sessions.retrieve(session.id)
        assert done.status == "complete"
        assert done.payment_status == "paid"
        verified(webhooks, "checkout.session.completed", session.id)

    def test_settles_later(
        self, client: stripe.StripeClient, controls: httpx.Client, webhooks: WebhookReceiver
    ) -> None:
        session = client.v1.checkout.sessions.create(params=ONE_TIME)  # type: ignore[arg-type]
        answer = complete(controls, session.id, payment_method="pm_card_delayedSettlement")
        assert answer.status_code == 200
        body = answer.json()
        assert body["status"] == "complete"
        assert body["payment_status"] == "unpaid"
        controls.post(
            f"/_emulator/payment_intents/{body['payment_intent']}/settle",
            json={"outcome": "succeed"},
        ).raise_for_status()
        assert client.v1.checkout.sessions.retrieve(session.id).payment_status == "paid"
        event = verified(webhooks, "checkout.session.async_payment_succeeded", session.id)
        assert event.data.object["payment_status"] == "paid"

    def test_settlement_fails(
        self, client: stripe.StripeClient, controls: httpx.Client, webhooks: WebhookReceiver
    ) -> None:
        session = client.v1.checkout.sessions.create(params=ONE_TIME)  # type: ignore[arg-type]
        body = complete(controls, session.id, payment_method="pm_card_delayedSettlement").json()
        controls.post(
            f"/_emulator/payment_intents/{body['payment_intent']}/settle",
            json={"outcome": "fail"},
        ).raise_for_status()
        verified(webhooks, "checkout.session.async_payment_failed", session.id)
        assert client.v1.checkout.sessions.retrieve(session.id).payment_status == "unpaid"


class TestCompleteOtherModes:
    def test_subscription(
        self, client: stripe.StripeClient, controls: httpx.Client, webhooks: WebhookReceiver
    ) -> None:
        session = client.v1.checkout.sessions.create(params=SUBSCRIPTION)  # type: ignore[arg-type]
        complete(controls, session.id).raise_for_status()
        done = client.v1.checkout.sessions.retrieve(session.id, params={"expand": ["subscription"]})
        assert done.status == "complete"
        assert done.payment_status == "no_payment_required"
        assert done.payment_intent is None
        sub = done.subscription
        assert isinstance(sub, stripe.Subscription)
        assert sub.status == "trialing"
        assert sub.customer == "cus_123"
        assert sub.metadata.to_dict() == {"plan": "premium"}
        assert sub.trial_start is not None
        assert sub.trial_end is not None
        assert sub.trial_end - sub.trial_start == 14 * 86400
        item = sub["items"].data[0]
        assert item.price.id == "price_monthly"
        assert item.current_period_end == sub.trial_end
        # A trial's first invoice: $0, paid at once (the session's `invoice`).
        assert isinstance(sub.latest_invoice, str)
        assert done.invoice == sub.latest_invoice
        invoice = client.v1.invoices.retrieve(sub.latest_invoice)
        assert (invoice.status, invoice.amount_due) == ("paid", 0)
        assert invoice.billing_reason == "subscription_create"
        assert isinstance(sub.default_payment_method, str)
        pm = client.v1.payment_methods.retrieve(sub.default_payment_method)
        assert pm.customer == "cus_123"
        verified(webhooks, "checkout.session.completed", session.id)
        types = order_of(
            webhooks,
            ["customer.subscription.created", "checkout.session.completed"],
            {sub.id, session.id},
        )
        assert types == ["customer.subscription.created", "checkout.session.completed"]

    def test_subscription_without_trial_creates_customer(
        self, client: stripe.StripeClient, controls: httpx.Client
    ) -> None:
        session = client.v1.checkout.sessions.create(
            params={
                "line_items": [{"price": "price_monthly", "quantity": 2}],
                "mode": "subscription",
                "customer_email": "new@example.com",
            }
        )
        assert session.amount_total == 5800
        complete(controls, session.id).raise_for_status()
        done = client.v1.checkout.sessions.retrieve(session.id)
        assert done.payment_status == "paid"
        assert isinstance(done.customer, str)
        assert client.v1.customers.retrieve(done.customer).email == "new@example.com"
        assert isinstance(done.subscription, str)
        sub = client.v1.subscriptions.retrieve(done.subscription)
        assert sub.status == "active"
        assert sub["items"].data[0].quantity == 2
        # The first invoice is paid with the session's card.
        assert done.invoice == sub.latest_invoice
        invoice = client.v1.invoices.retrieve(str(done.invoice), params={"expand": ["payments"]})
        assert (invoice.status, invoice.amount_paid) == ("paid", 5800)
        pi = client.v1.payment_intents.retrieve(
            str(invoice.payments.data[0].payment.payment_intent)
        )
        assert pi.status == "succeeded"
        assert pi.payment_method == sub.default_payment_method

    def test_setup(
        self, client: stripe.StripeClient, controls: httpx.Client, webhooks: WebhookReceiver
    ) -> None:
        session = client.v1.checkout.sessions.create(params=SETUP)  # type: ignore[arg-type]
        complete(controls, session.id, payment_method="pm_card_mastercard").raise_for_status()
        done = client.v1.checkout.sessions.retrieve(session.id, params={"expand": ["setup_intent"]})
        assert done.status == "complete"
        assert done.payment_status == "no_payment_required"
        seti = done.setup_intent
        assert isinstance(seti, stripe.SetupIntent)
        assert seti.status == "succeeded"
        assert seti.usage == "off_session"
        assert seti.customer == "cus_123"
        assert isinstance(seti.payment_method, str)
        assert client.v1.payment_methods.retrieve(seti.payment_method).customer == "cus_123"
        verified(webhooks, "setup_intent.succeeded", seti.id)
        verified(webhooks, "checkout.session.completed", session.id)
        types = order_of(
            webhooks,
            ["setup_intent.created", "setup_intent.succeeded", "checkout.session.completed"],
            {seti.id, session.id},
        )
        assert types == [
            "setup_intent.created",
            "setup_intent.succeeded",
            "checkout.session.completed",
        ]

    def test_bad_control_body(self, client: stripe.StripeClient, controls: httpx.Client) -> None:
        session = client.v1.checkout.sessions.create(params=ONE_TIME)  # type: ignore[arg-type]
        for body in ({"payment_method": 5}, {"email": ["x"]}):
            answer = complete(controls, session.id, **body)
            assert answer.status_code == 400
            assert answer.json()["error"]["type"] == "invalid_request_error"
        missing = complete(controls, session.id, payment_method="pm_missing")
        assert missing.status_code == 404
        assert missing.json()["error"]["code"] == "resource_missing"
        assert client.v1.checkout.sessions.retrieve(session.id).status == "open"

    def test_unknown_session(self, controls: httpx.Client) -> None:
        answer = complete(controls, "cs_test_nope")
        assert answer.status_code == 404
        assert answer.json()["error"]["code"] == "resource_missing"


class TestHostedPage:
    def test_page_and_pay(
        self, client: stripe.StripeClient, controls: httpx.Client, webhooks: WebhookReceiver
    ) -> None:
        session = client.v1.checkout.sessions.create(params=ONE_TIME)  # type: ignore[arg-type]
        assert session.url is not None
        page = httpx.get(session.url)
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert "Demo product" in page.text
        assert "T-shirt" in page.text
        assert "$55.00" in page.text
        assert "$40.00" in page.text
        assert 'href="https://example.com/cancel"' in page.text
        answer = httpx.post(session.url, data={"payment_method": "pm_card_visa"})
        assert answer.status_code == 303
        assert answer.headers["location"] == f"https://example.com/success?session_id={session.id}"
        done = client.v1.checkout.sessions.retrieve(session.id)
        assert done.status == "complete"
        assert done.payment_status == "paid"
        verified(webhooks, "checkout.session.completed", session.id)
        closed = httpx.get(session.url)
        assert closed.status_code == 200
        assert "already complete" in closed.text

    def test_decline_rerenders(self, client: stripe.StripeClient) -> None:
        session = client.v1.checkout.sessions.create(params=ONE_TIME)  # type: ignore[arg-type]
        assert session.url is not None
        answer = httpx.post(session.url, data={"payment_method": "pm_card_chargeDeclined"})
        assert answer.status_code == 402
        assert "Your card was declined." in answer.text
        assert client.v1.checkout.sessions.retrieve(session.id).status == "open"

    def test_three_d_secure_redirects(self, client: stripe.StripeClient) -> None:
        session = client.v1.checkout.sessions.create(params=ONE_TIME)  # type: ignore[arg-type]
        assert session.url is not None
        answer = httpx.post(session.url, data={"payment_method": "pm_card_authenticationRequired"})
        assert answer.status_code == 303
        challenge = answer.headers["location"]
        assert "/_emulator/3ds/" in challenge
        back = httpx.post(challenge, data={"outcome": "succeed"})
        assert back.status_code == 303
        assert back.headers["location"].startswith(session.url)
        final = httpx.get(back.headers["location"])
        assert final.status_code == 303
        assert final.headers["location"].endswith(session.id)
        assert client.v1.checkout.sessions.retrieve(session.id).status == "complete"

    def test_expired_and_escaping(self, client: stripe.StripeClient) -> None:
        session = client.v1.checkout.sessions.create(
            params={
                "mode": "payment",
                "line_items": [
                    {
                        "price_data": {
                            "currency": "eur",
                            "unit_amount": 999,
                            "product_data": {"name": "<script>alert(1)</script>"},
                        },
                        "quantity": 1,
                    }
                ],
            }
        )
        assert session.url is not None
        page = httpx.get(session.url)
        assert "<script>alert(1)</script>" not in page.text
        assert "&lt;script&gt;" in page.text
        assert "€9.99" in page.text
        client.v1.checkout.sessions.expire(session.id)
        gone = httpx.get(session.url)
        assert gone.status_code == 200
        assert "expired" in gone.text
        assert httpx.post(session.url, data={}).status_code == 200
        assert client.v1.checkout.sessions.retrieve(session.id).status == "expired"
