"""`python -m app reconcile` as a real process on the stack's database and emulator: with every
webhook dropped, flows leave their orders behind Stripe; one run puts each order where Stripe
is, and names it; a second run changes nothing."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.fixtures.service import SERVICE_WEBHOOK_SECRET, STRIPE_TEST_KEY, Stack

ROOT = Path(__file__).resolve().parents[2]
RETURN_URL = "https://example.com/order/complete"
ATTEMPTS = 3  # one call and the SDK's 2 retries: a fault this many times loses the answer


@contextmanager
def fault(stack: Stack, **spec: Any) -> Iterator[dict[str, Any]]:
    injected = stack.controls("/_emulator/faults", spec)
    try:
        yield injected
    finally:
        httpx.delete(f"{stack.emulator.url}/_emulator/faults/{injected['id']}", timeout=10)


def run_reconcile(stack: Stack) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "DATABASE_URL": stack.database_url,
        "STRIPE_SECRET_KEY": STRIPE_TEST_KEY,
        "STRIPE_API_BASE": stack.emulator.url,
        "STRIPE_WEBHOOK_SECRET": SERVICE_WEBHOOK_SECRET,
    }
    return subprocess.run(
        [sys.executable, "-m", "app", "reconcile", "--min-age", "0"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def create(stack: Stack, **params: Any) -> dict[str, Any]:
    body = {
        "amount": 2000,
        "currency": "usd",
        "description": f"reconcile-{uuid.uuid4().hex[:12]}",
        "automatic_payment_methods": {"enabled": True},
        **params,
    }
    response = stack.api.post("/payment-intents", json=body)
    assert response.status_code == 200, response.text
    return dict(response.json())


def confirm(stack: Stack, intent_id: str, payment_method: str) -> dict[str, Any]:
    response = stack.api.post(
        f"/payment-intents/{intent_id}/confirm",
        json={"payment_method": payment_method, "return_url": RETURN_URL},
    )
    assert response.status_code == 200, response.text
    return dict(response.json())


def assert_lost(response: httpx.Response) -> None:
    """The service lost Stripe's answer: 503, outcome unknown, nothing recorded."""
    assert response.status_code == 503, response.text
    assert response.json()["error"]["code"] == "stripe_outcome_unknown"


@dataclass
class Stuck:
    """An order left behind Stripe: what the service says now, and what Stripe will say."""

    name: str
    order_id: str
    now: str
    expected: str


def expected_order(stack: Stack, order_id: str) -> dict[str, Any]:
    """The order as Stripe's objects make it: status and amounts."""
    [intent] = stack.stripe.v1.payment_intents.search(
        params={"query": f"metadata['service_order_id']:'{order_id}'"}
    ).data
    refunded = 0
    if intent.latest_charge:
        charge_id = intent.latest_charge
        assert isinstance(charge_id, str)
        refunded = stack.stripe.v1.charges.retrieve(charge_id).amount_refunded
    status = {
        "succeeded": "paid",
        "canceled": "canceled",
        "requires_payment_method": "pending",
        "processing": "processing",
        "requires_action": "requires_action",
        "requires_capture": "authorized",
    }[intent.status]
    if refunded:
        status = "refunded" if refunded >= intent.amount_received else "partially_refunded"
    return {
        "status": status,
        "payment_intent": intent.id,
        "amount_received": intent.amount_received,
        "amount_refunded": refunded,
    }


