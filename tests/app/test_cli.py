"""`python -m app …` as real processes on the stack's database and emulator: `replay-event`,
`create-api-key`, `webhooks register`; each asserted by its output and the state it left."""

from __future__ import annotations

import subprocess
import time
import uuid
from typing import Any

import stripe

from app.webhooks.handlers import HANDLERS
from tests.fixtures.service import (
    API_KEY,
    Stack,
    fault,
    run_app,
)

RETURN_URL = "https://example.com/order/complete"


def cli(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    return run_app(
        *args, database_url=stack.database_url, stripe_base=stack.emulator.url, API_KEYS=API_KEY
    )


def inbox(stack: Stack, event_id: str) -> list[dict[str, Any]]:
    return stack.rows("SELECT outcome FROM webhook_events WHERE stripe_event_id = :id", id=event_id)


def paid_after_3ds_with_webhook_lost(stack: Stack) -> tuple[str, str]:
    """An order left at `requires_action` while Stripe has its payment succeeded (the
    `payment_intent.succeeded` webhook dropped); its order id and that event's id."""
    response = stack.api.post(
        "/payment-intents",
        json={
            "amount": 2500,
            "currency": "usd",
            "description": f"cli-{uuid.uuid4().hex[:12]}",
            "automatic_payment_methods": {"enabled": True},
        },
    )
    assert response.status_code == 200, response.text
    intent = response.json()
    confirmed = stack.api.post(
        f"/payment-intents/{intent['id']}/confirm",
        json={"payment_method": "pm_card_authenticationRequired", "return_url": RETURN_URL},
    )
    assert confirmed.status_code == 200, confirmed.text
    with fault(stack, webhook="drop", event_type="payment_intent.succeeded"):
        stack.controls(
            f"/_emulator/payment_intents/{intent['id']}/authenticate", {"outcome": "succeed"}
        )
    events = stack.stripe.v1.events.list({"type": "payment_intent.succeeded", "limit": 100})
    [event] = [e for e in events.data if e.data.object["id"] == intent["id"]]
    assert stack.order(intent["order_id"])["status"] == "requires_action"
    return intent["order_id"], event.id


class TestReplayEvent:
    def test_a_lost_event_is_applied_once(self, stack: Stack) -> None:
        order_id, event_id = paid_after_3ds_with_webhook_lost(stack)
        assert inbox(stack, event_id) == []

        first = cli(stack, "replay-event", event_id)

        assert first.returncode == 0, first.stdout + first.stderr
        lines = first.stdout.splitlines()
        assert lines[0] == f"{event_id} payment_intent.succeeded: applied order {order_id}"
        assert f"{order_id}: requires_action -> paid (event {event_id} " in first.stdout
        order = stack.order(order_id)
        assert order["status"] == "paid"
        assert order["amount_received"] == 2500
        assert order["history"][-1]["source"] == event_id
        assert inbox(stack, event_id) == [{"outcome": "applied"}]

        second = cli(stack, "replay-event", event_id)

        assert second.returncode == 0, second.stdout + second.stderr
        assert "already in the webhook inbox (applied)" in second.stdout
        assert "nothing changed" in second.stdout
        assert stack.order(order_id) == order
        assert inbox(stack, event_id) == [{"outcome": "applied"}]

    def test_an_event_its_webhook_delivered_is_not_applied_again(self, stack: Stack) -> None:
        response = stack.api.post(
            "/payment-intents",
            json={
                "amount": 1200,
                "currency": "usd",
                "automatic_payment_methods": {"enabled": True},
            },
        )
        assert response.status_code == 200, response.text
        intent = response.json()
        confirmed = stack.api.post(
            f"/payment-intents/{intent['id']}/confirm",
            json={"payment_method": "pm_card_visa", "return_url": RETURN_URL},
        )
        assert confirmed.status_code == 200, confirmed.text
        events = stack.stripe.v1.events.list({"type": "payment_intent.succeeded", "limit": 100})
        [event] = [e for e in events.data if e.data.object["id"] == intent["id"]]
        deadline = time.monotonic() + 10
        while not inbox(stack, event.id) and time.monotonic() < deadline:
            time.sleep(0.05)
        # The API's confirm answer moved the order first: the webhook found it `stale`.
        assert inbox(stack, event.id) == [{"outcome": "stale"}]
        order = stack.order(intent["order_id"])
        assert order["status"] == "paid"

        result = cli(stack, "replay-event", event.id)

        assert result.returncode == 0, result.stdout + result.stderr
        assert result.stdout.startswith(
            f"{event.id} payment_intent.succeeded: already in the webhook inbox (stale)"
        )
        assert stack.order(intent["order_id"]) == order
        assert inbox(stack, event.id) == [{"outcome": "stale"}]

    def test_an_unknown_event_changes_nothing(self, stack: Stack) -> None:
        event_id = f"evt_{uuid.uuid4().hex[:24]}"

        result = cli(stack, "replay-event", event_id)

        assert result.returncode == 1, result.stdout + result.stderr
        assert result.stdout.startswith(f"{event_id}: failed: ")
        assert result.stdout.rstrip().endswith("nothing applied")
        assert inbox(stack, event_id) == []


class TestCreateApiKey:
    def test_prints_a_new_key_and_stores_nothing(self, stack: Stack) -> None:
        first = cli(stack, "create-api-key")
        second = cli(stack, "create-api-key")

        assert first.returncode == 0, first.stderr
        lines = first.stdout.splitlines()
        key = lines[0].removeprefix("API key: ")
        assert len(key) >= 40
        assert f"API_KEYS={key}" in lines
        assert "Nothing was stored" in first.stdout
        assert key not in second.stdout
        # Not known to the running service until it is in its API_KEYS.
        response = stack.public.get("/orders", headers={"Authorization": f"Bearer {key}"})
        assert response.status_code == 401


class TestWebhooksRegister:
    def test_registers_the_handled_events_and_prints_the_secret(self, stack: Stack) -> None:
        url = f"https://shop-{uuid.uuid4().hex[:8]}.example/webhooks/stripe"
        try:
            result = cli(stack, "webhooks", "register", url)

            assert result.returncode == 0, result.stdout + result.stderr
            [endpoint] = [
                e
                for e in stack.stripe.v1.webhook_endpoints.list({"limit": 100}).data
                if e.url == url
            ]
            assert endpoint.enabled_events == sorted(HANDLERS)
            assert endpoint.api_version == stripe.api_version
            assert endpoint.status == "enabled"
            lines = result.stdout.splitlines()
            assert lines[0] == (
                f"Registered {endpoint.id} for {url} at API version {stripe.api_version}, events:"
            )
            assert [line.strip() for line in lines[1 : 1 + len(HANDLERS)]] == sorted(HANDLERS)
            secret_line = lines[-1]
            assert secret_line.startswith("STRIPE_WEBHOOK_SECRET=whsec_")

            again = cli(stack, "webhooks", "register", url)

            assert again.returncode == 1, again.stdout + again.stderr
            assert f"already registered on Stripe as {endpoint.id}" in again.stdout
            assert "STRIPE_WEBHOOK_SECRET" not in again.stdout
            same = [
                e
                for e in stack.stripe.v1.webhook_endpoints.list({"limit": 100}).data
                if e.url == url
            ]
            assert [e.id for e in same] == [endpoint.id]
        finally:
            for e in stack.stripe.v1.webhook_endpoints.list({"limit": 100}).data:
                if e.url == url:
                    stack.stripe.v1.webhook_endpoints.delete(e.id)
