"""Hostile input and unsafe settings: a live key without API keys, the public endpoint's rate
limit (in memory and shared through Redis by two processes), CORS on refusals, body size caps,
card numbers refused wherever they are (but not keys named like card fields) and never logged,
API keys never stored in clear."""

from __future__ import annotations

import hashlib
import os
import random
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import inspect

from tests.app.test_logs import LoggedService, start_logged_service
from tests.fixtures.service import API_KEY, CORS_ORIGIN, Stack, stop

PUBLIC = "/api/create-payment-intent"
LIVE_KEY = "sk_live_51SecretLiveKeyThatMustNotBePrinted"
WEBHOOK_SECRET = "whsec_SecretWebhookValueNotToBePrinted"
REDIS_URL = "redis://127.0.0.1:6379/0"
CARDS = ["4242424242424242", "4000 0025 0000 3155", "5555-5555-5555-4444", "378282246310005"]


def order_count(stack: Stack) -> int:
    return int(stack.rows("SELECT count(*) AS n FROM orders")[0]["n"])


def assert_error(response: httpx.Response, status: int, code: str, param: str | None) -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert (error["code"], error["param"]) == (code, param), error
    assert error["type"]
    assert error["message"]


def from_address(url: str, address: str, **headers: str) -> httpx.Client:
    """A client whose connections come from `address` (any 127.x.y.z): another client IP."""
    return httpx.Client(
        base_url=url,
        transport=httpx.HTTPTransport(local_address=address),
        headers=headers,
        timeout=30,
    )


def fresh_address() -> str:
    """A loopback address no other test run uses, so shared Redis counters start at zero."""
    return f"127.{random.randint(1, 254)}.{random.randint(1, 254)}.{random.randint(2, 254)}"


class TestStartup:
    def run(self, command: list[str], **env: str) -> subprocess.CompletedProcess[str]:
        environment = {k: v for k, v in os.environ.items() if k not in ("API_KEYS",)}
        environment.update(
            {"DATABASE_URL": "sqlite+aiosqlite:////tmp/payments-j-never-used.db", **env}
        )
        return subprocess.run(
            command, env=environment, capture_output=True, text=True, timeout=60, check=False
        )

    @pytest.mark.parametrize(
        "command",
        [
            [sys.executable, "-m", "uvicorn", "app.main:app", "--port", "1"],
            [sys.executable, "-m", "app", "run", "--port", "1"],
        ],
        ids=["uvicorn", "python -m app run"],
    )
    def test_a_live_key_without_api_keys_refuses_to_start(self, command: list[str]) -> None:
        result = self.run(command, STRIPE_SECRET_KEY=LIVE_KEY, STRIPE_WEBHOOK_SECRET=WEBHOOK_SECRET)

        assert result.returncode != 0
        output = result.stdout + result.stderr
        assert "API_KEYS" in output
        assert "live Stripe key" in output
        assert LIVE_KEY not in output
        assert LIVE_KEY[8:] not in output
        assert WEBHOOK_SECRET not in output

    def test_an_invalid_setting_is_named_without_any_value(self) -> None:
        result = self.run(
            [sys.executable, "-m", "uvicorn", "app.main:app", "--port", "1"],
            STRIPE_SECRET_KEY=LIVE_KEY,
            STRIPE_WEBHOOK_SECRET=WEBHOOK_SECRET,
            API_KEYS="k_0123456789abcdef",
            STRIPE_MAX_NETWORK_RETRIES=LIVE_KEY,
            PUBLIC_RATE_LIMIT="lots",
        )

        assert result.returncode != 0
        assert "STRIPE_MAX_NETWORK_RETRIES" in result.stderr
        assert "PUBLIC_RATE_LIMIT" in result.stderr
        for secret in (LIVE_KEY, WEBHOOK_SECRET, "k_0123456789abcdef", "lots"):
            assert secret not in result.stderr + result.stdout


