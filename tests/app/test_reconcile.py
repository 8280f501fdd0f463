"""`python -m app reconcile` as a real process on the stack's database and emulator: with every
webhook dropped, flows leave their orders behind Stripe; one run puts each order where Stripe
is, and names it; a second run changes nothing."""

from __future__ import annotations

import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fixtures.emulator import sdk_client, start_emulator, stop_emulator
from tests.fixtures.service import (
    STRIPE_TEST_KEY,
    Stack,
    fault,
    own_database,
    run_app,
)

RETURN_URL = "https://example.com/order/complete"
ATTEMPTS = 3  # one call and the SDK's 2 retries: a fault this many times loses the answer


def run_reconcile(
    stack: Stack, *flags: str, database_url: str | None = None, stripe_base: str | None = None
) -> subprocess.CompletedProcess[str]:
    return run_app(
        "reconcile",
        "--min-age",
        "0",
        *flags,
        database_url=database_url or stack.database_url,
        stripe_base=stripe_base or stack.emulator.url,
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
    @pytest.mark.parametrize("mode", ["full", "cursor"])
    def test_lost_webhooks_are_made_good_once(self, stack: Stack, mode: str) -> None:
        if mode == "cursor":
            ready = run_reconcile(stack)  # leaves the events cursor where Stripe is now
            assert ready.returncode == 0, ready.stdout + ready.stderr
        with fault(stack, webhook="drop"):
            stuck = leave_orders_behind(stack)
        for case in stuck:
            assert stack.order(case.order_id)["status"] == case.now, case

        first = run_reconcile(stack, *(["--full"] if mode == "full" else []))

        assert first.returncode == 0, first.stdout + first.stderr
        lines = first.stdout.splitlines()
        assert lines[0].startswith(
            "events: full pass (--full)" if mode == "full" else "events: since the cursor evt_"
        ), first.stdout
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


class TestSettlesEveryOrder:
    def test_an_order_stripe_never_made_an_intent_for_is_abandoned_and_stays_so(
        self, stack: Stack
    ) -> None:
        description = f"reconcile-{uuid.uuid4().hex[:12]}"
        body = {"amount": 1200, "currency": "usd", "description": description}
        headers = {"Idempotency-Key": f"abandon-{description}"}
        # Every attempt dropped before it reached Stripe: the outcome is unknown to the service.
        with fault(stack, route="POST /v1/payment_intents", drop="before", times=ATTEMPTS):
            assert_lost(stack.api.post("/payment-intents", json=body, headers=headers))
        [order] = stack.rows("SELECT id FROM orders WHERE description = :d", d=description)

        ran = run_reconcile(stack)

        assert ran.returncode == 0, ran.stdout + ran.stderr
        line = f"{order['id']}: pending -> abandoned (no payment intent at Stripe)"
        assert line in ran.stdout.splitlines(), ran.stdout
        settled = stack.order(order["id"])
        assert settled["status"] == "abandoned"
        assert settled["payment_intent"] is None
        assert settled["history"][-1]["source"] == "reconcile: no payment intent at Stripe"
        # The same key can no longer make the payment: nothing is created at Stripe.
        retried = stack.api.post("/payment-intents", json=body, headers=headers)
        assert retried.status_code == 409, retried.text
        assert retried.json()["error"]["code"] == "order_not_payable"
        found = stack.stripe.v1.payment_intents.search(
            params={"query": f"metadata['service_order_id']:'{order['id']}'"}
        )
        assert found.data == []
        assert stack.order(order["id"])["status"] == "abandoned"


class TestOrphans:
    """Intents at Stripe naming an order this database does not hold: on an emulator and a
    database of their own, so the captured orphan cannot fail another test's reconcile."""

    def test_uncaptured_orphans_are_canceled_and_a_captured_one_fails_the_run_loudly(
        self, stack: Stack, tmp_path: Path
    ) -> None:
        emulator = start_emulator()
        try:
            with (
                own_database(stack, "orphans") as database_url,
                sdk_client(emulator.url, api_key=STRIPE_TEST_KEY) as sdk,
            ):
                params: dict[str, Any] = {
                    "amount": 2500,
                    "currency": "usd",
                    "automatic_payment_methods": {"enabled": True, "allow_redirects": "never"},
                }
                open_one = sdk.v1.payment_intents.create(
                    params={**params, "metadata": {"service_order_id": "ord_gone_open"}}
                )
                held = sdk.v1.payment_intents.create(
                    params={
                        **params,
                        "capture_method": "manual",
                        "confirm": True,
                        "payment_method": "pm_card_visa",
                        "metadata": {"service_order_id": "ord_gone_held"},
                    }
                )
                captured = sdk.v1.payment_intents.create(
                    params={
                        **params,
                        "confirm": True,
                        "payment_method": "pm_card_visa",
                        "metadata": {"service_order_id": "ord_gone_paid"},
                    }
                )
                theirs = sdk.v1.payment_intents.create(params=params)
                assert (held.status, captured.status) == ("requires_capture", "succeeded")
                metrics = tmp_path / "reconcile.prom"

                first = run_reconcile(
                    stack,
                    "--metrics-file",
                    str(metrics),
                    database_url=database_url,
                    stripe_base=emulator.url,
                )
                second = run_reconcile(stack, database_url=database_url, stripe_base=emulator.url)

                assert first.returncode == 1, first.stdout + first.stderr
                lines = first.stdout.splitlines()
                for canceled in (open_one, held):
                    assert sdk.v1.payment_intents.retrieve(canceled.id).status == "canceled"
                    assert any(
                        line.startswith(f"{canceled.id}: orphan canceled at Stripe")
                        for line in lines
                    ), first.stdout
                why = "its order ord_gone_paid does not exist"
                assert f"{captured.id}: ORPHAN CAPTURED 2500 usd ({why})" in first.stdout
                # Logged at ERROR (the command line leaves logging unconfigured: Python's last
                # resort handler writes WARNING and above to stderr).
                assert f"orphan payment intent {captured.id} captured" in first.stderr
                assert sdk.v1.payment_intents.retrieve(captured.id).status == "succeeded"
                assert sdk.v1.payment_intents.retrieve(theirs.id).status == (
                    "requires_payment_method"
                )
                assert theirs.id not in first.stdout
                exported = metrics.read_text()
                assert 'payments_reconcile_last_run{count="orphans_canceled"} 2.0' in exported
                assert 'payments_reconcile_last_run{count="orphans_captured"} 1.0' in exported
                # Still there, still reported, still failing: never dropped silently.
                assert second.returncode == 1
                assert f"{captured.id}: ORPHAN CAPTURED" in second.stdout
                assert open_one.id not in second.stdout
        finally:
            stop_emulator(emulator)
