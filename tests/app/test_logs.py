"""No secret reaches a log line or an error body: a service process whose stderr goes to a file
runs a full flow (customer, payment intent, checkout session, refund, webhooks, errors), then the
whole log and every error body are searched for every secret the flow saw."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
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
    free_ports,
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
        port, emulator_port = free_ports(2)
        emulator = start_emulator(
            "--webhook-url", f"http://127.0.0.1:{port}/webhooks/stripe",
            "--webhook-secret", SERVICE_WEBHOOK_SECRET,
            *emulator_args,
            port=emulator_port,
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


# Real messages of the service and of Stripe (and the emulator's copies of Stripe's wording) that
# name statuses, authorizations and secrets in prose: each must reach the log as written.
PROSE = [
    "reauthorization, requires_confirmation",
    "order ord_123: requires_confirmation → authorized",
    "The authorization of this payment was declined by the card issuer.",
    "authorization, then capture: requires_capture",
    "You cannot cancel this PaymentIntent because it has a status of succeeded. Only a "
    "PaymentIntent with one of the following statuses may be canceled: requires_payment_method, "
    "requires_capture, requires_reauthorization, requires_confirmation, requires_action, "
    "processing.",
    "The remaining amount on this PaymentIntent could not be captured because the remainder of "
    "the authorized amount has been released.",
    "The client_secret provided does not match any associated PaymentIntent on this account.",
    "Invalid API Key provided: sk_test_********************1234",
    "You did not provide an API key. You need to provide your API key in the Authorization "
    "header, using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY').",
    "No API key provided: send `Authorization: Bearer <key>`.",
    "Your card was declined. Your request was in test mode, but used a non test (live) card.",
    "No such payment_intent: 'pi_3Nq8Zb'",
    "The Basic plan is billed monthly; bearer of the card: Jane Doe",
    "secret: rotate the webhook signing secret in the Dashboard",
    "webhook payment_intent.amount_capturable_updated for ord_9 applied (authorization held)",
]

SECRET_TEXTS = [
    ("Authorization: Bearer test_api_key_0123456789", "test_api_key_0123456789"),
    ("stripe key sk_live_51Habcdefghijklmnop in use", "51Habcdefghijklmnop"),
    ("rk_test_abcdefghijklmnopqrstuvwx", "abcdefghijklmnopqrstuvwx"),
    ("signing with whsec_service_tests", "service_tests"),
    ("intent pi_3Nq8ZbLkdIwHu7ix0x3H_secret_MzI1NTQ0 confirmed", "MzI1NTQ0"),
    ("session cs_test_a1b2c3_secret_d4e5f6 made", "d4e5f6"),
    ("seti_1Abc_secret_Zyx987 set up", "Zyx987"),
    ("{'headers': {'Authorization': 'Bearer zzz-top'}}", "zzz-top"),
    ('{"password": "hunter2"}', "hunter2"),
    ("authorization: tok0123456789abc", "tok0123456789abc"),
]


class TestProseIsNotRedacted:
    @pytest.mark.parametrize("text", PROSE)
    def test_real_messages_come_out_unchanged(self, text: str) -> None:
        assert Redactor([API_KEY, STRIPE_TEST_KEY])(text) == text

    @pytest.mark.parametrize(("text", "gone"), SECRET_TEXTS)
    def test_real_secrets_are_redacted(self, text: str, gone: str) -> None:
        assert gone not in Redactor()(text)

    def test_basic_is_redacted_only_for_a_credential(self) -> None:
        assert Redactor()("Basic dXNlcjpwYXNz") == "Basic [REDACTED]"
        assert Redactor()("Basic plan") == "Basic plan"

    def test_structured_fields_are_redacted_by_name(self) -> None:
        record = logging.LogRecord("app.test", logging.INFO, __file__, 1, "call", (), None)
        record.__dict__.update(
            authorization="plain-value",
            api_key="k",
            headers={"X-Api-Key": "abc", "Accept": "application/json"},
            pairs=[(b"authorization", b"raw"), (b"host", b"example.com")],
            note="reauthorization, requires_confirmation",
        )
        RedactionFilter(Redactor()).filter(record)
        fields = record.__dict__
        assert fields["authorization"] == fields["api_key"] == "[REDACTED]"
        assert fields["headers"] == {"X-Api-Key": "[REDACTED]", "Accept": "application/json"}
        assert fields["pairs"] == [(b"authorization", "[REDACTED]"), (b"host", b"example.com")]
        assert fields["note"] == "reauthorization, requires_confirmation"


LOGGING_SCRIPT = """
import json, logging, logging.config, sys
from uvicorn.config import LOGGING_CONFIG
from app.log import configure_logging
logging.config.dictConfig(LOGGING_CONFIG)  # as uvicorn does before it imports the app
configure_logging(fmt=sys.argv[1], level="DEBUG", secrets=sys.argv[2:4])
prose, secrets = json.loads(sys.stdin.read())
for name in ("app.payments", "uvicorn.error"):
    for i, text in enumerate(prose):
        logging.getLogger(name).info("<%s:%d> %s", name, i, text)
    for text, _gone in secrets:
        logging.getLogger(name).warning(text)
