"""Customers through the SDK: create, retrieve, update, list, delete, their events and webhooks."""

from __future__ import annotations

import re
import time
from typing import Any

import pytest
import stripe

from tests.fixtures.emulator import WEBHOOK_SECRET, WebhookReceiver


def raw(obj: Any) -> dict[str, Any]:
    """An SDK object as plain JSON-shaped dicts."""
    return dict(obj.to_dict())


def loose(params: dict[str, Any]) -> Any:
    """Params built at run time, which the SDK's TypedDicts cannot check statically."""
    return params


def default_of(customer: stripe.Customer) -> Any:
    assert customer.invoice_settings is not None
    return customer.invoice_settings.default_payment_method


def new_customer(client: stripe.StripeClient, **params: Any) -> stripe.Customer:
    return client.v1.customers.create(params=loose({"email": "jane@example.com", **params}))


def attached_visa(client: stripe.StripeClient, customer_id: str) -> stripe.PaymentMethod:
    return client.v1.payment_methods.attach("pm_card_visa", params={"customer": customer_id})


def events_of(client: stripe.StripeClient, type_: str, object_id: str) -> list[stripe.Event]:
    events = client.v1.events.list(params={"type": type_, "limit": 100})
    return [e for e in events.data if e.data.object["id"] == object_id]