class TestApiKeysAtRest:
    def test_no_table_holds_an_api_key_in_clear(self, stack: Stack) -> None:
        key = f"idem-{random.random()}"
        response = stack.api.post(
            "/customers", json={"email": "rest@example.com"}, headers={"Idempotency-Key": key}
        )
        assert response.status_code == 200, response.text

        [row] = stack.rows("SELECT owner FROM idempotency_keys WHERE key = :k", k=key)
        assert row["owner"] == hashlib.sha256(API_KEY.encode()).hexdigest()
        for table in inspect(stack.engine).get_table_names():
            for found in stack.rows(f"SELECT * FROM {table}"):
                assert API_KEY not in str(found), table


@pytest.fixture(scope="module")
def services(stack: Stack) -> Iterator[dict[str, LoggedService]]:
    """Extra service processes on the stack's emulator, each with its own SQLite database:
    a memory-limited one (5/hour), and two sharing a Redis limit (6/hour)."""
    started: dict[str, LoggedService] = {}
    with tempfile.TemporaryDirectory() as tmp:
        try:
            started["memory"] = start_logged_service(
                tmp, stack.emulator.url, PUBLIC_RATE_LIMIT="5/hour", PUBLIC_MAX_BODY_BYTES="2048"
            )
            shared = {"PUBLIC_RATE_LIMIT": "6/hour", "RATE_LIMIT_REDIS_URL": REDIS_URL}
            started["redis_a"] = start_logged_service(tmp, stack.emulator.url, **shared)
            started["redis_b"] = start_logged_service(tmp, stack.emulator.url, **shared)
            started["redis_down"] = start_logged_service(
                tmp,
                stack.emulator.url,
                PUBLIC_RATE_LIMIT="1/hour",
                RATE_LIMIT_REDIS_URL="redis://127.0.0.1:1/0",
            )
            yield started
        finally:
            for service in started.values():
                stop(service.process)


class TestRateLimit:
    def test_in_memory_the_public_endpoint_is_limited_per_client_ip(
        self, services: dict[str, LoggedService]
    ) -> None:
        service = services["memory"]
        address = fresh_address()
        with (
            from_address(service.url, address, Origin=CORS_ORIGIN) as browser,
            from_address(service.url, fresh_address()) as other,
            service.client() as api,
        ):
            for _ in range(5):
                assert browser.post(PUBLIC, json={}).status_code == 400  # counted, not limited
            limited = browser.post(PUBLIC, json={})

            assert_error(limited, 429, "rate_limited", None)
            assert limited.json()["error"]["type"] == "rate_limit_error"
            assert 1 <= int(limited.headers["retry-after"]) <= 3600
            # The browser can read the refusal: CORS headers are on it, Retry-After exposed.
            assert limited.headers["access-control-allow-origin"] == CORS_ORIGIN
            assert "retry-after" in limited.headers["access-control-expose-headers"].lower()
            # Another address has its own count; the API-key endpoints are not limited.
            assert other.post(PUBLIC, json={}).status_code == 400
            assert api.get("/orders").status_code == 200
            assert browser.post(PUBLIC, json={}).status_code == 429

    def test_in_redis_two_processes_share_one_limit(
        self, services: dict[str, LoggedService]
    ) -> None:
        address = fresh_address()
        with (
            from_address(services["redis_a"].url, address) as a,
            from_address(services["redis_b"].url, address) as b,
        ):
            statuses = [(a if i % 2 else b).post(PUBLIC, json={}).status_code for i in range(6)]
            assert statuses == [400] * 6

            assert_error(a.post(PUBLIC, json={}), 429, "rate_limited", None)
            assert_error(b.post(PUBLIC, json={}), 429, "rate_limited", None)

    def test_with_redis_unreachable_requests_are_let_through_and_logged(
        self, services: dict[str, LoggedService]
    ) -> None:
        service = services["redis_down"]
        with from_address(service.url, fresh_address()) as browser:
            assert [browser.post(PUBLIC, json={}).status_code for _ in range(3)] == [400] * 3
        assert "rate limit backend unavailable" in service.log()


