"""`Idempotency-Key`: replay, conflicting parameters, keys in flight, expiry, scope."""

from __future__ import annotations

import threading
import time
from typing import Any

import httpx
import pytest
import stripe

from tests.fixtures.emulator import API_KEY, EmulatorProcess, sdk_client

AUTH = {"Authorization": f"Bearer {API_KEY}"}


def params(**extra: Any) -> dict[str, Any]:
    return {"url": "https://example.com/hook", "enabled_events": ["*"], **extra}


def count_endpoints(client: stripe.StripeClient) -> int:
    return len(client.v1.webhook_endpoints.list(params={"limit": 100}).data)


class TestReplay:
    def test_same_key_same_params_replays_the_first_response(
        self, client: stripe.StripeClient
    ) -> None:
        first = client.v1.webhook_endpoints.create(
            params=params(), options={"idempotency_key": "key-1"}
        )
        second = client.v1.webhook_endpoints.create(
            params=params(), options={"idempotency_key": "key-1"}
        )
        assert second.id == first.id
        assert second.secret == first.secret
        assert second.last_response is not None
        assert second.last_response.headers["Idempotent-Replayed"] == "true"
        assert count_endpoints(client) == 1

    def test_different_keys_create_two_objects(self, client: stripe.StripeClient) -> None:
        a = client.v1.webhook_endpoints.create(params=params(), options={"idempotency_key": "a"})
        b = client.v1.webhook_endpoints.create(params=params(), options={"idempotency_key": "b"})
        assert a.id != b.id
        assert count_endpoints(client) == 2

    def test_errors_from_execution_are_replayed(self, controls: httpx.Client) -> None:
        headers = {**AUTH, "Idempotency-Key": "err-1"}
        first = controls.post("/v1/webhook_endpoints/we_missing", data={}, headers=headers)
        second = controls.post("/v1/webhook_endpoints/we_missing", data={}, headers=headers)
        assert first.status_code == second.status_code == 404
        assert second.json() == first.json()
        assert second.headers["Idempotent-Replayed"] == "true"

    def test_validation_failures_are_not_saved(self, client: stripe.StripeClient) -> None:
        with pytest.raises(stripe.InvalidRequestError):
            client.v1.webhook_endpoints.create(
                params={"enabled_events": ["*"]},  # type: ignore[typeddict-item]
                options={"idempotency_key": "k"},
            )
        created = client.v1.webhook_endpoints.create(
            params=params(), options={"idempotency_key": "k"}
        )
        assert created.url == "https://example.com/hook"
        assert count_endpoints(client) == 1


class TestConflicts:
    def test_same_key_other_params_is_an_idempotency_error(
        self, client: stripe.StripeClient
    ) -> None:
        client.v1.webhook_endpoints.create(params=params(), options={"idempotency_key": "k"})
        with pytest.raises(stripe.IdempotencyError) as info:
            client.v1.webhook_endpoints.create(
                params=params(description="other"), options={"idempotency_key": "k"}
            )
        assert info.value.http_status == 400
        assert info.value.error is not None
        assert info.value.error.type == "idempotency_error"
        assert "same parameters" in str(info.value.user_message)
        assert count_endpoints(client) == 1

    def test_same_key_on_another_path_is_an_idempotency_error(
        self, client: stripe.StripeClient
    ) -> None:
        endpoint = client.v1.webhook_endpoints.create(
            params=params(), options={"idempotency_key": "k"}
        )
        with pytest.raises(stripe.IdempotencyError):
            client.v1.webhook_endpoints.update(
                endpoint.id, params={"description": "x"}, options={"idempotency_key": "k"}
            )
        assert client.v1.webhook_endpoints.retrieve(endpoint.id).description is None

    def test_a_key_in_flight_is_409(
        self, controls: httpx.Client, emulator_process: EmulatorProcess
    ) -> None:
        controls.post(
            "/_emulator/faults",
            json={"route": "POST /v1/webhook_endpoints", "latency_ms": 600, "times": 1},
        ).raise_for_status()
        results: dict[str, httpx.Response] = {}

        def slow() -> None:
            with httpx.Client(base_url=emulator_process.url, timeout=10) as http:
                results["slow"] = http.post(
                    "/v1/webhook_endpoints",
                    data={"url": "https://example.com/h", "enabled_events[]": "*"},
                    headers={**AUTH, "Idempotency-Key": "busy"},
                )

        thread = threading.Thread(target=slow)
        thread.start()
        # The fault is used up once the first request is in; it then holds the key while it
        # waits out the latency (the emulator serves the next request only at that await).
        for _ in range(400):
            if not controls.get("/_emulator/faults").json()["data"]:
                break
            time.sleep(0.005)
        concurrent = controls.post(
            "/v1/webhook_endpoints",
            data={"url": "https://example.com/h", "enabled_events[]": "*"},
            headers={**AUTH, "Idempotency-Key": "busy"},
        )
        thread.join()
        assert concurrent.status_code == 409
        assert concurrent.json()["error"]["code"] == "idempotency_key_in_use"
        assert results["slow"].status_code == 200
        replay = controls.post(
            "/v1/webhook_endpoints",
            data={"url": "https://example.com/h", "enabled_events[]": "*"},
            headers={**AUTH, "Idempotency-Key": "busy"},
        )
        assert replay.json()["id"] == results["slow"].json()["id"]
        counts = controls.get("/_emulator/health").json()["idempotency"]
        assert (counts["in_use"], counts["replayed"]) == (1, 1)


class TestScope:
    def test_keys_expire_after_24_hours(
        self, client: stripe.StripeClient, controls: httpx.Client
    ) -> None:
        first = client.v1.webhook_endpoints.create(
            params=params(), options={"idempotency_key": "k"}
        )
        controls.post("/_emulator/clock", json={"advance_seconds": 24 * 3600 - 10})
        assert (
            client.v1.webhook_endpoints.create(params=params(), options={"idempotency_key": "k"}).id
            == first.id
        )
        controls.post("/_emulator/clock", json={"advance_seconds": 20})
        later = client.v1.webhook_endpoints.create(
            params=params(description="new"), options={"idempotency_key": "k"}
        )
        assert later.id != first.id
        assert count_endpoints(client) == 2

    def test_keys_belong_to_one_api_key(
        self, client: stripe.StripeClient, emulator_process: EmulatorProcess
    ) -> None:
        mine = client.v1.webhook_endpoints.create(params=params(), options={"idempotency_key": "k"})
        with sdk_client(emulator_process.url, api_key="sk_test_other_account") as other:
            theirs = other.v1.webhook_endpoints.create(
                params=params(description="theirs"), options={"idempotency_key": "k"}
            )
        assert theirs.id != mine.id

    def test_get_requests_ignore_the_key(self, controls: httpx.Client) -> None:
        headers = {**AUTH, "Idempotency-Key": "read"}
        assert controls.get("/v1/events", headers=headers).status_code == 200
        assert controls.get("/v1/events?limit=1", headers=headers).status_code == 200
