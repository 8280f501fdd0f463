"""No secret reaches a log line or an error body: a service process whose stderr goes to a file
runs a full flow (customer, payment intent, checkout session, refund, webhooks, errors), then the
whole log and every error body are searched for every secret the flow saw."""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.log import JsonFormatter, RedactionFilter, Redactor
from tests.fixtures.emulator import (
    EmulatorProcess,
    free_port,
    start_emulator,
    stop_emulator,
)
from tests.fixtures.service import (
    API_KEY,
    CORS_ORIGIN,
    SERVICE_WEBHOOK_SECRET,
    STRIPE_TEST_KEY,
    migrate,
    stop,
)

RETURN_URL = "https://example.com/order/complete"


@dataclass
class LoggedService:
    """A uvicorn process (debug logging, access log on) whose stderr and stdout go to a file."""

    url: str
    process: subprocess.Popen[bytes]
    log_path: Path
    errors: list[str] = field(default_factory=list)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def client(self, key: str | None = API_KEY, **kwargs: Any) -> httpx.Client:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30, **kwargs)


def start_logged_service(
    directory: str, stripe_base: str, *, port: int | None = None, **env: str
) -> LoggedService:
    port = port or free_port()
    database_url = env.pop("DATABASE_URL", f"sqlite+aiosqlite:///{directory}/service-{port}.db")
    if "DATABASE_URL" not in env:
        migrate(database_url)
    log_path = Path(directory) / f"service-{port}.log"
    with log_path.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "app.main:app", "--host", "127.0.0.1",
             "--port", str(port), "--log-level", "debug"],
            env={
                **os.environ,
                "DATABASE_URL": database_url,
                "STRIPE_SECRET_KEY": STRIPE_TEST_KEY,
                "STRIPE_API_BASE": stripe_base,
                "STRIPE_WEBHOOK_SECRET": SERVICE_WEBHOOK_SECRET,
                "API_KEYS": API_KEY,
                "CORS_ORIGINS": CORS_ORIGIN,
                "LOG_LEVEL": "DEBUG",
                **env,
            },
            stdout=output,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the service exited at start:\n{log_path.read_text()}")
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return LoggedService(url, process, log_path)
        except httpx.HTTPError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError("the service did not start")


@dataclass
class Wired:
    emulator: EmulatorProcess
    service: LoggedService


@contextlib.contextmanager
def wired_service(*emulator_args: str, **env: str) -> Iterator[Wired]:
    """An emulator whose signed webhooks go to one logged service (`env` on top of its own)."""
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        emulator = start_emulator(
            "--webhook-url", f"http://127.0.0.1:{port}/webhooks/stripe",
            "--webhook-secret", SERVICE_WEBHOOK_SECRET,
            *emulator_args,
        )  # fmt: skip
        try:
            service = start_logged_service(tmp, emulator.url, port=port, **env)
            try:
                yield Wired(emulator, service)
            finally:
                stop(service.process)
        finally:
            stop_emulator(emulator)


@pytest.fixture(scope="module")
def wired() -> Iterator[Wired]:
    """An emulator whose webhooks go to one logged service (JSON log lines)."""
    with wired_service("--webhook-retry-base-ms", "200", LOG_FORMAT="json") as both:
        yield both