def leave_orders_behind(stack: Stack) -> list[Stuck]:
    """Payment flows through the API with Stripe's webhooks lost, each ending with Stripe ahead
    of the order."""
    stuck = []

    # 3-D Secure finished by the customer after the API answered `requires_action`.
    intent = create(stack)
    confirm(stack, intent["id"], "pm_card_authenticationRequired")
    stack.controls(
        f"/_emulator/payment_intents/{intent['id']}/authenticate", {"outcome": "succeed"}
    )
    stuck.append(Stuck("3ds", intent["order_id"], "requires_action", "paid"))

    # A payment settled by the bank after the API answered `processing`.
    intent = create(stack)
    confirm(stack, intent["id"], "pm_card_delayedSettlement")
    stack.controls(f"/_emulator/payment_intents/{intent['id']}/settle", {"outcome": "succeed"})
    stuck.append(Stuck("settled", intent["order_id"], "processing", "paid"))

    # A capture whose answer was lost.
    intent = create(stack, capture_method="manual")
    confirm(stack, intent["id"], "pm_card_visa")
    route = f"POST /v1/payment_intents/{intent['id']}/capture"
    with fault(stack, route=route, drop="after", times=ATTEMPTS):
        assert_lost(stack.api.post(f"/payment-intents/{intent['id']}/capture", json={}))
    stuck.append(Stuck("capture", intent["order_id"], "authorized", "paid"))

    # A cancel whose answer was lost.
    intent = create(stack)
    route = f"POST /v1/payment_intents/{intent['id']}/cancel"
    with fault(stack, route=route, drop="after", times=ATTEMPTS):
        assert_lost(stack.api.post(f"/payment-intents/{intent['id']}/cancel", json={}))
    stuck.append(Stuck("cancel", intent["order_id"], "pending", "canceled"))

    # A partial refund whose answer was lost.
    intent = create(stack)
    confirm(stack, intent["id"], "pm_card_visa")
    with fault(stack, route="POST /v1/refunds", drop="after", times=ATTEMPTS):
        assert_lost(
            stack.api.post("/refunds", json={"payment_intent": intent["id"], "amount": 500})
        )
    stuck.append(Stuck("refund", intent["order_id"], "paid", "partially_refunded"))

    # A create whose answer was lost, with no Idempotency-Key to retry it with.
    with fault(stack, route="POST /v1/payment_intents", drop="after", times=ATTEMPTS):
        response = stack.api.post(
            "/payment-intents",
            json={
                "amount": 1500,
                "currency": "eur",
                "automatic_payment_methods": {"enabled": True},
            },
        )
    assert_lost(response)
    stuck.append(Stuck("create", response.json()["error"]["order_id"], "pending", "pending"))

    # A Checkout Session paid on the hosted page.
    session = stack.api.post(
        "/checkout-sessions",
        json={
            "mode": "payment",
            "line_items": [{"price": "price_123", "quantity": 1}],
            "success_url": "https://example.com/success",
        },
    )
    assert session.status_code == 200, session.text
    stack.controls(
        f"/_emulator/checkout/sessions/{session.json()['id']}/complete",
        {"payment_method": "pm_card_visa"},
    )
    stuck.append(Stuck("checkout", session.json()["order_id"], "pending", "paid"))
    return stuck


class TestReconcile:
    def test_lost_webhooks_are_made_good_once(self, stack: Stack) -> None:
        with fault(stack, webhook="drop"):
            stuck = leave_orders_behind(stack)
        for case in stuck:
            assert stack.order(case.order_id)["status"] == case.now, case

        first = run_reconcile(stack)

        assert first.returncode == 0, first.stdout + first.stderr
        lines = first.stdout.splitlines()
        assert lines[-1].startswith("reconcile: "), first.stdout
        for case in stuck:
            order = stack.order(case.order_id)
            expected = expected_order(stack, case.order_id)
            assert order["status"] == case.expected, (case, order)
            assert {key: order[key] for key in expected} == expected, case
            named = [line for line in lines if line.startswith(f"{case.order_id}: ")]
            assert named, (case, first.stdout)
            assert any(f"{case.now} -> " in line for line in named), (case, named)
            assert any(f" -> {case.expected} " in line for line in named), (case, named)
        linked = next(case for case in stuck if case.name == "create")
        [line] = [line for line in lines if line.startswith(f"{linked.order_id}: ")]
        assert f"linked {stack.order(linked.order_id)['payment_intent']}" in line
        # Through the same path as a webhook: the events are in the inbox, applied once.
        refund = next(case for case in stuck if case.name == "refund")
        charge = stack.stripe.v1.payment_intents.retrieve(
            stack.order(refund.order_id)["payment_intent"]
        ).latest_charge
        events = stack.rows(
            "SELECT stripe_event_id, outcome FROM webhook_events "
            "WHERE type = 'charge.refunded' AND object_id = :charge",
            charge=charge,
        )
        assert [event["outcome"] for event in events] == ["applied"]
        history = stack.order(refund.order_id)["history"]
        assert [entry["to"] for entry in history][-1] == "partially_refunded"
        assert history[-1]["source"] == events[0]["stripe_event_id"]

        second = run_reconcile(stack)

        assert second.returncode == 0, second.stdout + second.stderr
        for case in stuck:
            assert case.order_id not in second.stdout, second.stdout
            assert stack.order(case.order_id)["status"] == case.expected
        summary = second.stdout.splitlines()[-1]
        assert summary.startswith("reconcile: 0 changes;"), second.stdout
        assert " 0 new to the inbox applied" in summary, second.stdout