class TestCreate:
    def test_the_seed_snippet_creates_a_customer_with_stripes_defaults(
        self, client: stripe.StripeClient
    ) -> None:
        before = int(time.time())
        customer = client.v1.customers.create(
            params={
                "email": "user@example.com",
                "name": "Jane Doe",
                "metadata": {"user_id": "usr_123"},
            }
        )
        assert re.fullmatch(r"cus_[A-Za-z0-9]{14}", customer.id)
        assert customer.object == "customer"
        assert customer.email == "user@example.com"
        assert customer.name == "Jane Doe"
        assert raw(customer)["metadata"] == {"user_id": "usr_123"}
        assert customer.balance == 0
        assert customer.currency is None
        assert customer.delinquent is False
        assert customer.livemode is False
        assert re.fullmatch(r"[A-Z0-9]{8}", customer.invoice_prefix or "")
        assert raw(customer)["invoice_settings"] == {
            "custom_fields": None,
            "default_payment_method": None,
            "footer": None,
            "rendering_options": None,
        }
        assert customer.next_invoice_sequence == 1
        assert customer.preferred_locales == []
        assert customer.tax_exempt == "none"
        assert customer.address is None
        assert customer.shipping is None
        assert customer.discount is None
        assert customer.test_clock is None
        assert before - 2 <= customer.created <= int(time.time()) + 2
        # Expandable-only fields are absent unless expanded.
        shown = customer.to_dict()
        for field in ("sources", "subscriptions", "tax", "tax_ids", "cash_balance"):
            assert field not in shown
        assert client.v1.customers.retrieve(customer.id).to_dict() == shown

    def test_every_simple_field_is_stored(self, client: stripe.StripeClient) -> None:
        customer = client.v1.customers.create(
            params={
                "email": "ops@example.com",
                "name": "Ops",
                "phone": "+15555550100",
                "description": "Key account",
                "address": {"line1": "1 Main St", "city": "Springfield", "country": "US"},
                "shipping": {"name": "Dock", "address": {"line1": "2 Pier", "postal_code": "9"}},
                "invoice_settings": {
                    "footer": "Thanks",
                    "custom_fields": [{"name": "VAT", "value": "GB1"}],
                    "rendering_options": {"amount_tax_display": "include_inclusive_tax"},
                },
                "preferred_locales": ["en", "fr"],
                "tax_exempt": "reverse",
                "invoice_prefix": "ACME01",
                "balance": -500,
                "next_invoice_sequence": 7,
            }
        )
        got = client.v1.customers.retrieve(customer.id)
        assert got.phone == "+15555550100"
        assert got.description == "Key account"
        assert got.address is not None
        assert got.address.to_dict() == {
            "city": "Springfield",
            "country": "US",
            "line1": "1 Main St",
            "line2": None,
            "postal_code": None,
            "state": None,
        }
        assert got.shipping is not None
        assert got.shipping.name == "Dock"
        assert got.shipping.address is not None
        assert got.shipping.address.line1 == "2 Pier"
        assert got.shipping.address.city is None
        assert raw(got)["invoice_settings"] == {
            "custom_fields": [{"name": "VAT", "value": "GB1"}],
            "default_payment_method": None,
            "footer": "Thanks",
            "rendering_options": {"amount_tax_display": "include_inclusive_tax", "template": None},
        }
        assert got.preferred_locales == ["en", "fr"]
        assert got.tax_exempt == "reverse"
        assert got.invoice_prefix == "ACME01"
        assert got.balance == -500
        assert got.next_invoice_sequence == 7

    def test_payment_method_at_creation_is_attached_and_can_be_the_default(
        self, client: stripe.StripeClient
    ) -> None:
        customer = client.v1.customers.create(
            params={
                "payment_method": "pm_card_visa",
                "invoice_settings": {"default_payment_method": "pm_card_visa"},
            }
        )
        default = default_of(customer)
        assert isinstance(default, str)
        assert default.startswith("pm_")
        assert default != "pm_card_visa"
        pm = client.v1.payment_methods.retrieve(default)
        assert pm.customer == customer.id
        listed = client.v1.customers.payment_methods.list(customer.id)
        assert [p.id for p in listed.data] == [default]
        assert len(events_of(client, "payment_method.attached", default)) == 1

    def test_a_declined_card_at_creation_creates_no_customer(
        self, client: stripe.StripeClient
    ) -> None:
        before = client.v1.customers.list(params={"limit": 100})
        with pytest.raises(stripe.CardError) as caught:
            client.v1.customers.create(params={"payment_method": "pm_card_chargeDeclined"})
        assert caught.value.http_status == 402
        assert caught.value.code == "card_declined"
        assert caught.value.error is not None
        assert caught.value.error.decline_code == "generic_decline"
        after = client.v1.customers.list(params={"limit": 100})
        assert len(after.data) == len(before.data)

    def test_an_unknown_payment_method_at_creation_is_a_404(
        self, client: stripe.StripeClient
    ) -> None:
        with pytest.raises(stripe.InvalidRequestError) as caught:
            client.v1.customers.create(params={"payment_method": "pm_doesnotexist"})
        assert caught.value.http_status == 404
        assert caught.value.code == "resource_missing"
        assert caught.value.param == "payment_method"

    def test_a_default_payment_method_that_is_not_attached_is_refused(
        self, client: stripe.StripeClient
    ) -> None:
        with pytest.raises(stripe.InvalidRequestError) as caught:
            client.v1.customers.create(
                params={"invoice_settings": {"default_payment_method": "pm_123"}}
            )
        assert caught.value.http_status == 400
        assert caught.value.param == "invoice_settings[default_payment_method]"
        assert "does not have a payment method with the ID pm_123" in str(caught.value)

    @pytest.mark.parametrize("email", ["otameshi@com", "no-at-sign", " a@b.com", "a@@b.com"])
    def test_a_malformed_email_is_refused(self, client: stripe.StripeClient, email: str) -> None:
        with pytest.raises(stripe.InvalidRequestError) as caught:
            client.v1.customers.create(params={"email": email})
        assert caught.value.http_status == 400
        assert caught.value.code == "email_invalid"
        assert caught.value.param == "email"
        assert str(caught.value.user_message) == f"Invalid email address: {email}"

    def test_a_bad_invoice_prefix_is_refused(self, client: stripe.StripeClient) -> None:
        with pytest.raises(stripe.InvalidRequestError) as caught:
            client.v1.customers.create(params={"invoice_prefix": "ab"})
        assert caught.value.http_status == 400
        assert caught.value.param == "invoice_prefix"

    def test_an_unknown_parameter_is_refused(self, client: stripe.StripeClient) -> None:
        with pytest.raises(stripe.InvalidRequestError) as caught:
            client.v1.customers.create(params=loose({"nickname": "jd"}))
        assert caught.value.http_status == 400
        assert caught.value.code == "parameter_unknown"
        assert caught.value.param == "nickname"


