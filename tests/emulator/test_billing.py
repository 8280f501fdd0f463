"""Stripe Billing over test clocks, through the SDK against the emulator process: subscriptions,
their invoices and payments, renewals as a clock advances, and the signed events of each step.

Stripe's documented behaviour is the spec: https://docs.stripe.com/billing/testing/test-clocks
(advance only forward, at most two intervals of the shortest subscription),
https://docs.stripe.com/billing/subscriptions/overview (statuses, the first invoice, renewals),
https://docs.stripe.com/api/invoices/object (an invoice's fields in this API version).
"""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest
import stripe

from tests.fixtures.emulator import WEBHOOK_SECRET, WebhookReceiver

DAY = 86400
START = 1_767_225_600  # 2026-01-01T00:00:00Z: calendar months are 31, 28, 31 days from here


def new_clock(client: stripe.StripeClient, at: int = START) -> stripe.test_helpers.TestClock:
    return client.v1.test_helpers.test_clocks.create(params={"frozen_time": at, "name": "t"})


def clocked_customer(
    client: stripe.StripeClient, clock: str, card: str = "pm_card_visa"
) -> stripe.Customer:
    """A customer on `clock` whose default payment method is `card`."""
    customer = client.v1.customers.create(params={"test_clock": clock, "email": "a@example.com"})
    pm = client.v1.payment_methods.attach(card, params={"customer": customer.id})
    return client.v1.customers.update(
        customer.id, params={"invoice_settings": {"default_payment_method": pm.id}}
    )


def advance(client: stripe.StripeClient, clock: str, to: int) -> stripe.test_helpers.TestClock:
    """Advance and poll until `ready`, as a client of Stripe does."""
    answer = client.v1.test_helpers.test_clocks.advance(clock, params={"frozen_time": to})
    assert answer.status in ("advancing", "ready")
    for _ in range(200):
        found = client.v1.test_helpers.test_clocks.retrieve(clock)
        if found.status == "ready":
            assert found.frozen_time == to
            return found
        time.sleep(0.01)
    raise AssertionError("the test clock never became ready")


def invoices_of(client: stripe.StripeClient, sub: str) -> list[stripe.Invoice]:
    """The subscription's invoices, oldest first."""
    page = client.v1.invoices.list(params={"subscription": sub, "limit": 100})
    return list(reversed(page.data))


def signed_events(webhooks: WebhookReceiver, object_ids: set[str]) -> list[dict[str, Any]]:
    """Every delivered event about these objects, verified with the webhook secret, as dicts."""
    found = []
    for received in list(webhooks.received):
        event = stripe.Webhook.construct_event(
            received.body, received.headers["Stripe-Signature"], WEBHOOK_SECRET
        ).to_dict()
        obj = event["data"]["object"]
        related = {obj.get("id"), obj.get("subscription"), obj.get("customer"), obj.get("invoice")}
        parent = obj.get("parent") or {}
        related.add((parent.get("subscription_details") or {}).get("subscription"))
        if related & object_ids:
            found.append(event)
    return found


def wait_types(
    webhooks: WebhookReceiver, object_ids: set[str], *types: str
) -> list[dict[str, Any]]:
    """Wait until each type in `types` was delivered for these objects (as many times as it is
    named); all such events."""

    def done(_: Any) -> bool:
        seen = [e["type"] for e in signed_events(webhooks, object_ids)]
        return all(seen.count(t) >= types.count(t) for t in types)

    webhooks.wait_for(done)
    return signed_events(webhooks, object_ids)


def subscribe(client: stripe.StripeClient, customer: str, **extra: Any) -> stripe.Subscription:
    params: dict[str, Any] = {
        "customer": customer,
        "items": [{"price": "price_monthly", "quantity": 1}],
        **extra,
    }
    return client.v1.subscriptions.create(params=params)  # type: ignore[arg-type]


