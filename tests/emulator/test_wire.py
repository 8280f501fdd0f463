"""Stripe's wire format: auth, form encoding, parameter validation, errors, headers, lists."""

from __future__ import annotations

import contextlib
import datetime
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import stripe

from tests.fixtures.emulator import API_KEY, EmulatorProcess, sdk_client

AUTH = {"Authorization": f"Bearer {API_KEY}"}
# The SDK is pinned to the emulator's own version; the day after it is a version from the future.
DAY_AFTER_PINNED = (
    datetime.date.fromisoformat(stripe.api_version[:10]) + datetime.timedelta(days=1)
).isoformat()


def endpoint_params(**extra: Any) -> dict[str, Any]:
    return {"url": "https://example.com/hook", "enabled_events": ["*"], **extra}


def error_of(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    assert set(body) == {"error"}
    return dict(body["error"])


class TestAuth:
    def test_no_key_is_401_with_stripes_message(self, controls: httpx.Client) -> None:
        response = controls.get("/v1/events")
        assert response.status_code == 401
        error = error_of(response)
        assert error["type"] == "invalid_request_error"
        assert error["message"].startswith("You did not provide an API key.")

    def test_live_key_is_refused(self, emulator_process: EmulatorProcess) -> None:
        with (
            sdk_client(emulator_process.url, api_key="sk_live_abcdefghijklmnop") as sdk,
            pytest.raises(stripe.AuthenticationError) as info,
        ):
            sdk.v1.events.list()
        assert info.value.http_status == 401
        assert "Invalid API Key provided: sk_live_" in str(info.value.user_message)
        assert "abcdefghijklmnop" not in str(info.value.user_message)

    def test_basic_auth_with_the_key_as_user_is_accepted(self, controls: httpx.Client) -> None:
        response = controls.get("/v1/events", auth=(API_KEY, ""))
        assert response.status_code == 200
        assert response.json()["object"] == "list"

    def test_controls_need_no_key(self, controls: httpx.Client) -> None:
        assert controls.get("/_emulator/faults").json() == {"object": "list", "data": []}


class TestHeaders:
    def test_request_id_and_version(self, client: stripe.StripeClient) -> None:
        endpoint = client.v1.webhook_endpoints.create(params=endpoint_params())
        response = endpoint.last_response
        assert response is not None
        assert response.request_id is not None
        assert response.request_id.startswith("req_")
        assert response.headers["Stripe-Version"] == stripe.api_version

    def test_each_request_has_its_own_id(self, controls: httpx.Client) -> None:
        ids = {controls.get("/v1/events", headers=AUTH).headers["Request-Id"] for _ in range(3)}
        assert len(ids) == 3


@contextlib.contextmanager
def versioned_client(url: str, version: str) -> Iterator[stripe.StripeClient]:
    """The SDK's client sending `Stripe-Version: version`, its connections closed afterwards."""
    sdk = stripe.StripeClient(
        API_KEY,
        base_addresses={"api": url},
        http_client=stripe.HTTPXClient(allow_sync_methods=True),
        stripe_version=version,
    )
    try:
        yield sdk
    finally:
        sdk._requestor._client.close()  # type: ignore[union-attr]


class TestStripeVersion:
    """Stripe answers an unknown `Stripe-Version` with a 400 "Invalid Stripe API version: …" (the
    message stripe-java#682 and stripe-node#2387 quote); the emulator knows every well-formed
    version dated from 2011 up to its own (`emulator.versions`)."""

    @pytest.mark.parametrize(
        "version",
        [
            "2024-06-20",
            "2025-03-31.basil",
            "2020-08-27",
            stripe.api_version,
            "2025-03-31.basil; checkout_server_update_beta=v1",
        ],
    )
    def test_known_versions_are_answered_and_echoed(
        self, controls: httpx.Client, version: str
    ) -> None:
        response = controls.get("/v1/customers", headers={**AUTH, "Stripe-Version": version})
        assert response.status_code == 200
        assert [c["id"] for c in response.json()["data"]] == ["cus_123"]
        assert response.headers["Stripe-Version"] == version

    @pytest.mark.parametrize(
        "version",
        [
            "banana",
            "2099-01-01",
            DAY_AFTER_PINNED,
            "2019-2-19",
            "2024-02-30",
            "2010-12-31",
            "2024-06-20.Basil",
            "2018-11-21 accounts_upgrade=true",
            "2024-06-20; beta",
        ],
    )
    def test_unknown_versions_are_refused_before_anything_is_written(
        self, controls: httpx.Client, version: str
    ) -> None:
        response = controls.post(
            "/v1/customers",
            data={"email": "amy@example.com"},
            headers={**AUTH, "Stripe-Version": version, "Idempotency-Key": "version-check"},
        )
        assert response.status_code == 400
        error = error_of(response)
        assert error["type"] == "invalid_request_error"
        assert error["message"] == f"Invalid Stripe API version: {version}"
        assert response.headers["Stripe-Version"] == stripe.api_version
        listed = controls.get("/v1/customers", headers=AUTH).json()["data"]
        assert [c["id"] for c in listed] == ["cus_123"]
        # The refusal did not use up the idempotency key.
        retried = controls.post(
            "/v1/customers",
            data={"email": "amy@example.com"},
            headers={**AUTH, "Idempotency-Key": "version-check"},
        )
        assert retried.status_code == 200
        assert retried.json()["email"] == "amy@example.com"
        assert "Idempotent-Replayed" not in retried.headers

    def test_no_header_answers_with_the_emulators_version(self, controls: httpx.Client) -> None:
        response = controls.get("/v1/customers", headers=AUTH)
        assert response.status_code == 200
        assert response.headers["Stripe-Version"] == stripe.api_version

    def test_routes_outside_v1_ignore_the_header(self, controls: httpx.Client) -> None:
        response = controls.get("/_emulator/faults", headers={"Stripe-Version": "banana"})
        assert response.status_code == 200
        assert response.json() == {"object": "list", "data": []}
        assert response.headers["Stripe-Version"] == stripe.api_version

    def test_the_sdk_with_an_older_version(
        self, emulator_process: EmulatorProcess, controls: httpx.Client
    ) -> None:
        with versioned_client(emulator_process.url, "2024-06-20") as sdk:
            customer = sdk.v1.customers.create(params={"email": "old@example.com"})
            assert customer.last_response is not None
            assert customer.last_response.headers["Stripe-Version"] == "2024-06-20"
            assert sdk.v1.customers.retrieve(customer.id).email == "old@example.com"

    def test_the_sdk_with_a_version_from_the_future(
        self, emulator_process: EmulatorProcess, controls: httpx.Client
    ) -> None:
        with (
            versioned_client(emulator_process.url, "2099-01-01") as sdk,
            pytest.raises(stripe.InvalidRequestError) as info,
        ):
            sdk.v1.customers.create(params={"email": "future@example.com"})
        assert info.value.http_status == 400
        assert info.value.user_message == "Invalid Stripe API version: 2099-01-01"
        listed = controls.get("/v1/customers", headers=AUTH).json()["data"]
        assert [c["id"] for c in listed] == ["cus_123"]


class TestParameters:
    def test_unknown_top_level_parameter(self, client: stripe.StripeClient) -> None:
        with pytest.raises(stripe.InvalidRequestError) as info:
            client.v1.webhook_endpoints.create(params=endpoint_params(colour="red"))
        assert info.value.http_status == 400
        assert info.value.code == "parameter_unknown"
        assert info.value.param == "colour"
        assert info.value.user_message == "Received unknown parameter: colour"
        assert client.v1.webhook_endpoints.list().data == []

    def test_unknown_nested_parameter_names_its_path(self, client: stripe.StripeClient) -> None:
        with pytest.raises(stripe.InvalidRequestError) as info:
            client.v1.events.list(params={"created": {"after": 1}})  # type: ignore[typeddict-unknown-key]
        assert info.value.param == "created[after]"
        assert info.value.user_message == "Received unknown parameter: created[after]"

    def test_missing_required_parameter(self, client: stripe.StripeClient) -> None:
        with pytest.raises(stripe.InvalidRequestError) as info:
            client.v1.webhook_endpoints.create(params={"enabled_events": ["*"]})  # type: ignore[typeddict-item]
        assert info.value.code == "parameter_missing"
        assert info.value.param == "url"
        assert info.value.user_message == "Missing required param: url."

    @pytest.mark.parametrize("value", ["abc", "1.5", "99999999999999999999999"])
    def test_invalid_integer(self, client: stripe.StripeClient, value: str) -> None:
        with pytest.raises(stripe.InvalidRequestError) as info:
            client.v1.events.list(params={"limit": value})  # type: ignore[typeddict-item]
        assert info.value.code == "parameter_invalid_integer"
        assert info.value.param == "limit"

    def test_invalid_boolean(self, client: stripe.StripeClient) -> None:
        endpoint = client.v1.webhook_endpoints.create(params=endpoint_params())
        with pytest.raises(stripe.InvalidRequestError) as info:
            client.v1.webhook_endpoints.update(endpoint.id, params={"disabled": "maybe"})  # type: ignore[typeddict-item]
        assert info.value.param == "disabled"
        assert "Invalid boolean: maybe" in str(info.value.user_message)
        assert client.v1.webhook_endpoints.retrieve(endpoint.id).status == "enabled"

    def test_limit_out_of_range(self, client: stripe.StripeClient) -> None:
        with pytest.raises(stripe.InvalidRequestError) as info:
            client.v1.events.list(params={"limit": 101})
        assert info.value.param == "limit"

    def test_metadata_limits(self, client: stripe.StripeClient) -> None:
        with pytest.raises(stripe.InvalidRequestError) as info:
            client.v1.webhook_endpoints.create(
                params=endpoint_params(metadata={f"k{i}": "v" for i in range(51)})
            )
        assert info.value.param == "metadata"
        assert "up to 50 keys" in str(info.value.user_message)
        with pytest.raises(stripe.InvalidRequestError) as info:
            client.v1.webhook_endpoints.create(params=endpoint_params(metadata={"k" * 41: "v"}))
        assert "under 40 characters" in str(info.value.user_message)

    def test_nested_arrays_and_hashes_decode(self, client: stripe.StripeClient) -> None:
        endpoint = client.v1.webhook_endpoints.create(
            params=endpoint_params(
                enabled_events=["customer.created", "payment_intent.succeeded"],
                metadata={"order_id": "12345", "nested": "yes"},
            )
        )
        again = client.v1.webhook_endpoints.retrieve(endpoint.id)
        assert again.enabled_events == ["customer.created", "payment_intent.succeeded"]
        assert again.metadata.to_dict() == {"order_id": "12345", "nested": "yes"}


class TestMalformedInput:
    """Whatever arrives, the answer is Stripe's 4xx envelope, never a 500 or a traceback."""

    @pytest.mark.parametrize(
        "body",
        [
            b"url=https://x&url[a]=b",
            b"url[a]=b&url=https://x",
            b"enabled_events[0]=a&enabled_events[x][y]=b",
            b"a[b=1",
            b"\xff\xfe=\xff",
            b"metadata[a][b][c][d][e][f][g][h][i][j][k][l][m]=1",
            b"url=" + b"x" * 6000 + b"&enabled_events[]=*",
            b"%%%=%%%",
            b"=",
            b"&&&",
        ],
    )
    def test_bad_form_bodies(self, controls: httpx.Client, body: bytes) -> None:
        response = controls.post(
            "/v1/webhook_endpoints",
            content=body,
            headers={**AUTH, "Content-Type": "application/x-www-form-urlencoded"},
        )
        assert 400 <= response.status_code < 500
        error = error_of(response)
        assert error["type"] == "invalid_request_error"
        assert "Traceback" not in response.text
        assert controls.get("/v1/webhook_endpoints", headers=AUTH).json()["data"] == []

    def test_body_too_large(self, controls: httpx.Client) -> None:
        response = controls.post(
            "/v1/webhook_endpoints",
            content=b"url=" + b"x" * (2 * 1024 * 1024),
            headers={**AUTH, "Content-Type": "application/x-www-form-urlencoded"},
        )
        assert response.status_code == 400
        assert "too large" in error_of(response)["message"]

    def test_unknown_route(self, controls: httpx.Client) -> None:
        response = controls.post("/v1/nothing_here", headers=AUTH)
        assert response.status_code == 404
        assert error_of(response)["message"].startswith(
            "Unrecognized request URL (POST: /v1/nothing_here)."
        )

    def test_unknown_id(self, client: stripe.StripeClient) -> None:
        with pytest.raises(stripe.InvalidRequestError) as info:
            client.v1.webhook_endpoints.retrieve("we_doesnotexist")
        assert info.value.http_status == 404
        assert info.value.code == "resource_missing"
        assert info.value.user_message == "No such webhook_endpoint: 'we_doesnotexist'"

    def test_envelope_fields(self, controls: httpx.Client) -> None:
        response = controls.post(
            "/v1/webhook_endpoints", data={"enabled_events[]": "*"}, headers=AUTH
        )
        error = error_of(response)
        assert error["code"] == "parameter_missing"
        assert error["param"] == "url"
        assert error["doc_url"] == "https://stripe.com/docs/error-codes/parameter-missing"
        assert error["request_log_url"].endswith(response.headers["Request-Id"])


class TestLists:
    def test_pagination(self, client: stripe.StripeClient) -> None:
        ids = [
            client.v1.webhook_endpoints.create(params=endpoint_params(description=str(i))).id
            for i in range(5)
        ]
        newest_first = list(reversed(ids))
        page = client.v1.webhook_endpoints.list(params={"limit": 2})
        assert page.object == "list"
        assert page.url == "/v1/webhook_endpoints"
        assert [e.id for e in page.data] == newest_first[:2]
        assert page.has_more is True
        page2 = client.v1.webhook_endpoints.list(
            params={"limit": 2, "starting_after": page.data[-1].id}
        )
        assert [e.id for e in page2.data] == newest_first[2:4]
        last = client.v1.webhook_endpoints.list(
            params={"limit": 2, "starting_after": page2.data[-1].id}
        )
        assert [e.id for e in last.data] == newest_first[4:]
        assert last.has_more is False
        before = client.v1.webhook_endpoints.list(
            params={"limit": 2, "ending_before": newest_first[3]}
        )
        assert [e.id for e in before.data] == newest_first[1:3]
        every = [
            e.id for e in client.v1.webhook_endpoints.list(params={"limit": 2}).auto_paging_iter()
        ]
        assert every == newest_first

    def test_deleted_objects_leave_the_list(self, client: stripe.StripeClient) -> None:
        first = client.v1.webhook_endpoints.create(params=endpoint_params())
        second = client.v1.webhook_endpoints.create(params=endpoint_params())
        deleted = client.v1.webhook_endpoints.delete(first.id)
        assert deleted.deleted is True
        assert [e.id for e in client.v1.webhook_endpoints.list().data] == [second.id]
        with pytest.raises(stripe.InvalidRequestError):
            client.v1.webhook_endpoints.retrieve(first.id)

    def test_unknown_cursor(self, client: stripe.StripeClient) -> None:
        with pytest.raises(stripe.InvalidRequestError) as info:
            client.v1.webhook_endpoints.list(params={"starting_after": "we_missing"})
        assert info.value.param == "starting_after"

    def test_expand_of_a_plain_field_is_refused(self, client: stripe.StripeClient) -> None:
        endpoint = client.v1.webhook_endpoints.create(params=endpoint_params())
        with pytest.raises(stripe.InvalidRequestError) as info:
            client.v1.webhook_endpoints.retrieve(endpoint.id, params={"expand": ["url"]})
        assert info.value.param == "expand"
        assert "cannot be expanded (url)" in str(info.value.user_message)