class TestRetrieve:
    def test_the_seeded_demo_customer_exists(self, client: stripe.StripeClient) -> None:
        customer = client.v1.customers.retrieve("cus_123")
        assert customer.name == "Jane Doe"
        assert customer.email == "user@example.com"

    def test_an_unknown_customer_is_a_404(self, client: stripe.StripeClient) -> None:
        with pytest.raises(stripe.InvalidRequestError) as caught:
            client.v1.customers.retrieve("cus_nope")
        assert caught.value.http_status == 404
        assert caught.value.code == "resource_missing"
        assert caught.value.param == "id"
        assert str(caught.value.user_message) == "No such customer: 'cus_nope'"

    def test_expandable_only_fields_appear_when_expanded(self, client: stripe.StripeClient) -> None:
        customer = new_customer(client)
        got = client.v1.customers.retrieve(
            customer.id, params={"expand": ["sources", "tax", "tax_ids"]}
        )
        assert got.sources is not None
        assert got.sources.data == []
        assert got.tax is not None
        assert got.tax.automatic_tax == "unrecognized_location"
        assert got.tax_ids is not None
        assert got.tax_ids.data == []


class TestUpdate:
    def test_fields_change_and_the_event_holds_their_previous_values(
        self, client: stripe.StripeClient, webhooks: WebhookReceiver
    ) -> None:
        customer = new_customer(client, name="Jane", metadata={"a": "1", "b": "2"})
        updated = client.v1.customers.update(
            customer.id,
            params={
                "name": "Jane Roe",
                "phone": "+15555550123",
                "metadata": {"a": "10", "b": "", "c": "3"},
                "address": {"city": "Paris"},
            },
        )
        assert updated.name == "Jane Roe"
        assert updated.phone == "+15555550123"
        assert raw(updated)["metadata"] == {"a": "10", "c": "3"}
        assert updated.address is not None
        assert updated.address.city == "Paris"
        assert client.v1.customers.retrieve(customer.id).to_dict() == updated.to_dict()
        event = webhooks.wait_for_event("customer.updated", customer.id)
        assert event["data"]["previous_attributes"] == {
            "name": "Jane",
            "phone": None,
            "metadata": {"a": "1", "b": "2", "c": None},
            "address": None,
        }
        assert event["data"]["object"]["name"] == "Jane Roe"

    def test_an_update_that_changes_nothing_emits_no_event(
        self, client: stripe.StripeClient
    ) -> None:
        customer = new_customer(client, name="Same")
        client.v1.customers.update(customer.id, params={"name": "Same"})
        assert events_of(client, "customer.updated", customer.id) == []

    def test_empty_strings_unset_fields(self, client: stripe.StripeClient) -> None:
        customer = new_customer(client, name="Jane", phone="+1555", address={"city": "X"})
        updated = client.v1.customers.update(
            customer.id, params={"name": "", "phone": "", "address": "", "metadata": ""}
        )
        assert updated.name is None
        assert updated.phone is None
        assert updated.address is None
        assert updated.email == "jane@example.com"

    def test_the_seed_snippet_sets_an_attached_default_payment_method(
        self, client: stripe.StripeClient
    ) -> None:
        pm = client.v1.payment_methods.attach("pm_123", params={"customer": "cus_123"})
        assert pm.customer == "cus_123"
        customer = client.v1.customers.update(
            "cus_123", params={"invoice_settings": {"default_payment_method": "pm_123"}}
        )
        assert default_of(customer) == "pm_123"
        got = client.v1.customers.retrieve(
            "cus_123", params={"expand": ["invoice_settings.default_payment_method"]}
        )
        default = default_of(got)
        assert isinstance(default, stripe.PaymentMethod)
        assert default.id == "pm_123"
        assert default.card is not None
        assert default.card.last4 == "4242"
        event = events_of(client, "customer.updated", "cus_123")[0]
        assert event.data.to_dict()["previous_attributes"] == {
            "invoice_settings": {"default_payment_method": None}
        }

    def test_a_default_payment_method_of_another_customer_is_refused(
        self, client: stripe.StripeClient
    ) -> None:
        other = new_customer(client)
        pm = attached_visa(client, other.id)
        customer = new_customer(client)
        with pytest.raises(stripe.InvalidRequestError) as caught:
            client.v1.customers.update(
                customer.id,
                params={
                    "name": "Changed",
                    "invoice_settings": {"default_payment_method": pm.id},
                },
            )
        assert caught.value.http_status == 400
        assert caught.value.code == "resource_missing"
        assert caught.value.param == "invoice_settings[default_payment_method]"
        assert str(caught.value.user_message) == (
            f"The customer does not have a payment method with the ID {pm.id}. "
            "The payment method must be attached to the customer."
        )
        got = client.v1.customers.retrieve(customer.id)
        assert got.name is None
        assert default_of(got) is None

    def test_a_test_token_cannot_be_the_default(self, client: stripe.StripeClient) -> None:
        with pytest.raises(stripe.InvalidRequestError) as caught:
            client.v1.customers.update(
                "cus_123", params={"invoice_settings": {"default_payment_method": "pm_card_visa"}}
            )
        assert caught.value.param == "invoice_settings[default_payment_method]"

    def test_the_default_payment_method_can_be_cleared(self, client: stripe.StripeClient) -> None:
        customer = new_customer(client)
        pm = attached_visa(client, customer.id)
        client.v1.customers.update(
            customer.id, params={"invoice_settings": {"default_payment_method": pm.id}}
        )
        cleared = client.v1.customers.update(
            customer.id, params={"invoice_settings": {"default_payment_method": ""}}
        )
        assert default_of(cleared) is None

    def test_an_unknown_customer_is_a_404(self, client: stripe.StripeClient) -> None:
        with pytest.raises(stripe.InvalidRequestError) as caught:
            client.v1.customers.update("cus_nope", params={"name": "x"})
        assert caught.value.http_status == 404
        assert caught.value.code == "resource_missing"
        assert caught.value.param == "id"

    def test_a_malformed_email_is_refused(self, client: stripe.StripeClient) -> None:
        with pytest.raises(stripe.InvalidRequestError) as caught:
            client.v1.customers.update("cus_123", params={"email": "user@"})
        assert caught.value.code == "email_invalid"
        assert client.v1.customers.retrieve("cus_123").email == "user@example.com"