class TestTestClocks:
    def test_create_retrieve_list_delete(
        self, client: stripe.StripeClient, webhooks: WebhookReceiver
    ) -> None:
        clock = new_clock(client)
        assert clock.id.startswith("clock_")
        assert clock.object == "test_helpers.test_clock"
        assert clock.frozen_time == START
        assert clock.status == "ready"
        assert clock.name == "t"
        assert clock.deletes_after == clock.created + 30 * DAY
        assert client.v1.test_helpers.test_clocks.retrieve(clock.id).frozen_time == START
        listed = client.v1.test_helpers.test_clocks.list()
        assert [c.id for c in listed.data] == [clock.id]
        customer = clocked_customer(client, clock.id)
        assert customer.test_clock == clock.id
        assert customer.created == START  # a clocked customer lives on the clock's time
        sub = subscribe(client, customer.id)
        deleted = client.v1.test_helpers.test_clocks.delete(clock.id)
        assert deleted.deleted is True
        with pytest.raises(stripe.InvalidRequestError) as err:
            client.v1.test_helpers.test_clocks.retrieve(clock.id)
        assert err.value.http_status == 404
        # Deleting a clock deletes its customers and their subscriptions.
        assert client.v1.customers.retrieve(customer.id)["deleted"] is True
        with pytest.raises(stripe.InvalidRequestError):
            client.v1.subscriptions.retrieve(sub.id)
        events = wait_types(
            webhooks,
            {clock.id},
            "test_helpers.test_clock.created",
            "test_helpers.test_clock.deleted",
        )
        assert {e["type"] for e in events} >= {
            "test_helpers.test_clock.created",
            "test_helpers.test_clock.deleted",
        }

    def test_advance_only_forward_and_at_most_two_intervals(
        self, client: stripe.StripeClient
    ) -> None:
        clock = new_clock(client)
        with pytest.raises(stripe.InvalidRequestError) as err:
            client.v1.test_helpers.test_clocks.advance(clock.id, params={"frozen_time": START})
        assert err.value.param == "frozen_time"
        # No subscription: two years at most.
        with pytest.raises(stripe.InvalidRequestError):
            client.v1.test_helpers.test_clocks.advance(
                clock.id, params={"frozen_time": START + 3 * 365 * DAY}
            )
        customer = clocked_customer(client, clock.id)
        subscribe(client, customer.id)
        # A monthly subscription: two months at most (Jan + Feb = 59 days from 1 January).
        with pytest.raises(stripe.InvalidRequestError) as err:
            client.v1.test_helpers.test_clocks.advance(
                clock.id, params={"frozen_time": START + 60 * DAY}
            )
        assert "two intervals" in str(err.value.user_message)
        assert client.v1.test_helpers.test_clocks.retrieve(clock.id).frozen_time == START
        advanced = advance(client, clock.id, START + 59 * DAY)
        assert advanced.status == "ready"

    def test_advancing_then_ready_events(
        self, client: stripe.StripeClient, webhooks: WebhookReceiver
    ) -> None:
        clock = new_clock(client)
        advance(client, clock.id, START + DAY)
        events = wait_types(
            webhooks,
            {clock.id},
            "test_helpers.test_clock.advancing",
            "test_helpers.test_clock.ready",
        )
        types = [e["type"] for e in events]
        assert types.index("test_helpers.test_clock.advancing") < types.index(
            "test_helpers.test_clock.ready"
        )
        ready = next(e for e in events if e["type"] == "test_helpers.test_clock.ready")
        assert ready["data"]["object"]["frozen_time"] == START + DAY