class TestCors:
    def test_refusals_carry_cors_headers_for_an_allowed_origin_only(self, stack: Stack) -> None:
        allowed = stack.public.post(
            PUBLIC, json={"order_id": CARDS[0]}, headers={"Origin": CORS_ORIGIN}
        )
        foreign = stack.public.post(
            PUBLIC, json={"order_id": CARDS[0]}, headers={"Origin": "https://evil.example"}
        )

        assert allowed.status_code == foreign.status_code == 400
        assert allowed.headers["access-control-allow-origin"] == CORS_ORIGIN
        assert "access-control-allow-origin" not in foreign.headers

    def test_private_endpoints_are_not_open_to_browsers(self, stack: Stack) -> None:
        preflight = stack.public.options(
            "/payment-intents",
            headers={
                "Origin": "https://evil.example",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization",
            },
        )
        assert "access-control-allow-origin" not in preflight.headers


class TestBodySize:
    def test_the_public_endpoint_takes_at_most_64_kib(self, stack: Stack) -> None:
        before = order_count(stack)
        padding = "x" * (64 * 1024)
        response = stack.public.post(PUBLIC, json={"order_id": padding})

        assert_error(response, 413, "request_too_large", None)
        assert order_count(stack) == before
        small = stack.public.post(PUBLIC, json={"order_id": "x" * 1000})
        assert small.status_code == 400  # read and validated, not refused for its size

    def test_other_endpoints_take_at_most_1_mib(self, stack: Stack) -> None:
        before = order_count(stack)
        big = {"amount": 2000, "currency": "usd", "description": "x" * (1024 * 1024)}
        assert_error(stack.api.post("/payment-intents", json=big), 413, "request_too_large", None)
        assert order_count(stack) == before

    def test_a_chunked_body_is_cut_off_at_the_cap(self, stack: Stack) -> None:
        def chunks() -> Iterator[bytes]:
            yield b'{"order_id": "'
            for _ in range(20):
                yield b"x" * 8192
            yield b'"}'

        response = stack.public.post(
            PUBLIC, content=chunks(), headers={"Content-Type": "application/json"}
        )
        assert_error(response, 413, "request_too_large", None)

    def test_the_cap_is_a_setting(self, services: dict[str, LoggedService]) -> None:
        with from_address(services["memory"].url, fresh_address()) as browser:
            response = browser.post(PUBLIC, json={"order_id": "x" * 2100})
        assert_error(response, 413, "request_too_large", None)


CARD_BODIES: list[tuple[dict[str, Any], str | None]] = [
    ({"card": {"number": CARDS[0], "exp_month": 12, "cvc": "123"}}, "card[number]"),
    ({"items": [{"price": "price_123", "card[number]": CARDS[0]}]}, "items[0][card[number]]"),
    ({"order_id": CARDS[1]}, "order_id"),
    ({"items": [{"price": f"price_{CARDS[2]}"}]}, "items[0][price]"),
    ({"items": [{"price": "price_123", "quantity": int(CARDS[3])}]}, "items[0][quantity]"),
    # A key that is a card number is named, but the answer's redaction hides it.
    ({"items": [{"price": "price_123"}], CARDS[0]: "x"}, "[REDACTED CARD NUMBER]"),
]