class TestList:
    def test_pages_newest_first_with_cursors(self, client: stripe.StripeClient) -> None:
        made = [new_customer(client, name=f"c{i}").id for i in range(5)]
        newest_first = [*reversed(made), "cus_123"]
        page = client.v1.customers.list(params={"limit": 2})
        assert raw(page)["object"] == "list"
        assert page.url == "/v1/customers"
        assert [c.id for c in page.data] == newest_first[:2]
        assert page.has_more is True
        page2 = client.v1.customers.list(params={"limit": 2, "starting_after": page.data[-1].id})
        assert [c.id for c in page2.data] == newest_first[2:4]
        last = client.v1.customers.list(params={"limit": 5, "starting_after": newest_first[3]})
        assert [c.id for c in last.data] == newest_first[4:]
        assert last.has_more is False
        back = client.v1.customers.list(params={"limit": 2, "ending_before": newest_first[4]})
        assert [c.id for c in back.data] == newest_first[2:4]
        assert back.has_more is True
        every = [c.id for c in client.v1.customers.list(params={"limit": 2}).auto_paging_iter()]
        assert every == newest_first

    def test_filters_by_email_exactly(self, client: stripe.StripeClient) -> None:
        a = new_customer(client, email="a@example.com")
        new_customer(client, email="b@example.com")
        found = client.v1.customers.list(params={"email": "a@example.com"})
        assert [c.id for c in found.data] == [a.id]
        assert client.v1.customers.list(params={"email": "A@example.com"}).data == []

    def test_filters_by_created(self, client: stripe.StripeClient) -> None:
        customer = new_customer(client)
        future = client.v1.customers.list(params={"created": {"gt": customer.created + 10}})
        assert future.data == []
        recent = client.v1.customers.list(params={"created": {"gte": customer.created}})
        assert customer.id in [c.id for c in recent.data]

    def test_a_limit_out_of_range_is_refused(self, client: stripe.StripeClient) -> None:
        with pytest.raises(stripe.InvalidRequestError) as caught:
            client.v1.customers.list(params={"limit": 101})
        assert caught.value.http_status == 400
        assert caught.value.param == "limit"

    def test_an_unknown_cursor_is_refused(self, client: stripe.StripeClient) -> None:
        with pytest.raises(stripe.InvalidRequestError) as caught:
            client.v1.customers.list(params={"starting_after": "cus_nope"})
        assert caught.value.http_status == 400
        assert caught.value.code == "resource_missing"
        assert caught.value.param == "starting_after"