class TestRenewals:
    def test_two_periods_three_paid_invoices(
        self, client: stripe.StripeClient, webhooks: WebhookReceiver
    ) -> None:
        clock = new_clock(client)
        customer = clocked_customer(client, clock.id)
        sub = subscribe(client, customer.id)
        assert sub.status == "active"
        assert sub.test_clock == clock.id
        assert sub.created == START
        item = sub["items"].data[0]
        assert (item.current_period_start, item.current_period_end) == (START, START + 31 * DAY)
        first = client.v1.invoices.retrieve(str(sub.latest_invoice))
        assert first.status == "paid"
        assert first.billing_reason == "subscription_create"
        assert first.amount_due == first.amount_paid == 2900
        assert first.amount_remaining == 0
        assert first.parent is not None
        assert first.parent.subscription_details is not None
        assert first.parent.subscription_details.subscription == sub.id

        # Two periods on: January's end, February's end, and an hour for each draft.
        advance(client, clock.id, START + 31 * DAY + 2 * 3600)
        advance(client, clock.id, START + 59 * DAY + 2 * 3600)

        sub = client.v1.subscriptions.retrieve(sub.id)
        assert sub.status == "active"
        item = sub["items"].data[0]
        assert (item.current_period_start, item.current_period_end) == (
            START + 59 * DAY,
            START + 90 * DAY,
        )
        invoices = invoices_of(client, sub.id)
        assert [i.billing_reason for i in invoices] == [
            "subscription_create",
            "subscription_cycle",
            "subscription_cycle",
        ]
        assert [i.status for i in invoices] == ["paid", "paid", "paid"]
        assert sub.latest_invoice == invoices[-1].id
        # A renewal invoice covers the period just ended; its line, the period it pays for.
        second = invoices[1]
        assert (second.period_start, second.period_end) == (START, START + 31 * DAY)
        line = second.lines.data[0]
        assert (line.period.start, line.period.end) == (START + 31 * DAY, START + 59 * DAY)
        assert line.pricing is not None
        assert line.pricing.price_details is not None
        assert line.pricing.price_details.price == "price_monthly"
        assert second.created == START + 31 * DAY
        assert second.status_transitions.finalized_at == START + 31 * DAY + 3600
        assert second.status_transitions.paid_at == START + 31 * DAY + 3600
        assert second.attempt_count == 1
        assert second.next_payment_attempt is None
        assert second.hosted_invoice_url
        for invoice in invoices:
            expanded = client.v1.invoices.retrieve(invoice.id, params={"expand": ["payments"]})
            payment = expanded.payments.data[0]
            assert payment.status == "paid"
            pi = client.v1.payment_intents.retrieve(str(payment.payment.payment_intent))
            assert pi.status == "succeeded"
            assert pi.amount == invoice.amount_paid
            assert pi.customer == customer.id
            charge = client.v1.charges.retrieve(str(pi.latest_charge))
            assert charge.status == "succeeded"
            assert charge.created == invoice.status_transitions.paid_at

        ids = {sub.id, customer.id, *(i.id for i in invoices)}
        events = wait_types(webhooks, ids, "invoice.upcoming", *["invoice.payment_succeeded"] * 3)
        paid = [e for e in events if e["type"] == "invoice.paid"]
        assert len(paid) == 3
        # Every event of a clocked customer carries the clock's time, in order.
        createds = [e["created"] for e in events]
        assert createds == sorted(createds)
        assert min(createds) == START
        assert max(createds) == START + 59 * DAY + 3600
        renewal = next(
            e
            for e in events
            if e["type"] == "customer.subscription.updated"
            and "items" in (e["data"].get("previous_attributes") or {})
        )
        assert renewal["created"] == START + 31 * DAY
        previous_item = renewal["data"]["previous_attributes"]["items"]["data"][0]
        assert previous_item["current_period_end"] == START + 31 * DAY
        upcoming = [e for e in events if e["type"] == "invoice.upcoming"]
        assert upcoming[0]["created"] == START + 24 * DAY  # 7 days before the renewal
        types = {e["type"] for e in events}
        assert {
            "customer.subscription.created",
            "invoice.created",
            "invoice.finalized",
            "invoice.paid",
            "invoice.payment_succeeded",
            "invoice_payment.paid",
            "payment_intent.succeeded",
            "charge.succeeded",
        } <= types

    def test_cancel_at_period_end(
        self, client: stripe.StripeClient, webhooks: WebhookReceiver
    ) -> None:
        clock = new_clock(client)
        customer = clocked_customer(client, clock.id)
        sub = subscribe(client, customer.id)
        updated = client.v1.subscriptions.update(sub.id, params={"cancel_at_period_end": True})
        assert updated.cancel_at_period_end is True
        assert updated.cancel_at == START + 31 * DAY
        assert updated.status == "active"
        advance(client, clock.id, START + 31 * DAY + 10)
        ended = client.v1.subscriptions.retrieve(sub.id)
        assert ended.status == "canceled"
        assert ended.ended_at == START + 31 * DAY
        assert len(invoices_of(client, sub.id)) == 1  # no renewal invoice
        events = wait_types(webhooks, {sub.id}, "customer.subscription.deleted")
        deleted = next(e for e in events if e["type"] == "customer.subscription.deleted")
        assert deleted["created"] == START + 31 * DAY
        assert deleted["data"]["object"]["status"] == "canceled"


class TestSubscriptionApi:
    def test_update_price_and_quantity_without_proration(
        self, client: stripe.StripeClient, webhooks: WebhookReceiver
    ) -> None:
        clock = new_clock(client)
        customer = clocked_customer(client, clock.id)
        sub = subscribe(client, customer.id)
        item = sub["items"].data[0]
        price = client.v1.prices.create(
            params={
                "currency": "usd",
                "unit_amount": 5000,
                "recurring": {"interval": "month"},
                "product": item.price.product,  # type: ignore[typeddict-item]
            }
        )
        with pytest.raises(stripe.InvalidRequestError) as err:
            client.v1.subscriptions.update(
                sub.id,
                params={
                    "items": [{"id": item.id, "price": price.id}],
                    "proration_behavior": "create_prorations",
                },
            )
        assert err.value.param == "proration_behavior"
        assert client.v1.subscriptions.retrieve(sub.id)["items"].data[0].price.id == "price_monthly"
        updated = client.v1.subscriptions.update(
            sub.id,
            params={
                "items": [{"id": item.id, "price": price.id, "quantity": 2}],
                "proration_behavior": "none",
                "metadata": {"plan": "pro"},
            },
        )
        new_item = updated["items"].data[0]
        assert (new_item.id, new_item.price.id, new_item.quantity) == (item.id, price.id, 2)
        assert updated.metadata.to_dict() == {"plan": "pro"}
        advance(client, clock.id, START + 31 * DAY + 2 * 3600)
        renewal = invoices_of(client, sub.id)[-1]
        assert renewal.amount_paid == 10000  # the new price, twice, from the next period
        events = wait_types(webhooks, {sub.id}, "customer.subscription.updated")
        change = next(
            e
            for e in events
            if e["type"] == "customer.subscription.updated"
            and "metadata" in (e["data"].get("previous_attributes") or {})
        )
        previous = change["data"]["previous_attributes"]
        assert previous["items"]["data"][0]["price"]["id"] == "price_monthly"
        assert previous["metadata"] == {}

    def test_cancel_now(self, client: stripe.StripeClient, webhooks: WebhookReceiver) -> None:
        customer = clocked_customer(client, new_clock(client).id)
        sub = subscribe(client, customer.id)
        canceled = client.v1.subscriptions.cancel(sub.id)
        assert canceled.status == "canceled"
        assert canceled.canceled_at == START
        assert canceled.cancellation_details.reason == "cancellation_requested"
        with pytest.raises(stripe.InvalidRequestError):
            client.v1.subscriptions.cancel(sub.id)
        wait_types(webhooks, {sub.id}, "customer.subscription.deleted")

    def test_validation_before_anything_is_made(self, client: stripe.StripeClient) -> None:
        customer = client.v1.customers.create()
        with pytest.raises(stripe.InvalidRequestError) as err:
            subscribe(client, customer.id)  # no payment method at all
        assert err.value.code == "resource_missing"
        with pytest.raises(stripe.InvalidRequestError) as err:
            client.v1.subscriptions.create(
                params={"customer": customer.id, "items": [{"price": "price_123"}]}
            )
        assert err.value.param == "items[0][price]"
        with pytest.raises(stripe.InvalidRequestError) as err:
            subscribe(client, customer.id, default_payment_method="pm_nope")
        assert err.value.param == "default_payment_method"
        assert client.v1.subscriptions.list(params={"customer": customer.id}).data == []
        assert client.v1.invoices.list(params={"customer": customer.id}).data == []