logging.getLogger("app.payments").info(
    "headers",
    extra={"authorization": "Bearer anything", "api_key": sys.argv[2], "password": "hunter2",
           "client_secret": "pi_1_secret_2", "status": "requires_confirmation",
           "detail": "reauthorization, requires_confirmation"},
)
"""


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_a_process_logs_prose_as_written_and_secrets_redacted(fmt: str) -> None:
    """The service's logging, configured as in the service (after uvicorn's own configuration),
    in a process of its own: prose through `app.*` and uvicorn's loggers is written as it was
    given, secrets are not, in both formats."""
    result = subprocess.run(
        [sys.executable, "-c", LOGGING_SCRIPT, fmt, API_KEY, STRIPE_TEST_KEY],
        input=json.dumps([PROSE, SECRET_TEXTS]),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    output = result.stderr
    assert "Logging error" not in output
    lines = output.splitlines()
    if fmt == "json":
        entries = [json.loads(line) for line in lines]
        messages = [entry["message"] for entry in entries]
        extras = entries[-1]
        assert extras["authorization"] == extras["api_key"] == "[REDACTED]"
        assert extras["password"] == extras["client_secret"] == "[REDACTED]"
        assert extras["status"] == "requires_confirmation"
        assert extras["detail"] == "reauthorization, requires_confirmation"
    else:
        messages = lines
    for name in ("app.payments", "uvicorn.error"):
        for i, text in enumerate(PROSE):
            expected = f"<{name}:{i}> {text}"
            assert sum(m.endswith(expected) for m in messages) == 1, (expected, output)
    for _text, gone in SECRET_TEXTS:
        assert gone not in output
    for secret in (API_KEY, STRIPE_TEST_KEY, "hunter2", "anything", "pi_1_secret_2"):
        assert secret not in output


def request_lines(log: str, method: str, path: str) -> list[str]:
    """The lines logging this request: the service's own (`GET /path 404`) or uvicorn's access
    log (`"GET /path HTTP/1.1" 404`); not an order transition naming it as its source."""
    line = re.compile(rf"{method} {re.escape(path)}(?: HTTP/[0-9.]+\"| [0-9]{{3}}\b)")
    return [each for each in log.splitlines() if line.search(each)]


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_one_request_is_logged_once_and_stripe_prose_is_kept(fmt: str) -> None:
    """A real service (`uvicorn app.main:app --log-level debug`, as `python -m app run` and the
    image start it): one request is one line in its output, in either format; a Stripe refusal
    naming `requires_reauthorization, requires_confirmation` reaches the client unchanged."""
    with wired_service(LOG_FORMAT=fmt) as both, both.service.client() as api:
        path = "/orders/ord_logged_once_0001"
        assert api.get(path).status_code == 404
        intent = api.post("/payment-intents", json={"amount": 2000, "currency": "usd"}).json()
        paid = api.post(
            f"/payment-intents/{intent['id']}/confirm",
            json={"payment_method": "pm_card_visa", "return_url": RETURN_URL},
        )
        assert paid.status_code == 200, paid.text
        canceled = api.post(f"/payment-intents/{intent['id']}/cancel", json={})
        time.sleep(0.3)
        log = both.service.log()
    assert len(request_lines(log, "GET", path)) == 1, request_lines(log, "GET", path)
    confirm = request_lines(log, "POST", f"/payment-intents/{intent['id']}/confirm")
    assert len(confirm) == 1, confirm
    assert canceled.status_code == 400, canceled.text
    message = canceled.json()["error"]["message"]
    assert "requires_reauthorization, requires_confirmation" in message, message
    assert "[REDACTED]" not in message
