"""Operations through the real stack: request ids, JSON log lines, Prometheus metrics, health."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.app.test_logs import LoggedService, Wired, start_logged_service, wired_service
from tests.fixtures.emulator import free_port
from tests.fixtures.service import API_KEY, Stack, migrate, sign_event, stop

RETURN_URL = "https://example.com/order/complete"
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(client: httpx.Client) -> Samples:
    response = client.get("/metrics", headers={"Authorization": ""})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def pay(api: httpx.Client, customer_email: str) -> dict[str, Any]:
    """A payment intent confirmed with a card that succeeds: the order goes to `paid`."""
    customer = api.post("/customers", json={"email": customer_email})
    assert customer.status_code == 200, customer.text
    intent = api.post(
        "/payment-intents",
        json={"amount": 2000, "currency": "usd", "customer": customer.json()["id"]},
    )
    assert intent.status_code == 200, intent.text
    confirmed = api.post(
        f"/payment-intents/{intent.json()['id']}/confirm",
        json={"payment_method": "pm_card_visa", "return_url": RETURN_URL},
    )
    assert confirmed.status_code == 200, confirmed.text
    return dict(intent.json())


class TestRequestIds:
    def test_a_given_request_id_is_returned(self, stack: Stack) -> None:
        response = stack.public.get("/health/live", headers={"X-Request-Id": "req-abc.123"})
        assert response.status_code == 200
        assert response.headers["x-request-id"] == "req-abc.123"

    def test_a_request_id_is_generated_when_missing_or_unusable(self, stack: Stack) -> None:
        first = stack.public.get("/health/live").headers["x-request-id"]
        second = stack.public.get(
            "/health/live", headers={"X-Request-Id": "bad id with spaces\t" + "x" * 200}
        ).headers["x-request-id"]
        assert re.fullmatch(r"[0-9a-f]{32}", first)
        assert re.fullmatch(r"[0-9a-f]{32}", second)
        assert first != second

    def test_errors_carry_the_request_id_too(self, stack: Stack) -> None:
        response = stack.public.get("/orders", headers={"X-Request-Id": "req-401"})
        assert response.status_code == 401
        assert response.headers["x-request-id"] == "req-401"


class TestHealth:
    def test_live_needs_no_key_and_does_no_io(self, stack: Stack) -> None:
        response = stack.public.get("/health/live")
        assert response.status_code == 200
        assert response.json() == {"status": "ok"}

    def test_ready_reports_each_check(self, stack: Stack) -> None:
        response = stack.public.get("/health/ready")
        assert response.status_code == 200, response.text
        assert response.json() == {
            "status": "ok",
            "failing": [],
            "checks": {
                "database": {"status": "ok"},
                "migrations": {"status": "ok"},
                "stripe": {"status": "ok"},
                "outbox": {"status": "ok"},
            },
        }

    def test_the_old_health_endpoint_is_unchanged(self, stack: Stack) -> None:
        assert stack.public.get("/health").json() == {"status": "ok", "database": "ok"}


class TestMetrics:
    def test_a_payment_shows_in_every_family(self, stack: Stack) -> None:
        before = scrape(stack.public)
        intent = pay(stack.api, "metrics@example.com")
        stack.wait_for_order(intent["order_id"], "paid")
        assert stack.public.get("/no-such-path").status_code == 404

        def grew(name: str, **labels: str) -> float:
            return value(after, name, **labels) - value(before, name, **labels)

        def succeeded_events() -> float:
            return sum(
                grew("webhook_events_total", type="payment_intent.succeeded", outcome=outcome)
                for outcome in ("applied", "stale", "duplicate")
            )

        # The confirm call already moved the order; wait for Stripe's webhook to arrive too.
        deadline = time.monotonic() + 10
        after = scrape(stack.public)
        while succeeded_events() < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
            after = scrape(stack.public)

        created = {"method": "POST", "route": "/payment-intents", "status": "200"}
        assert grew("http_requests_total", **created) == 1
        assert grew("http_requests_total", method="GET", route="/metrics", status="200") >= 1
        assert grew("http_request_duration_seconds_count", **created) == 1
        confirm = {
            "method": "POST",
            "route": "/payment-intents/{intent_id}/confirm",
            "status": "200",
        }
        assert grew("http_requests_total", **confirm) == 1, sorted(
            dict(labels) for name, labels in after if name == "http_requests_total"
        )
        # Unknown paths are one label value, never the raw path.
        assert grew("http_requests_total", method="GET", route="unmatched", status="404") == 1
        stripe_ok = {"operation": "payment_intent.create", "outcome": "ok"}
        assert grew("stripe_request_duration_seconds_count", **stripe_ok) >= 1
        assert value(after, "stripe_request_duration_seconds_bucket", le="+Inf", **stripe_ok) >= 1
        assert succeeded_events() >= 1
        to_paid = sum(
            grew("order_transitions_total", from_status=status, to_status="paid")
            for status in ("pending", "requires_action", "processing")
        )
        assert to_paid >= 1, sorted(
            dict(labels) for name, labels in after if name == "order_transitions_total"
        )
        assert value(after, "webhook_inbox_oldest_unprocessed_age_seconds") == 0

    def test_a_checkout_completed_by_webhook_counts_applied_and_its_transition(
        self, stack: Stack
    ) -> None:
        before = scrape(stack.public)
        checkout = stack.api.post(
            "/checkout-sessions",
            json={
                "mode": "payment",
                "line_items": [{"price": "price_123", "quantity": 1}],
                "success_url": "https://example.com/success",
                "cancel_url": "https://example.com/cancel",
            },
        )
        assert checkout.status_code == 200, checkout.text
        session = checkout.json()
        stack.controls(
            f"/_emulator/checkout/sessions/{session['id']}/complete",
            {"payment_method": "pm_card_visa"},
        )
        stack.wait_for_order(session["order_id"], "paid")
        after = scrape(stack.public)
        # The payment intent's events apply; checkout.session.completed then finds it paid.
        applied = sum(
            value(after, "webhook_events_total", type=kind, outcome="applied")
            - value(before, "webhook_events_total", type=kind, outcome="applied")
            for kind in ("checkout.session.completed", "payment_intent.succeeded")
        )
        assert applied >= 1
        # Every change after the order's creation (from = null) is a counted transition.
        history = [h for h in stack.order(session["order_id"])["history"] if h["from"]]
        assert history
        for change in history:
            labels = {"from_status": change["from"], "to_status": change["to"]}
            assert (
                value(after, "order_transitions_total", **labels)
                - value(before, "order_transitions_total", **labels)
                >= 1
            ), (labels, history)

    def test_stripe_errors_are_counted_by_operation(self, stack: Stack) -> None:
        before = scrape(stack.public)
        unknown = {"amount": 2000, "currency": "usd", "customer": "cus_metrics_nope"}
        assert stack.api.post("/payment-intents", json=unknown).status_code == 404
        after = scrape(stack.public)
        labels = {"operation": "payment_intent.create", "error": "InvalidRequestError"}
        assert (
            value(after, "stripe_errors_total", **labels)
            - value(before, "stripe_errors_total", **labels)
            == 1
        )

    def test_a_duplicate_delivery_is_counted(self, stack: Stack) -> None:
        intent = pay(stack.api, "metrics-dup@example.com")
        stack.wait_for_order(intent["order_id"], "paid")
        sql = (
            "SELECT payload FROM webhook_events WHERE object_id = :id "
            "AND type = 'payment_intent.succeeded'"
        )
        deadline = time.monotonic() + 10
        while not (rows := stack.rows(sql, id=intent["id"])):
            assert time.monotonic() < deadline, "the webhook never arrived"
            time.sleep(0.05)
        event = rows[0]["payload"]
        payload = event if isinstance(event, dict) else json.loads(event)
        before = scrape(stack.public)
        body = json.dumps(payload).encode()
        response = stack.public.post(
            "/webhooks/stripe",
            content=body,
            headers={
                "Stripe-Signature": sign_event(body.decode()),
                "Content-Type": "application/json",
            },
        )
        assert response.json() == {"received": True, "duplicate": True}
        after = scrape(stack.public)
        labels = {"type": "payment_intent.succeeded", "outcome": "duplicate"}
        assert (
            value(after, "webhook_events_total", **labels)
            - value(before, "webhook_events_total", **labels)
            == 1
        )


@pytest.fixture(scope="module")
def json_service() -> Iterator[Wired]:
    """An emulator whose webhooks go to one service logging JSON lines to a file."""
    with wired_service(LOG_FORMAT="json") as both:
        yield both


def lines(service: LoggedService) -> list[dict[str, Any]]:
    parsed = []
    for line in service.log().splitlines():
        if line.strip():
            parsed.append(json.loads(line))  # every line is one JSON object
    return parsed


class TestJsonLogs:
    def test_a_request_its_stripe_calls_and_its_webhook_are_json_lines(
        self, json_service: Wired
    ) -> None:
        with json_service.service.client() as api:
            response = api.post(
                "/customers",
                json={"email": "json-logs@example.com"},
                headers={"X-Request-Id": "req-json-logs-1"},
            )
            assert response.status_code == 200, response.text
            assert response.headers["x-request-id"] == "req-json-logs-1"
            intent = pay(api, "json-logs-pay@example.com")
            deadline = time.monotonic() + 10
            while api.get(f"/orders/{intent['order_id']}").json()["status"] != "paid":
                assert time.monotonic() < deadline
                time.sleep(0.05)
        records: list[dict[str, Any]] = []
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            records = lines(json_service.service)
            handled = {
                r["request_id"]
                for r in records
                if r.get("event_type") == "payment_intent.succeeded"
                and r.get("order_id") == intent["order_id"]
            }
            # The delivery's request line is written once its response is sent, after the
            # handler's line: wait for both.
            if any(r["logger"] == "app.http" and r.get("request_id") in handled for r in records):
                break
            time.sleep(0.05)
        mine = [r for r in records if r.get("request_id") == "req-json-logs-1"]
        request = next(r for r in mine if r["logger"] == "app.http")
        assert request["method"] == "POST"
        assert request["path"] == "/customers"
        assert request["route"] == "/customers"
        assert request["status"] == 200
        assert isinstance(request["duration_ms"], float | int)
        stripe_call = next(r for r in mine if r["logger"] == "app.stripe")
        assert stripe_call["operation"] == "customer.create"
        assert stripe_call["outcome"] == "ok"
        assert stripe_call["stripe_request_id"].startswith("req_")
        assert isinstance(stripe_call["duration_ms"], float | int)

        webhook = next(
            r
            for r in records
            if r["logger"] == "app.webhooks"
            and r.get("order_id") == intent["order_id"]
            and r.get("event_type") == "payment_intent.succeeded"
        )
        # The confirm call may have moved the order before the event arrived: then it is stale.
        assert webhook["outcome"] in ("applied", "stale")
        assert webhook["stripe_event_id"].startswith("evt_")
        # The webhook's own request: same request id on its request line.
        delivery = [
            r
            for r in records
            if r.get("request_id") == webhook["request_id"] and r["logger"] == "app.http"
        ]
        assert [(d["route"], d["status"]) for d in delivery] == [("/webhooks/stripe", 200)]
        transition = next(
            r
            for r in records
            if r["logger"] == "app.orders"
            and r["order_id"] == intent["order_id"]
            and r["to_status"] == "paid"
        )
        assert transition["from_status"] in ("pending", "processing", "requires_action")
        assert transition["request_id"]
        assert API_KEY not in json_service.service.log()


def test_ready_is_503_naming_migrations_when_the_schema_is_behind(
    json_service: Wired,
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        database_url = f"sqlite+aiosqlite:///{tmp}/behind.db"
        migrate(database_url)
        service = start_logged_service(tmp, json_service.emulator.url, DATABASE_URL=database_url)
        # The service migrates its database at start: move it back a revision afterwards.
        subprocess.run(
            [sys.executable, "-m", "alembic", "downgrade", "-1"],
            env={**os.environ, "DATABASE_URL": database_url},
            check=True,
            capture_output=True,
        )
        try:
            response = httpx.get(f"{service.url}/health/ready", timeout=10)
            assert response.status_code == 503, response.text
            body = response.json()
            assert body["failing"] == ["migrations"]
            assert body["checks"]["stripe"] == {"status": "ok"}
            assert "migrations head is" in body["checks"]["migrations"]["detail"]
        finally:
            stop(service.process)


def test_ready_is_503_naming_stripe_when_stripe_is_unreachable() -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    with tempfile.TemporaryDirectory() as tmp:
        service = start_logged_service(tmp, dead)
        try:
            response = httpx.get(f"{service.url}/health/ready", timeout=10)
            assert response.status_code == 503, response.text
            body = response.json()
            assert body["status"] == "unavailable"
            assert body["failing"] == ["stripe"]
            assert body["checks"]["database"] == {"status": "ok"}
            assert body["checks"]["migrations"] == {"status": "ok"}
            assert body["checks"]["stripe"]["status"] == "failing"
            assert body["checks"]["stripe"]["detail"].startswith("unreachable")
            assert httpx.get(f"{service.url}/health/live", timeout=10).status_code == 200
        finally:
            stop(service.process)