class TestInvoiceRules:
    def test_pay_void_finalize_refusals(self, client: stripe.StripeClient) -> None:
        customer = clocked_customer(client, new_clock(client).id)
        sub = subscribe(client, customer.id)
        invoice_id = str(sub.latest_invoice)
        with pytest.raises(stripe.InvalidRequestError) as err:
            client.v1.invoices.pay(invoice_id)
        assert "already paid" in str(err.value.user_message)
        with pytest.raises(stripe.InvalidRequestError):
            client.v1.invoices.void_invoice(invoice_id)
        with pytest.raises(stripe.InvalidRequestError):
            client.v1.invoices.finalize_invoice(invoice_id)
        assert client.v1.invoices.retrieve(invoice_id).status == "paid"

    def test_hosted_invoice_page(self, client: stripe.StripeClient, controls: httpx.Client) -> None:
        customer = clocked_customer(client, new_clock(client).id)
        sub = subscribe(client, customer.id)
        invoice = client.v1.invoices.retrieve(str(sub.latest_invoice))
        assert invoice.hosted_invoice_url
        page = httpx.get(invoice.hosted_invoice_url)
        assert page.status_code == 200
        assert invoice.number is not None
        assert invoice.number in page.text
        assert "paid" in page.text


class TestFirstPayment:
    def test_default_incomplete_then_confirm_the_secret(
        self, client: stripe.StripeClient, webhooks: WebhookReceiver
    ) -> None:
        """Stripe's documented flow: `default_incomplete`, expand
        `latest_invoice.confirmation_secret`, confirm its intent client-side."""
        clock = new_clock(client)
        customer = client.v1.customers.create(params={"test_clock": clock.id})
        sub = subscribe(
            client,
            customer.id,
            payment_behavior="default_incomplete",
            expand=["latest_invoice.confirmation_secret"],
        )
        assert sub.status == "incomplete"
        invoice = sub.latest_invoice
        assert isinstance(invoice, stripe.Invoice)
        assert invoice.status == "open"
        assert invoice.attempt_count == 0
        secret = invoice.confirmation_secret
        assert secret is not None
        assert secret.type == "payment_intent"
        pi_id = secret.client_secret.split("_secret_")[0]
        pi = client.v1.payment_intents.retrieve(pi_id)
        assert pi.status == "requires_payment_method"
        assert pi.amount == 2900
        client.v1.payment_intents.confirm(pi_id, params={"payment_method": "pm_card_visa"})
        sub = client.v1.subscriptions.retrieve(sub.id)
        assert sub.status == "active"
        paid = client.v1.invoices.retrieve(invoice.id)
        assert paid.status == "paid"
        assert paid.attempt_count == 1
        assert paid.status_transitions.paid_at == START
        events = wait_types(webhooks, {sub.id, invoice.id}, "customer.subscription.updated")
        change = next(e for e in events if e["type"] == "customer.subscription.updated")
        assert change["data"]["previous_attributes"] == {"status": "incomplete"}
        assert change["created"] == START  # the confirm ran on the customer's clock

    def test_declined_first_payment_incomplete_then_expired(
        self, client: stripe.StripeClient, webhooks: WebhookReceiver
    ) -> None:
        clock = new_clock(client)
        customer = clocked_customer(client, clock.id, "pm_card_chargeCustomerFail")
        sub = subscribe(client, customer.id)  # allow_incomplete: a 200, incomplete
        assert sub.status == "incomplete"
        invoice = client.v1.invoices.retrieve(str(sub.latest_invoice))
        assert invoice.status == "open"
        assert invoice.attempt_count == 1
        assert invoice.next_payment_attempt is None  # a first invoice is not retried
        advance(client, clock.id, START + 23 * 3600 + 1)
        expired = client.v1.subscriptions.retrieve(sub.id)
        assert expired.status == "incomplete_expired"
        assert client.v1.invoices.retrieve(invoice.id).status == "void"
        events = wait_types(
            webhooks, {sub.id, invoice.id}, "invoice.payment_failed", "invoice.voided"
        )
        voided = next(e for e in events if e["type"] == "invoice.voided")
        assert voided["created"] == START + 23 * 3600

    def test_error_if_incomplete_refuses_and_makes_nothing(
        self, client: stripe.StripeClient
    ) -> None:
        customer = clocked_customer(client, new_clock(client).id, "pm_card_chargeCustomerFail")
        with pytest.raises(stripe.CardError) as err:
            subscribe(client, customer.id, payment_behavior="error_if_incomplete")
        assert err.value.code == "card_declined"
        assert client.v1.subscriptions.list(params={"customer": customer.id}).data == []

    def test_charge_customer_fail_card_attaches(self, client: stripe.StripeClient) -> None:
        customer = client.v1.customers.create()
        pm = client.v1.payment_methods.attach(
            "pm_card_chargeCustomerFail", params={"customer": customer.id}
        )
        assert pm.customer == customer.id
        assert pm.card is not None
        assert pm.card.last4 == "0341"
        with pytest.raises(stripe.CardError):
            client.v1.payment_methods.attach(
                "pm_card_chargeDeclined", params={"customer": customer.id}
            )