class TestCardData:
    @pytest.mark.parametrize(("body", "param"), CARD_BODIES)
    def test_the_public_endpoint_refuses_card_data(
        self, stack: Stack, body: dict[str, Any], param: str | None
    ) -> None:
        before = order_count(stack)
        response = stack.public.post(PUBLIC, json=body)

        assert_error(response, 400, "card_data_refused", param)
        assert "Stripe.js" in response.json()["error"]["message"]
        for card in CARDS:
            assert card not in response.text
        assert order_count(stack) == before

    @pytest.mark.parametrize(
        ("body", "param"),
        [
            ({"metadata": {"pan": CARDS[0]}}, "metadata[pan]"),
            ({"metadata": {"note": f"card {CARDS[2]}"}}, "metadata[note]"),
            ({"description": f"card {CARDS[1]}"}, "description"),
            ({"payment_method_data": {"card": {"number": CARDS[3]}}},
             "payment_method_data[card][number]"),
        ],
    )  # fmt: skip
    def test_the_private_api_refuses_a_card_number_under_any_key(
        self, stack: Stack, body: dict[str, Any], param: str | None
    ) -> None:
        before = order_count(stack)
        response = stack.api.post(
            "/payment-intents", json={"amount": 2000, "currency": "usd", **body}
        )
        assert_error(response, 400, "card_data_refused", param)
        assert order_count(stack) == before

    def test_a_card_number_in_a_form_body_is_refused_for_its_value(self, stack: Stack) -> None:
        before = order_count(stack)
        response = stack.api.post(
            "/payment-intents",
            content=f"amount=2000&currency=usd&card[number]={CARDS[0]}",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert_error(response, 400, "card_data_refused", "card[number]")
        assert order_count(stack) == before

    def test_card_like_key_names_are_not_card_data(self, stack: Stack) -> None:
        metadata = {"number": "12", "card": "gift", "cvc": "n/a", "card_number": "none"}
        response = stack.api.post(
            "/payment-intents", json={"amount": 2000, "currency": "usd", "metadata": metadata}
        )

        assert response.status_code == 200, response.text
        assert response.json()["metadata"].items() >= metadata.items()
        on_stripe = stack.stripe.v1.payment_intents.retrieve(response.json()["id"])
        assert on_stripe.metadata.to_dict().items() >= metadata.items()

    def test_on_the_public_endpoint_a_key_named_number_is_only_an_unknown_parameter(
        self, stack: Stack
    ) -> None:
        before = order_count(stack)
        response = stack.public.post(
            PUBLIC, json={"items": [{"price": "price_123"}], "number": "12"}
        )
        assert_error(response, 400, "parameter_invalid", "number")
        assert order_count(stack) == before

    def test_a_card_number_in_a_query_string_is_refused(self, stack: Stack) -> None:
        response = stack.api.get("/payment-intents/search", params={"query": f"x:'{CARDS[0]}'"})
        assert_error(response, 400, "card_data_refused", "query")

    def test_numbers_that_fail_luhn_are_not_card_data(self, stack: Stack) -> None:
        response = stack.public.post(PUBLIC, json={"order_id": "4242424242424241"})
        assert_error(response, 404, "resource_missing", "order_id")

    def test_refused_card_data_is_never_logged(self, services: dict[str, LoggedService]) -> None:
        service = services["redis_a"]
        with service.client() as api:
            for body, _ in CARD_BODIES:
                # The private API, which the rate limit leaves alone.
                response = api.post("/payment-intents", json={"amount": 2000, **body})
                assert response.status_code == 400
        log = service.log()
        assert "card data" in log  # the refusals are logged, without the data
        for card in CARDS:
            assert card not in log
            assert card.replace(" ", "").replace("-", "") not in log


class TestOpenApiErrors:
    def test_every_error_status_is_declared_with_the_envelope(self, stack: Stack) -> None:
        spec = stack.public.get("/openapi.json").json()
        envelope = {"$ref": "#/components/schemas/ErrorEnvelope"}
        assert "HTTPValidationError" not in spec["components"]["schemas"]
        for path, operations in spec["paths"].items():
            for method, operation in operations.items():
                responses = operation["responses"]
                assert "422" not in responses, (method, path)
                private = (method, path) not in {
                    ("post", PUBLIC),
                    ("get", "/api/config"),
                    ("post", "/webhooks/stripe"),
                    ("get", "/health"),
                    ("get", "/health/live"),
                    ("get", "/health/ready"),
                    ("get", "/metrics"),
                }
                assert ("401" in responses) == private, (method, path)
                assert ("429" in responses) == (path == PUBLIC), (method, path)
                if method == "post":
                    assert {"400", "413"} <= set(responses), (method, path)
                for status, response in responses.items():
                    if status[0] in "45" and (path, status) != ("/health/ready", "503"):
                        # (readiness answers 503 with its own report of what failed)
                        schema = response["content"]["application/json"]["schema"]
                        assert schema == envelope, (method, path, status)