def control(wired: Wired, path: str, body: dict[str, Any] | None = None) -> Any:
    response = httpx.post(f"{wired.emulator.url}{path}", json=body or {}, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


def wait_for_order(api: httpx.Client, order_id: str, status: str) -> dict[str, Any]:
    deadline = time.monotonic() + 10
    while True:
        order = dict(api.get(f"/orders/{order_id}").json())
        if order["status"] == status or time.monotonic() > deadline:
            assert order["status"] == status, order
            return order
        time.sleep(0.05)


class TestNoSecretInLogsOrErrors:
    def test_a_full_flow_with_errors_leaves_no_secret_behind(self, wired: Wired) -> None:
        with (
            wired.service.client() as api,
            wired.service.client(None) as public,
            wired.service.client("wrong_key_0123456789") as wrong,
        ):
            self.flow(wired, api, public, wrong)

    def flow(
        self, wired: Wired, api: httpx.Client, public: httpx.Client, wrong: httpx.Client
    ) -> None:
        client_secrets: list[str] = []
        error_bodies: list[str] = []

        def call(client: httpx.Client, method: str, path: str, **kwargs: Any) -> httpx.Response:
            response = client.request(method, path, **kwargs)
            if response.status_code >= 400:
                error_bodies.append(response.text)
            return response

        customer = call(api, "POST", "/customers", json={"email": "logs@example.com"}).json()
        intent = call(
            api,
            "POST",
            "/payment-intents",
            json={"amount": 2000, "currency": "usd", "customer": customer["id"]},
        ).json()
        client_secrets.append(intent["client_secret"])
        paid = call(
            api,
            "POST",
            f"/payment-intents/{intent['id']}/confirm",
            json={"payment_method": "pm_card_visa", "return_url": RETURN_URL},
        )
        assert paid.status_code == 200, paid.text
        wait_for_order(api, intent["order_id"], "paid")

        browser = call(public, "POST", "/api/create-payment-intent", json={"items": [
            {"price": "price_123", "quantity": 1}]})  # fmt: skip
        assert browser.status_code == 200, browser.text
        client_secrets.append(browser.json()["clientSecret"])

        checkout = call(
            api,
            "POST",
            "/checkout-sessions",
            json={
                "mode": "payment",
                "line_items": [{"price": "price_123", "quantity": 1}],
                "success_url": "https://example.com/success",
                "cancel_url": "https://example.com/cancel",
            },
        ).json()
        control(wired, f"/_emulator/checkout/sessions/{checkout['id']}/complete",
                {"payment_method": "pm_card_visa"})  # fmt: skip
        wait_for_order(api, checkout["order_id"], "paid")
        on_stripe = httpx.get(
            f"{wired.emulator.url}/v1/checkout/sessions/{checkout['id']}",
            headers={"Authorization": f"Bearer {STRIPE_TEST_KEY}"},
        ).json()
        if on_stripe.get("client_secret"):
            client_secrets.append(on_stripe["client_secret"])

        refund = call(api, "POST", "/refunds", json={"payment_intent": intent["id"]})
        assert refund.status_code == 200, refund.text
        wait_for_order(api, intent["order_id"], "refunded")

        # Errors: a wrong key, no key, Stripe refusals, a decline, Stripe failing, card data.
        assert call(wrong, "GET", "/orders").status_code == 401
        assert call(public, "GET", "/orders").status_code == 401
        unknown = {"amount": 2000, "currency": "usd", "customer": "cus_nope"}
        assert call(api, "POST", "/payment-intents", json=unknown).status_code == 404
        declined = call(api, "POST", "/payment-intents", json={"amount": 2000, "currency": "usd"})
        client_secrets.append(declined.json()["client_secret"])
        assert call(api, "POST", f"/payment-intents/{declined.json()['id']}/confirm", json={
            "payment_method": "pm_card_chargeDeclined", "return_url": RETURN_URL,
        }).status_code == 402  # fmt: skip
        control(wired, "/_emulator/faults", {"route": "POST /v1/customers", "status": 500})
        try:
            failed = call(api, "POST", "/customers", json={"email": "fault@example.com"})
            assert failed.status_code >= 500, failed.text
        finally:
            httpx.delete(f"{wired.emulator.url}/_emulator/faults", timeout=10)
        assert call(public, "POST", "/api/create-payment-intent",
                    json={"card": {"number": "4242424242424242"}}).status_code == 400  # fmt: skip
        assert call(api, "GET", f"/payment-intents/{intent['id']}x").status_code == 404
        time.sleep(0.5)  # the last webhook deliveries

        log = wired.service.log()
        assert "Logging error" not in log  # every record was formatted, none dropped
        assert "POST /payment-intents" in log or "payment_intent" in log  # the log is not empty
        secrets = [STRIPE_TEST_KEY, SERVICE_WEBHOOK_SECRET, API_KEY, *client_secrets]
        assert len(client_secrets) >= 3
        for secret in secrets:
            assert secret not in log, secret
            for body in error_bodies:
                assert secret not in body, (secret, body)
        # The secret halves alone (after `_secret_`) are not there either.
        for secret in client_secrets:
            assert secret.split("_secret_")[1] not in log
        assert "4242424242424242" not in log


class TestRedaction:
    """The filter itself, on each shape it must remove (unit tests, no process)."""

    @pytest.mark.parametrize(
        ("text", "gone"),
        [
            ("key=sk_live_51Habcdefghijklmnop", "51Habcdefghijklmnop"),
            ("using sk_test_service_tests", "service_tests"),
            ("rk_live_abcdefghijklmnopqrstuvwx", "abcdefghijklmnopqrstuvwx"),
            ("secret whsec_abc123DEF456", "abc123DEF456"),
            ("pi_3Nq8Zb_secret_Xy12Ab34 returned", "Xy12Ab34"),
            ('{"client_secret": "anything-at-all"}', "anything-at-all"),
            ("clientSecret=zzz123", "zzz123"),
            ("Authorization: Bearer my-api-key.123", "my-api-key.123"),
            ("(b'authorization', b'Bearer abc')", "abc'"),
            ("headers {'Authorization': 'Basic dXNlcjpwYXNz'}", "dXNlcjpwYXNz"),
            ("card 4242 4242 4242 4242 here", "4242 4242 4242 4242"),
            ("card 4000-0025-0000-3155 here", "4000-0025-0000-3155"),
        ],
    )
    def test_each_shape_is_removed(self, text: str, gone: str) -> None:
        assert gone not in Redactor()(text)

    def test_configured_secrets_are_removed_literally(self) -> None:
        assert "my own secret value" not in Redactor(["my own secret value"])(
            "x my own secret value y"
        )

    @pytest.mark.parametrize(
        "text",
        [
            "order ord_123 paid 2000 usd at 1795694400 (pi_3Nq8Zb)",
            "No API key provided: send `Authorization: Bearer <key>`.",
        ],
    )
    def test_ordinary_text_is_kept(self, text: str) -> None:
        assert Redactor()(text) == text

    def test_the_filter_covers_arguments_tracebacks_and_extras(self) -> None:
        record = logging.LogRecord(
            "app.test",
            logging.ERROR,
            __file__,
            1,
            "charged with %s",
            ("sk_live_abcdefghijklmnopq",),
            None,
        )
        try:
            raise ValueError("whsec_leaked_in_exception")
        except ValueError:
            record.exc_info = sys.exc_info()
        record.header = "Bearer topsecret"
        RedactionFilter(Redactor()).filter(record)
        line = JsonFormatter().format(record)
        assert "abcdefghijklmnopq" not in line
        assert "leaked_in_exception" not in line
        assert "topsecret" not in line
        assert "ValueError" in line