class TestTrials:
    def test_trial_then_paid_invoice_at_its_end(
        self, client: stripe.StripeClient, webhooks: WebhookReceiver
    ) -> None:
        clock = new_clock(client)
        customer = clocked_customer(client, clock.id)
        sub = subscribe(client, customer.id, trial_period_days=7)
        assert sub.status == "trialing"
        assert (sub.trial_start, sub.trial_end) == (START, START + 7 * DAY)
        assert sub["items"].data[0].current_period_end == START + 7 * DAY
        first = client.v1.invoices.retrieve(str(sub.latest_invoice))
        assert (first.status, first.amount_due, first.billing_reason) == (
            "paid",
            0,
            "subscription_create",
        )
        assert first.lines.data[0].period.end == START + 7 * DAY
        advance(client, clock.id, START + 7 * DAY + 2 * 3600)
        sub = client.v1.subscriptions.retrieve(sub.id)
        assert sub.status == "active"
        item = sub["items"].data[0]
        assert (item.current_period_start, item.current_period_end) == (
            START + 7 * DAY,
            START + 7 * DAY + 31 * DAY,
        )
        invoices = invoices_of(client, sub.id)
        assert [(i.billing_reason, i.status, i.amount_paid) for i in invoices] == [
            ("subscription_create", "paid", 0),
            ("subscription_cycle", "paid", 2900),
        ]
        events = wait_types(
            webhooks,
            {sub.id, *(i.id for i in invoices)},
            "customer.subscription.trial_will_end",
            *["invoice.paid"] * 2,
        )
        will_end = next(e for e in events if e["type"] == "customer.subscription.trial_will_end")
        assert will_end["created"] == START + 4 * DAY  # three days before the trial ends
        became_active = next(
            e
            for e in events
            if e["type"] == "customer.subscription.updated"
            and (e["data"].get("previous_attributes") or {}).get("status") == "trialing"
        )
        assert became_active["created"] == START + 7 * DAY


