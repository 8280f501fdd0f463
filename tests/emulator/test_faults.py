"""Injected API faults (`/_emulator/faults`): errors, 429s, dropped connections, latency."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import stripe

from tests.fixtures.emulator import EmulatorProcess, WebhookReceiver, sdk_client

CREATE = "POST /v1/webhook_endpoints"


def params(**extra: Any) -> dict[str, Any]:
    return {"url": "https://example.com/hook", "enabled_events": ["*"], **extra}


def count_endpoints(client: stripe.StripeClient) -> int:
    return len(client.v1.webhook_endpoints.list(params={"limit": 100}).data)


def inject(controls: httpx.Client, **spec: Any) -> dict[str, Any]:
    response = controls.post("/_emulator/faults", json=spec)
    assert response.status_code == 200, response.text
    return dict(response.json())


class TestErrorFaults:
    def test_500_then_the_sdk_retry_succeeds_once(
        self, controls: httpx.Client, emulator_process: EmulatorProcess
    ) -> None:
        inject(controls, route=CREATE, status=500, times=1)
        with sdk_client(emulator_process.url, retries=2) as sdk:
            created = sdk.v1.webhook_endpoints.create(params=params())
            assert created.id.startswith("we_")
            assert count_endpoints(sdk) == 1
        assert controls.get("/_emulator/faults").json()["data"] == []

    def test_500_without_retries_reaches_the_caller(
        self, client: stripe.StripeClient, controls: httpx.Client
    ) -> None:
        inject(controls, route=CREATE, status=500)
        with pytest.raises(stripe.APIError) as info:
            client.v1.webhook_endpoints.create(params=params())
        assert info.value.http_status == 500
        assert info.value.error is not None
        assert info.value.error.type == "api_error"
        controls.delete("/_emulator/faults")
        assert count_endpoints(client) == 0

    def test_429_carries_retry_after(
        self, client: stripe.StripeClient, controls: httpx.Client
    ) -> None:
        inject(controls, route=CREATE, status=429, retry_after=3, times=1)
        with pytest.raises(stripe.RateLimitError) as info:
            client.v1.webhook_endpoints.create(params=params())
        assert info.value.http_status == 429
        assert info.value.headers is not None
        assert info.value.headers["Retry-After"] == "3"
        assert info.value.error is not None
        assert info.value.error.code == "rate_limit"
        assert client.v1.webhook_endpoints.create(params=params()).id.startswith("we_")

    def test_402_is_a_card_error(self, client: stripe.StripeClient, controls: httpx.Client) -> None:
        inject(controls, route=CREATE, status=402, times=1)
        with pytest.raises(stripe.CardError) as info:
            client.v1.webhook_endpoints.create(params=params())
        assert info.value.code == "card_declined"
        assert count_endpoints(client) == 0

    def test_a_global_fault_hits_every_call(
        self, client: stripe.StripeClient, controls: httpx.Client
    ) -> None:
        inject(controls, status=503, times=2)
        with pytest.raises(stripe.APIError):
            client.v1.events.list()
        with pytest.raises(stripe.APIError):
            client.v1.webhook_endpoints.list()
        assert client.v1.events.list().object == "list"

    def test_a_fault_on_a_concrete_path(
        self, client: stripe.StripeClient, controls: httpx.Client
    ) -> None:
        endpoint = client.v1.webhook_endpoints.create(params=params())
        inject(controls, route=f"GET /v1/webhook_endpoints/{endpoint.id}", status=500, times=1)
        with pytest.raises(stripe.APIError):
            client.v1.webhook_endpoints.retrieve(endpoint.id)
        assert client.v1.webhook_endpoints.retrieve(endpoint.id).id == endpoint.id


class TestDroppedConnections:
    def test_drop_before_changes_nothing(
        self, client: stripe.StripeClient, controls: httpx.Client
    ) -> None:
        inject(controls, route=CREATE, drop="before", times=1)
        with pytest.raises(stripe.APIConnectionError):
            client.v1.webhook_endpoints.create(params=params())
        assert count_endpoints(client) == 0

    def test_drop_after_the_call_took_effect(
        self, client: stripe.StripeClient, controls: httpx.Client
    ) -> None:
        inject(controls, route=CREATE, drop="after", times=1)
        with pytest.raises(stripe.APIConnectionError):
            client.v1.webhook_endpoints.create(params=params(), options={"idempotency_key": "k1"})
        assert count_endpoints(client) == 1
        # The retry with the same key finds the object the lost response described.
        retried = client.v1.webhook_endpoints.create(
            params=params(), options={"idempotency_key": "k1"}
        )
        assert count_endpoints(client) == 1
        assert retried.id == client.v1.webhook_endpoints.list().data[0].id

    def test_sdk_retries_a_drop_with_its_own_key(
        self, controls: httpx.Client, emulator_process: EmulatorProcess
    ) -> None:
        inject(controls, route=CREATE, drop="after", times=1)
        with sdk_client(emulator_process.url, retries=2) as sdk:
            created = sdk.v1.webhook_endpoints.create(params=params())
            assert count_endpoints(sdk) == 1
            assert sdk.v1.webhook_endpoints.list().data[0].id == created.id


class TestLatency:
    def test_latency_fault_is_applied_and_consumed(
        self, client: stripe.StripeClient, controls: httpx.Client
    ) -> None:
        fault = inject(controls, route="GET /v1/events", latency_ms=50, times=1)
        assert fault["latency_ms"] == 50
        assert client.v1.events.list().object == "list"
        assert controls.get("/_emulator/faults").json()["data"] == []


class TestProbability:
    def test_a_fault_hits_about_its_share_of_calls(
        self, client: stripe.StripeClient, controls: httpx.Client
    ) -> None:
        fault = inject(controls, route="GET /v1/events", status=500, probability=0.25)
        assert fault["probability"] == 0.25
        failed = 0
        for _ in range(400):
            try:
                client.v1.events.list(params={"limit": 1})
            except stripe.APIError:
                failed += 1
        # 100 expected; the odds of leaving 50..150 are below one in a million.
        assert 50 <= failed <= 150
        assert [f["hits"] for f in controls.get("/_emulator/faults").json()["data"]] == [failed]

    def test_times_counts_only_the_hits(
        self, client: stripe.StripeClient, controls: httpx.Client
    ) -> None:
        inject(controls, route="GET /v1/events", status=500, probability=0.5, times=3)
        failed = calls = 0
        while controls.get("/_emulator/faults").json()["data"] and calls < 500:
            calls += 1
            try:
                client.v1.events.list(params={"limit": 1})
            except stripe.APIError:
                failed += 1
        assert failed == 3
        assert calls > 3 or failed == calls

    def test_a_webhook_fault_with_a_probability(
        self, client: stripe.StripeClient, controls: httpx.Client, webhooks: WebhookReceiver
    ) -> None:
        inject(controls, webhook="duplicate", copies=2, probability=0.5)
        created = [client.v1.customers.create().id for _ in range(40)]
        received = webhooks.wait_for(
            lambda rs: {r.event["data"]["object"]["id"] for r in rs} >= set(created)
        )
        events = [r.event for r in received if r.event["type"] == "customer.created"]
        copies = {e["id"]: 0 for e in events}
        for e in events:
            copies[e["id"]] += 1
        assert set(copies.values()) <= {1, 2}
        # 20 of 40 expected to be doubled; fewer than 5 or more than 35 is a one in 10^5 event.
        assert 5 <= sum(1 for n in copies.values() if n == 2) <= 35


class TestFaultControls:
    @pytest.mark.parametrize(
        "spec",
        [
            {},
            {"status": 200},
            {"drop": "sideways"},
            {"webhook": "explode"},
            {"colour": "red"},
            {"status": "x"},
            {"status": 500, "probability": 0},
            {"status": 500, "probability": 1.5},
            {"status": 500, "probability": "often"},
        ],
    )
    def test_bad_fault_specs_are_refused(
        self, controls: httpx.Client, spec: dict[str, Any]
    ) -> None:
        response = controls.post("/_emulator/faults", json=spec)
        assert response.status_code == 400
        assert response.json()["error"]["type"] == "invalid_request_error"
        assert controls.get("/_emulator/faults").json()["data"] == []

    def test_list_remove_and_clear(self, controls: httpx.Client) -> None:
        a = inject(controls, route=CREATE, status=500)
        inject(controls, route=CREATE, status=429)
        assert len(controls.get("/_emulator/faults").json()["data"]) == 2
        assert controls.delete(f"/_emulator/faults/{a['id']}").json()["deleted"] is True
        assert [f["status"] for f in controls.get("/_emulator/faults").json()["data"]] == [429]
        assert controls.delete(f"/_emulator/faults/{a['id']}").status_code == 404
        controls.delete("/_emulator/faults")
        assert controls.get("/_emulator/faults").json()["data"] == []

    def test_reset_clears_faults_and_data(
        self, client: stripe.StripeClient, controls: httpx.Client
    ) -> None:
        client.v1.webhook_endpoints.create(params=params())
        inject(controls, route=CREATE, status=500)
        assert controls.delete("/_emulator/data").json() == {"deleted": True}
        assert controls.get("/_emulator/faults").json()["data"] == []
        assert count_endpoints(client) == 0