class TestDelete:
    def test_delete_answers_the_stub_and_retrieve_keeps_answering_it(
        self, client: stripe.StripeClient, webhooks: WebhookReceiver
    ) -> None:
        customer = new_customer(client)
        deleted = client.v1.customers.delete(customer.id)
        assert deleted.to_dict() == {"id": customer.id, "object": "customer", "deleted": True}
        again = client.v1.customers.retrieve(customer.id)
        assert again.to_dict() == {"id": customer.id, "object": "customer", "deleted": True}
        listed = client.v1.customers.list(params={"limit": 100})
        assert customer.id not in [c.id for c in listed.data]
        event = webhooks.wait_for_event("customer.deleted", customer.id)
        assert event["data"]["object"]["email"] == "jane@example.com"

    def test_a_deleted_customer_cannot_be_updated_or_deleted_again(
        self, client: stripe.StripeClient
    ) -> None:
        customer = new_customer(client)
        client.v1.customers.delete(customer.id)
        for call in (
            lambda: client.v1.customers.update(customer.id, params={"name": "x"}),
            lambda: client.v1.customers.delete(customer.id),
            lambda: client.v1.payment_methods.attach(
                "pm_card_visa", params={"customer": customer.id}
            ),
        ):
            with pytest.raises(stripe.InvalidRequestError) as caught:
                call()
            assert caught.value.http_status == 404
            assert caught.value.code == "resource_missing"

    def test_deleting_detaches_the_customers_payment_methods(
        self, client: stripe.StripeClient
    ) -> None:
        customer = new_customer(client)
        pm = attached_visa(client, customer.id)
        client.v1.customers.delete(customer.id)
        assert client.v1.payment_methods.retrieve(pm.id).customer is None

    def test_an_unknown_customer_is_a_404(self, client: stripe.StripeClient) -> None:
        with pytest.raises(stripe.InvalidRequestError) as caught:
            client.v1.customers.delete("cus_nope")
        assert caught.value.http_status == 404
        assert caught.value.param == "id"


class TestEvents:
    def test_create_records_customer_created_and_delivers_it_signed(
        self, client: stripe.StripeClient, webhooks: WebhookReceiver
    ) -> None:
        customer = client.v1.customers.create(
            params={"email": "user@example.com", "name": "Jane Doe"}
        )
        events = client.v1.events.list(params={"type": "customer.created"})
        assert [e.data.object["id"] for e in events.data] == [customer.id]
        recorded = events.data[0]
        assert recorded.data.object["email"] == "user@example.com"
        webhooks.wait_for_event("customer.created", customer.id)
        received = next(r for r in webhooks.received if r.event["id"] == recorded.id)
        verified = stripe.Webhook.construct_event(
            received.body, received.headers["Stripe-Signature"], WEBHOOK_SECRET
        )
        assert verified.type == "customer.created"
        assert verified.data.object["id"] == customer.id

    def test_the_seeded_customer_has_no_events(self, client: stripe.StripeClient) -> None:
        assert client.v1.events.list(params={"type": "customer.*"}).data == []