class TestFailedRenewals:
    def test_past_due_retries_then_canceled(
        self, client: stripe.StripeClient, webhooks: WebhookReceiver
    ) -> None:
        """Retries on the emulator's schedule (3, 5, 7 days after the first failure), then
        Stripe's default: cancel the subscription, leave the invoice open."""
        clock = new_clock(client)
        customer = clocked_customer(client, clock.id)
        sub = subscribe(client, customer.id)
        failing = client.v1.payment_methods.attach(
            "pm_card_chargeCustomerFail", params={"customer": customer.id}
        )
        client.v1.subscriptions.update(sub.id, params={"default_payment_method": failing.id})
        renewal_at = START + 31 * DAY
        advance(client, clock.id, renewal_at + 2 * 3600)
        sub = client.v1.subscriptions.retrieve(sub.id)
        assert sub.status == "past_due"
        invoice = client.v1.invoices.retrieve(str(sub.latest_invoice))
        failed_at = renewal_at + 3600
        assert (invoice.status, invoice.attempt_count) == ("open", 1)
        assert invoice.next_payment_attempt == failed_at + 3 * DAY
        advance(client, clock.id, failed_at + 3 * DAY)
        invoice = client.v1.invoices.retrieve(invoice.id)
        assert invoice.attempt_count == 2
        assert invoice.next_payment_attempt == failed_at + 5 * DAY
        advance(client, clock.id, failed_at + 7 * DAY)
        sub = client.v1.subscriptions.retrieve(sub.id)
        assert sub.status == "canceled"
        assert sub.cancellation_details.reason == "payment_failed"
        assert sub.ended_at == failed_at + 7 * DAY
        invoice = client.v1.invoices.retrieve(invoice.id, params={"expand": ["payments"]})
        assert (invoice.status, invoice.attempt_count) == ("open", 4)
        assert invoice.next_payment_attempt is None
        pi = client.v1.payment_intents.retrieve(
            str(invoice.payments.data[0].payment.payment_intent)
        )
        charges = client.v1.charges.list(params={"payment_intent": pi.id})
        assert [c.status for c in charges.data] == ["failed"] * 4  # one charge per attempt
        events = wait_types(
            webhooks,
            {sub.id, invoice.id},
            *["invoice.payment_failed"] * 4,
            "customer.subscription.deleted",
        )
        failures = [e for e in events if e["type"] == "invoice.payment_failed"]
        assert [e["created"] for e in failures] == [
            failed_at,
            failed_at + 3 * DAY,
            failed_at + 5 * DAY,
            failed_at + 7 * DAY,
        ]
        assert [e["data"]["object"]["attempt_count"] for e in failures] == [1, 2, 3, 4]
        past_due = next(
            e
            for e in events
            if e["type"] == "customer.subscription.updated"
            and e["data"]["object"]["status"] == "past_due"
        )
        assert past_due["data"]["previous_attributes"] == {"status": "active"}

    def test_pay_the_open_invoice_brings_it_back(
        self, client: stripe.StripeClient, webhooks: WebhookReceiver
    ) -> None:
        clock = new_clock(client)
        customer = clocked_customer(client, clock.id, "pm_card_chargeCustomerFail")
        sub = subscribe(client, customer.id, trial_period_days=3)
        advance(client, clock.id, START + 3 * DAY + 2 * 3600)
        sub = client.v1.subscriptions.retrieve(sub.id)
        assert sub.status == "past_due"
        invoice_id = str(sub.latest_invoice)
        with pytest.raises(stripe.CardError):
            client.v1.invoices.pay(invoice_id)  # the same failing card: a 402, one more attempt
        assert client.v1.invoices.retrieve(invoice_id).attempt_count == 2
        good = client.v1.payment_methods.attach("pm_card_visa", params={"customer": customer.id})
        paid = client.v1.invoices.pay(invoice_id, params={"payment_method": good.id})
        assert paid.status == "paid"
        assert paid.amount_remaining == 0
        assert paid.status_transitions.paid_at == START + 3 * DAY + 2 * 3600
        assert client.v1.subscriptions.retrieve(sub.id).status == "active"
        with pytest.raises(stripe.InvalidRequestError):
            client.v1.invoices.pay(invoice_id)
        wait_types(webhooks, {invoice_id}, "invoice.paid", "invoice_payment.paid")

    def test_new_default_card_and_the_next_retry(self, client: stripe.StripeClient) -> None:
        clock = new_clock(client)
        customer = clocked_customer(client, clock.id, "pm_card_chargeCustomerFail")
        sub = subscribe(client, customer.id, trial_period_days=3)
        advance(client, clock.id, START + 3 * DAY + 2 * 3600)
        assert client.v1.subscriptions.retrieve(sub.id).status == "past_due"
        good = client.v1.payment_methods.attach("pm_card_visa", params={"customer": customer.id})
        client.v1.customers.update(
            customer.id, params={"invoice_settings": {"default_payment_method": good.id}}
        )
        advance(client, clock.id, START + 6 * DAY + 2 * 3600)
        sub = client.v1.subscriptions.retrieve(sub.id)
        assert sub.status == "active"
        invoice = client.v1.invoices.retrieve(str(sub.latest_invoice))
        assert (invoice.status, invoice.attempt_count) == ("paid", 2)

    def test_void_and_mark_uncollectible(
        self, client: stripe.StripeClient, webhooks: WebhookReceiver
    ) -> None:
        clock = new_clock(client)
        customer = clocked_customer(client, clock.id, "pm_card_chargeCustomerFail")
        sub = subscribe(client, customer.id, trial_period_days=3)
        advance(client, clock.id, START + 3 * DAY + 2 * 3600)
        invoice_id = str(client.v1.subscriptions.retrieve(sub.id).latest_invoice)
        marked = client.v1.invoices.mark_uncollectible(invoice_id)
        assert marked.status == "uncollectible"
        assert marked.status_transitions.marked_uncollectible_at == START + 3 * DAY + 2 * 3600
        voided = client.v1.invoices.void_invoice(invoice_id)
        assert voided.status == "void"
        with pytest.raises(stripe.InvalidRequestError):
            client.v1.invoices.void_invoice(invoice_id)
        with pytest.raises(stripe.InvalidRequestError):
            client.v1.invoices.pay(invoice_id)
        wait_types(webhooks, {invoice_id}, "invoice.marked_uncollectible", "invoice.voided")


