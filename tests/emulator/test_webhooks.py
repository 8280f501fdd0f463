"""Events and their webhook deliveries: signatures, endpoints, retries, faults, the event list."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import stripe

from tests.fixtures.emulator import (
    WEBHOOK_SECRET,
    Received,
    WebhookReceiver,
    free_port,
    sdk_client,
    start_emulator,
    start_receiver,
    stop_emulator,
)


def verified(received: Received, secret: str = WEBHOOK_SECRET) -> stripe.Event:
    return stripe.Webhook.construct_event(
        received.body, received.headers["Stripe-Signature"], secret
    )


def deliveries_of(webhooks: WebhookReceiver, event_id: str) -> list[Received]:
    return [r for r in webhooks.received if r.event["id"] == event_id]


def new_customer(client: stripe.StripeClient, **extra: Any) -> stripe.Customer:
    return client.v1.customers.create(params={"email": "jane@example.com", **extra})


@contextlib.contextmanager
def receivers(count: int) -> Iterator[list[WebhookReceiver]]:
    started = [start_receiver() for _ in range(count)]
    try:
        yield [receiver for receiver, _ in started]
    finally:
        for _, server in started:
            server.shutdown()
            server.server_close()


class TestSignedDelivery:
    def test_an_event_arrives_signed_and_verifiable(
        self, client: stripe.StripeClient, webhooks: WebhookReceiver
    ) -> None:
        customer = new_customer(client)
        event = webhooks.wait_for_event("customer.created", customer.id)
        received = next(r for r in webhooks.received if r.event["id"] == event["id"])
        checked = verified(received)
        assert checked.id == event["id"]
        assert checked.type == "customer.created"
        assert checked.api_version == stripe.api_version
        assert checked.data.object["id"] == customer.id
        assert customer.last_response is not None
        assert checked.request is not None
        assert checked.request.id == customer.last_response.request_id
        stored = client.v1.events.retrieve(event["id"])
        assert stored.data.object["email"] == "jane@example.com"

    def test_the_wrong_secret_does_not_verify(
        self, client: stripe.StripeClient, webhooks: WebhookReceiver
    ) -> None:
        customer = new_customer(client)
        webhooks.wait_for_event("customer.created", customer.id)
        with pytest.raises(stripe.SignatureVerificationError):
            verified(webhooks.received[0], "whsec_not_the_secret")

    def test_a_tampered_body_does_not_verify(
        self, client: stripe.StripeClient, webhooks: WebhookReceiver
    ) -> None:
        new_customer(client)
        webhooks.wait_for(lambda rs: len(rs) >= 1)
        original = webhooks.received[0]
        tampered = Received(original.body.replace(b"jane", b"mallory"), original.headers, "/")
        with pytest.raises(stripe.SignatureVerificationError):
            verified(tampered)

    def test_updates_carry_previous_attributes(
        self, client: stripe.StripeClient, webhooks: WebhookReceiver
    ) -> None:
        customer = new_customer(client)
        client.v1.customers.update(customer.id, params={"name": "Jane Doe"})
        event = webhooks.wait_for_event("customer.updated", customer.id)
        assert event["data"]["object"]["name"] == "Jane Doe"
        assert event["data"]["previous_attributes"] == {"name": None}


class TestEndpoints:
    def test_a_registered_endpoint_gets_its_events_with_its_own_secret(
        self, client: stripe.StripeClient, webhooks: WebhookReceiver
    ) -> None:
        endpoint = client.v1.webhook_endpoints.create(
            params={"url": webhooks.url + "/registered", "enabled_events": ["customer.created"]}
        )
        assert endpoint.secret is not None
        assert endpoint.secret.startswith("whsec_")
        customer = new_customer(client)
        client.v1.customers.update(customer.id, params={"name": "Jane"})
        webhooks.wait_for_event("customer.updated", customer.id)
        registered = webhooks.wait_for(lambda rs: any(r.path.endswith("/registered") for r in rs))
        to_endpoint = [r for r in registered if r.path.endswith("/registered")]
        assert [r.event["type"] for r in to_endpoint] == ["customer.created"]
        assert verified(to_endpoint[0], endpoint.secret).data.object["id"] == customer.id
        with pytest.raises(stripe.SignatureVerificationError):
            verified(to_endpoint[0], WEBHOOK_SECRET)

    def test_a_disabled_endpoint_gets_nothing(
        self, client: stripe.StripeClient, webhooks: WebhookReceiver
    ) -> None:
        endpoint = client.v1.webhook_endpoints.create(
            params={"url": webhooks.url + "/registered", "enabled_events": ["*"]}
        )
        client.v1.webhook_endpoints.update(endpoint.id, params={"disabled": True})
        customer = new_customer(client)
        webhooks.wait_for_event("customer.created", customer.id)
        # The receiver has the event before the emulator has read its 200: wait for the count
        # to settle. Had the disabled endpoint been a target, it would stay at 1.
        deadline = time.monotonic() + 5
        while True:
            event = client.v1.events.list(params={"type": "customer.created"}).data[0]
            if event.pending_webhooks == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert event.pending_webhooks == 0
        assert not any(r.path.endswith("/registered") for r in webhooks.received)

    def test_every_webhook_url_flag_gets_every_event(self) -> None:
        with receivers(2) as (first, second):
            emu = start_emulator(
                "--webhook-url",
                first.url,
                "--webhook-url",
                second.url,
                "--webhook-secret",
                "whsec_two",
            )
            try:
                with sdk_client(emu.url) as sdk:
                    customer = new_customer(sdk)
                for receiver in (first, second):
                    event = receiver.wait_for_event("customer.created", customer.id)
                    assert verified(receiver.received[0], "whsec_two").id == event["id"]
            finally:
                stop_emulator(emu)

    def test_flags_can_come_from_the_environment(self) -> None:
        with receivers(2) as (first, second):
            port = free_port()
            emu = start_emulator(
                port=port,
                env={
                    "EMULATOR_PORT": str(port),
                    "EMULATOR_WEBHOOK_URL": f"{first.url},{second.url}",
                    "EMULATOR_WEBHOOK_SECRET": "whsec_env",
                },
            )
            try:
                with sdk_client(emu.url) as sdk:
                    customer = new_customer(sdk)
                for receiver in (first, second):
                    receiver.wait_for_event("customer.created", customer.id)
                    verified(receiver.received[0], "whsec_env")
            finally:
                stop_emulator(emu)


class TestRetries:
    def test_a_failing_endpoint_is_retried_until_it_answers(
        self, client: stripe.StripeClient, webhooks: WebhookReceiver, controls: httpx.Client
    ) -> None:
        webhooks.status = 500
        customer = new_customer(client)
        event_id = client.v1.events.list(params={"type": "customer.created"}).data[0].id
        webhooks.wait_for(lambda rs: len([r for r in rs if r.event["id"] == event_id]) >= 2)
        webhooks.status = 200
        log: list[dict[str, Any]] = []
        for _ in range(200):
            log = [
                d
                for d in controls.get("/_emulator/webhooks/deliveries").json()["data"]
                if d["event"] == event_id
            ]
            if log and log[-1]["status"] == 200:
                break
            time.sleep(0.05)
        assert [d["attempt"] for d in log] == list(range(1, len(log) + 1))
        assert {d["status"] for d in log[:-1]} == {500}
        assert log[-1]["status"] == 200
        assert client.v1.events.retrieve(event_id).pending_webhooks == 0
        assert customer.id == deliveries_of(webhooks, event_id)[0].event["data"]["object"]["id"]

    def test_deliveries_never_hold_up_the_api(
        self, client: stripe.StripeClient, webhooks: WebhookReceiver
    ) -> None:
        webhooks.gate.clear()
        ids = [new_customer(client).id for _ in range(3)]
        assert webhooks.received == []
        webhooks.gate.set()
        for customer_id in ids:
            webhooks.wait_for_event("customer.created", customer_id)

    def test_a_reset_drops_queued_deliveries_but_counts_the_one_already_sent(
        self, client: stripe.StripeClient, webhooks: WebhookReceiver, controls: httpx.Client
    ) -> None:
        def in_flight() -> int:
            count: int = controls.get("/_emulator/health").json()["webhooks"]["in_flight"]
            return count

        webhooks.gate.clear()
        sent = new_customer(client)
        new_customer(client)
        deadline = time.monotonic() + 10
        while in_flight() != 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert in_flight() == 1
        controls.delete("/_emulator/data").raise_for_status()
        assert in_flight() == 1
        webhooks.gate.set()
        webhooks.wait_for_event("customer.created", sent.id)
        while in_flight() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert in_flight() == 0
        time.sleep(0.3)
        # The second customer's delivery was queued behind the first and went with the reset.
        assert [r.event["data"]["object"]["id"] for r in webhooks.received] == [sent.id]
        log = controls.get("/_emulator/webhooks/deliveries").json()["data"]
        assert [(d["type"], d["status"]) for d in log] == [("customer.created", 200)]


class TestWebhookFaults:
    def test_duplicate(
        self, client: stripe.StripeClient, webhooks: WebhookReceiver, controls: httpx.Client
    ) -> None:
        controls.post("/_emulator/faults", json={"webhook": "duplicate", "copies": 3, "times": 1})
        new_customer(client)
        event_id = client.v1.events.list().data[0].id
        webhooks.wait_for(lambda rs: len(rs) >= 3)
        assert [r.event["id"] for r in webhooks.received] == [event_id] * 3
        for received in webhooks.received:
            assert verified(received).id == event_id

    def test_reorder(
        self, client: stripe.StripeClient, webhooks: WebhookReceiver, controls: httpx.Client
    ) -> None:
        controls.post("/_emulator/faults", json={"webhook": "reorder", "batch": 2, "times": 1})
        first = new_customer(client)
        assert webhooks.received == []
        second = new_customer(client)
        webhooks.wait_for(lambda rs: len(rs) >= 2)
        objects = [r.event["data"]["object"]["id"] for r in webhooks.received]
        assert objects == [second.id, first.id]

    def test_drop(
        self, client: stripe.StripeClient, webhooks: WebhookReceiver, controls: httpx.Client
    ) -> None:
        controls.post(
            "/_emulator/faults",
            json={"webhook": "drop", "event_type": "customer.created", "times": 1},
        )
        dropped = new_customer(client)
        delivered = new_customer(client)
        webhooks.wait_for_event("customer.created", delivered.id)
        assert [r.event["data"]["object"]["id"] for r in webhooks.received] == [delivered.id]
        events = client.v1.events.list(params={"type": "customer.created"}).data
        assert {e.data.object["id"] for e in events} == {dropped.id, delivered.id}
        log = controls.get("/_emulator/webhooks/deliveries").json()["data"]
        assert log[0]["error"] == "dropped by fault"

    def test_delay(
        self, client: stripe.StripeClient, webhooks: WebhookReceiver, controls: httpx.Client
    ) -> None:
        controls.post("/_emulator/faults", json={"webhook": "delay", "delay_ms": 300, "times": 1})
        customer = new_customer(client)
        webhooks.wait_for_event("customer.created", customer.id, timeout=5)
        assert controls.get("/_emulator/faults").json()["data"] == []


class TestEventList:
    def test_filters(self, client: stripe.StripeClient, controls: httpx.Client) -> None:
        customer = new_customer(client)
        client.v1.customers.update(customer.id, params={"name": "J"})
        created = client.v1.events.list(params={"type": "customer.created"}).data
        assert [e.type for e in created] == ["customer.created"]
        both = client.v1.events.list(params={"types": ["customer.created", "customer.updated"]})
        assert [e.type for e in both.data] == ["customer.updated", "customer.created"]
        wildcard = client.v1.events.list(params={"type": "customer.*"})
        assert len(wildcard.data) == 2
        now = created[0].created
        assert client.v1.events.list(params={"created": {"gt": now}}).data == []
        assert len(client.v1.events.list(params={"created": {"gte": now}}).data) == 2
        controls.post("/_emulator/clock", json={"advance_seconds": 100})
        new_customer(client)
        later = client.v1.events.list(params={"created": {"gt": now + 50}}).data
        assert [e.type for e in later] == ["customer.created"]

    def test_unknown_event(self, client: stripe.StripeClient) -> None:
        with pytest.raises(stripe.InvalidRequestError) as info:
            client.v1.events.retrieve("evt_missing")
        assert info.value.http_status == 404
        assert info.value.code == "resource_missing"