class TestSearch:
    def test_subscription_and_invoice_search(self, client: stripe.StripeClient) -> None:
        clock = new_clock(client)
        customer = clocked_customer(client, clock.id)
        sub = subscribe(client, customer.id, metadata={"tier": "gold"})
        other = subscribe(client, customer.id, trial_period_days=5)
        found = client.v1.subscriptions.search(params={"query": 'metadata["tier"]:"gold"'})
        assert [s.id for s in found.data] == [sub.id]
        found = client.v1.subscriptions.search(params={"query": "status:'trialing'"})
        assert [s.id for s in found.data] == [other.id]
        found = client.v1.invoices.search(params={"query": f"subscription:'{sub.id}'"})
        assert [i.id for i in found.data] == [sub.latest_invoice]
        found = client.v1.invoices.search(params={"query": f"customer:'{customer.id}' AND total>0"})
        assert [i.id for i in found.data] == [sub.latest_invoice]
        listed = client.v1.invoices.list(params={"customer": customer.id, "status": "paid"})
        assert {i.id for i in listed.data} == {sub.latest_invoice, other.latest_invoice}


class TestRealTimeClock:
    def test_emulator_clock_renews_unclocked_subscriptions(
        self, client: stripe.StripeClient, controls: httpx.Client
    ) -> None:
        customer = client.v1.customers.create()
        pm = client.v1.payment_methods.attach("pm_card_visa", params={"customer": customer.id})
        sub = subscribe(client, customer.id, default_payment_method=pm.id)
        assert sub.test_clock is None
        end = sub["items"].data[0].current_period_end
        controls.post(
            "/_emulator/clock", json={"advance_seconds": end - sub.created + 2 * 3600}
        ).raise_for_status()
        renewed = client.v1.subscriptions.retrieve(sub.id)
        assert renewed["items"].data[0].current_period_start == end
        invoices = invoices_of(client, sub.id)
        assert [(i.billing_reason, i.status) for i in invoices] == [
            ("subscription_create", "paid"),
            ("subscription_cycle", "paid"),
        ]


class TestCheckoutSubscription:
    def test_events_of_a_subscription_checkout(
        self, client: stripe.StripeClient, controls: httpx.Client, webhooks: WebhookReceiver
    ) -> None:
        """The events a real subscription-mode Checkout sends ("Checkout subscription events"),
        in the order the emulator sends them: Stripe guarantees none, and since 2025-03-31.basil
        creates the subscription once the first payment succeeded, so it is `active` from its
        `created` event; `checkout.session.completed` comes last."""
        session = client.v1.checkout.sessions.create(
            params={
                "mode": "subscription",
                "line_items": [{"price": "price_monthly", "quantity": 1}],
                "customer_email": "buyer@example.com",
                "success_url": "https://example.com/ok",
            }
        )
        controls.post(
            f"/_emulator/checkout/sessions/{session.id}/complete", json={}
        ).raise_for_status()
        done = client.v1.checkout.sessions.retrieve(session.id)
        assert done.payment_status == "paid"
        sub_id, invoice_id = str(done.subscription), str(done.invoice)
        invoice = client.v1.invoices.retrieve(invoice_id, params={"expand": ["payments"]})
        pi_id = str(invoice.payments.data[0].payment.payment_intent)
        ids = {sub_id, invoice_id, pi_id, session.id, str(done.customer)}
        events = wait_types(webhooks, ids, "checkout.session.completed")
        types = [e["type"] for e in events]
        expected = [
            "customer.created",
            "payment_method.attached",
            "customer.subscription.created",
            "invoice.created",
            "payment_intent.created",
            "invoice.finalized",
            "charge.succeeded",
            "payment_intent.succeeded",
            "invoice_payment.paid",
            "invoice.updated",
            "invoice.paid",
            "invoice.payment_succeeded",
            "checkout.session.completed",
        ]
        assert [t for t in types if t in expected] == expected
        created = next(e for e in events if e["type"] == "customer.subscription.created")
        assert created["data"]["object"]["status"] == "active"


class TestActionsAndPages:
    def test_first_payment_needing_3ds_then_authenticated(
        self, client: stripe.StripeClient, controls: httpx.Client, webhooks: WebhookReceiver
    ) -> None:
        clock = new_clock(client)
        customer = clocked_customer(client, clock.id, "pm_card_authenticationRequired")
        sub = subscribe(client, customer.id, expand=["latest_invoice.payments"])
        assert sub.status == "incomplete"
        invoice = sub.latest_invoice
        assert isinstance(invoice, stripe.Invoice)
        pi_id = str(invoice.payments.data[0].payment.payment_intent)
        assert client.v1.payment_intents.retrieve(pi_id).status == "requires_action"
        controls.post(
            f"/_emulator/payment_intents/{pi_id}/authenticate", json={"outcome": "succeed"}
        ).raise_for_status()
        assert client.v1.subscriptions.retrieve(sub.id).status == "active"
        assert client.v1.invoices.retrieve(invoice.id).status == "paid"
        wait_types(webhooks, {invoice.id}, "invoice.payment_action_required", "invoice.paid")

    def test_pay_a_failed_renewal_on_its_hosted_page(self, client: stripe.StripeClient) -> None:
        clock = new_clock(client)
        customer = clocked_customer(client, clock.id, "pm_card_chargeCustomerFail")
        sub = subscribe(client, customer.id, trial_period_days=3)
        advance(client, clock.id, START + 3 * DAY + 2 * 3600)
        invoice = client.v1.invoices.retrieve(
            str(client.v1.subscriptions.retrieve(sub.id).latest_invoice)
        )
        assert invoice.status == "open"
        assert invoice.hosted_invoice_url is not None
        page = httpx.get(invoice.hosted_invoice_url)
        assert page.status_code == 200
        assert "Pay invoice" in page.text
        assert "$29.00" in page.text
        declined = httpx.post(
            f"{invoice.hosted_invoice_url}/pay", data={"payment_method": "pm_card_chargeDeclined"}
        )
        assert declined.status_code == 402
        assert "declined" in declined.text
        assert client.v1.invoices.retrieve(invoice.id).status == "open"
        paid = httpx.post(
            f"{invoice.hosted_invoice_url}/pay", data={"payment_method": "pm_card_visa"}
        )
        assert paid.status_code == 200
        assert "This invoice is paid" in paid.text
        assert client.v1.invoices.retrieve(invoice.id).status == "paid"
        assert client.v1.subscriptions.retrieve(sub.id).status == "active"


class TestCreateParameters:
    def test_trial_end_and_refusals(self, client: stripe.StripeClient) -> None:
        customer = clocked_customer(client, new_clock(client).id)
        sub = subscribe(client, customer.id, trial_end=START + 10 * DAY)
        assert (sub.status, sub.trial_end) == ("trialing", START + 10 * DAY)
        assert subscribe(client, customer.id, trial_end="now").status == "active"
        with pytest.raises(stripe.InvalidRequestError) as err:
            subscribe(client, customer.id, trial_end=START + DAY, trial_period_days=3)
        assert err.value.param == "trial_end"
        with pytest.raises(stripe.InvalidRequestError) as err:
            subscribe(client, customer.id, trial_end=START - DAY)
        assert err.value.param == "trial_end"
        with pytest.raises(stripe.InvalidRequestError) as err:
            subscribe(client, customer.id, add_invoice_items=[{"price": "price_123"}])
        assert err.value.param == "add_invoice_items"
        assert "emulator does not model" in str(err.value.user_message)
        with pytest.raises(stripe.InvalidRequestError) as err:
            subscribe(client, customer.id, payment_behavior="pending_if_incomplete")
        assert err.value.param == "payment_behavior"
        listed = client.v1.subscriptions.list(params={"customer": customer.id})
        assert len(listed.data) == 2

    def test_item_change_needs_proration_none(self, client: stripe.StripeClient) -> None:
        customer = clocked_customer(client, new_clock(client).id)
        sub = subscribe(client, customer.id)
        item = sub["items"].data[0]
        with pytest.raises(stripe.InvalidRequestError) as err:
            client.v1.subscriptions.update(
                sub.id, params={"items": [{"id": item.id, "quantity": 3}]}
            )
        assert err.value.param == "proration_behavior"
        with pytest.raises(stripe.InvalidRequestError) as err:
            client.v1.subscriptions.update(
                sub.id,
                params={"items": [{"price": "price_monthly"}], "proration_behavior": "none"},
            )
        assert err.value.param == "items[0][id]"
        assert client.v1.subscriptions.retrieve(sub.id)["items"].data[0].quantity == 1
        # Turning cancel_at_period_end on and off again, and a new default payment method.
        pm = client.v1.payment_methods.attach(
            "pm_card_mastercard", params={"customer": customer.id}
        )
        on = client.v1.subscriptions.update(
            sub.id, params={"cancel_at_period_end": True, "default_payment_method": pm.id}
        )
        assert (on.cancel_at_period_end, on.default_payment_method) == (True, pm.id)
        off = client.v1.subscriptions.update(sub.id, params={"cancel_at_period_end": False})
        assert (off.cancel_at_period_end, off.cancel_at, off.canceled_at) == (False, None, None)
