"""`/refunds` through the whole stack: service, emulator, webhooks back, both databases."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from tests.app.test_stripe_faults import ATTEMPTS, fault
from tests.fixtures.service import Stack

RETURN_URL = "https://example.com/order/complete"
REFUND_ROUTE = "POST /v1/refunds"


def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert condition()


def paid_order(stack: Stack, amount: int = 2000) -> tuple[str, str]:
    """A paid order and its payment intent, paid by server-side confirmation."""
    response = stack.api.post(
        "/payment-intents",
        json={
            "amount": amount,
            "currency": "usd",
            "confirm": True,
            "payment_method": "pm_card_visa",
            "return_url": RETURN_URL,
        },
    )
    assert response.status_code == 200, response.text
    intent = response.json()
    stack.wait_for_order(intent["order_id"], "paid")
    return str(intent["order_id"]), str(intent["id"])


def stripe_refunds(stack: Stack, payment_intent: str) -> list[Any]:
    return list(stack.stripe.v1.refunds.list(params={"payment_intent": payment_intent}).data)


def local_refunds(stack: Stack, payment_intent: str) -> list[dict[str, Any]]:
    return stack.rows(
        "SELECT * FROM refunds WHERE payment_intent = :pi ORDER BY id", pi=payment_intent
    )


def assert_error(response: Any, status: int, code: str | None, param: str | None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error = dict(response.json()["error"])
    assert error["code"] == code, error
    assert error["param"] == param, error
    return error


class TestCreate:
    def test_a_partial_then_the_rest(self, stack: Stack) -> None:
        order_id, intent = paid_order(stack)

        first = stack.api.post(
            "/refunds",
            json={"payment_intent": intent, "amount": 1000, "reason": "requested_by_customer"},
        )

        assert first.status_code == 200, first.text
        partial = first.json()
        assert partial["object"] == "refund"
        assert partial["id"].startswith("re_")
        assert partial["amount"] == 1000
        assert partial["payment_intent"] == intent
        assert partial["reason"] == "requested_by_customer"
        assert partial["status"] == "succeeded"
        assert partial["order_id"] == order_id
        order = stack.order(order_id)  # at once, before any webhook
        assert order["status"] == "partially_refunded"
        assert order["amount_refunded"] == 1000
        assert order["history"][-1]["source"] == "api:POST /refunds"

        second = stack.api.post("/refunds", json={"payment_intent": intent})

        assert second.status_code == 200, second.text
        rest = second.json()
        assert rest["amount"] == 1000
        order = stack.order(order_id)
        assert order["status"] == "refunded"
        assert order["amount_refunded"] == 2000
        assert {r.id for r in stripe_refunds(stack, intent)} == {partial["id"], rest["id"]}
        latest = stack.stripe.v1.payment_intents.retrieve(intent).latest_charge
        charge = stack.stripe.v1.charges.retrieve(str(latest))
        assert charge.amount_refunded == 2000
        rows = local_refunds(stack, intent)
        assert [(r["stripe_id"], r["amount"], r["order_id"]) for r in rows] == [
            (partial["id"], 1000, order_id),
            (rest["id"], 1000, order_id),
        ]
        # Stripe's charge.refunded webhooks arrive and agree.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            events = stack.rows(
                "SELECT id FROM webhook_events WHERE type = 'charge.refunded' AND object_id = :c",
                c=charge.id,
            )
            if len(events) == 2:
                break
            time.sleep(0.05)
        assert len(events) == 2
        order = stack.order(order_id)
        assert order["status"] == "refunded"
        assert order["amount_refunded"] == 2000
        assert [h["to"] for h in order["history"]] == [
            "pending",
            "paid",
            "partially_refunded",
            "refunded",
        ]

    def test_more_than_is_left_is_refused_before_stripe(self, stack: Stack) -> None:
        order_id, intent = paid_order(stack)
        assert stack.api.post("/refunds", json={"payment_intent": intent, "amount": 500}).is_success

        response = stack.api.post("/refunds", json={"payment_intent": intent, "amount": 1600})

        error = assert_error(response, 400, "amount_too_large", "amount")
        assert "1500" in error["message"]
        assert [r.amount for r in stripe_refunds(stack, intent)] == [500]
        assert len(local_refunds(stack, intent)) == 1
        order = stack.order(order_id)
        assert order["status"] == "partially_refunded"
        assert order["amount_refunded"] == 500

    def test_a_refunded_order_cannot_be_refunded_again(self, stack: Stack) -> None:
        order_id, intent = paid_order(stack)
        assert stack.api.post("/refunds", json={"payment_intent": intent}).is_success

        response = stack.api.post("/refunds", json={"payment_intent": intent})

        error = assert_error(response, 409, "order_not_refundable", "payment_intent")
        assert "refunded" in error["message"]
        assert len(stripe_refunds(stack, intent)) == 1

    def test_an_unpaid_order_is_refused_before_stripe(self, stack: Stack) -> None:
        created = stack.api.post("/payment-intents", json={"amount": 2000, "currency": "usd"})
        assert created.status_code == 200, created.text
        intent = created.json()["id"]

        response = stack.api.post("/refunds", json={"payment_intent": intent, "amount": 100})

        error = assert_error(response, 409, "order_not_refundable", "payment_intent")
        assert "pending" in error["message"]
        assert stripe_refunds(stack, intent) == []
        assert local_refunds(stack, intent) == []
        assert stack.order(created.json()["order_id"])["status"] == "pending"

    def test_a_checkout_order_can_be_refunded(self, stack: Stack) -> None:
        session = stack.api.post(
            "/checkout-sessions",
            json={
                "mode": "payment",
                "line_items": [
                    {
                        "price_data": {
                            "currency": "usd",
                            "unit_amount": 3000,
                            "product_data": {"name": "Mug"},
                        },
                        "quantity": 1,
                    }
                ],
                "success_url": "https://example.com/success",
            },
        ).json()
        stack.controls(
            f"/_emulator/checkout/sessions/{session['id']}/complete",
            {"payment_method": "pm_card_visa"},
        )
        order = stack.wait_for_order(session["order_id"], "paid")

        response = stack.api.post(
            "/refunds", json={"payment_intent": order["payment_intent"], "amount": 1000}
        )

        assert response.status_code == 200, response.text
        order = stack.order(session["order_id"])
        assert order["status"] == "partially_refunded"
        assert order["amount_refunded"] == 1000

    def test_an_unknown_payment_intent_is_404(self, stack: Stack) -> None:
        response = stack.api.post("/refunds", json={"payment_intent": "pi_doesnotexist"})

        error = assert_error(response, 404, "resource_missing", "payment_intent")
        assert error["type"] == "invalid_request_error"

    def test_validation_errors_name_their_param(self, stack: Stack) -> None:
        order_id, intent = paid_order(stack)
        cases = [
            ({"payment_intent": intent, "amount": 0}, "amount"),
            ({"payment_intent": intent, "amount": 10.5}, "amount"),
            ({"payment_intent": intent, "amount": "1000"}, "amount"),
            ({"payment_intent": intent, "reason": "changed_my_mind"}, "reason"),
            ({"payment_intent": intent, "metadata": {"k" * 41: "v"}}, "metadata"),
            ({"payment_intent": intent, "currency": "usd"}, "currency"),
            ({"amount": 1000}, "payment_intent"),
        ]
        for body, param in cases:
            response = stack.api.post("/refunds", json=body)
            assert_error(response, 400, "parameter_invalid", param)
        assert stripe_refunds(stack, intent) == []
        assert stack.order(order_id)["status"] == "paid"

    def test_without_an_api_key_it_is_401(self, stack: Stack) -> None:
        order_id, intent = paid_order(stack)

        response = stack.public.post("/refunds", json={"payment_intent": intent})

        assert response.status_code == 401
        assert stripe_refunds(stack, intent) == []
        assert stack.order(order_id)["status"] == "paid"


class TestRead:
    def test_retrieve_and_list_by_payment_intent(self, stack: Stack) -> None:
        order_id, intent = paid_order(stack, amount=3000)
        made = []
        for amount in (1000, 500, 700):
            response = stack.api.post("/refunds", json={"payment_intent": intent, "amount": amount})
            assert response.status_code == 200, response.text
            made.append(response.json()["id"])

        found = stack.api.get(f"/refunds/{made[0]}")
        assert found.status_code == 200, found.text
        assert found.json()["amount"] == 1000
        assert found.json()["order_id"] == order_id
        assert found.json()["charge"].startswith("ch_")

        page = stack.api.get("/refunds", params={"payment_intent": intent, "limit": 2}).json()
        assert page["object"] == "list"
        assert [r["id"] for r in page["data"]] == [made[2], made[1]]
        assert page["has_more"] is True
        assert page["data"][0]["amount"] == 700
        assert page["data"][0]["order_id"] == order_id
        assert page["data"][0]["payment_intent"] == intent
        rest = stack.api.get(
            "/refunds", params={"payment_intent": intent, "starting_after": made[1]}
        ).json()
        assert [r["id"] for r in rest["data"]] == [made[0]]
        assert rest["has_more"] is False

    def test_unknown_refunds_are_404(self, stack: Stack) -> None:
        error = assert_error(
            stack.api.get("/refunds/re_doesnotexist"), 404, "resource_missing", "id"
        )
        assert error["type"] == "invalid_request_error"

    def test_list_refuses_a_bad_limit(self, stack: Stack) -> None:
        assert_error(
            stack.api.get("/refunds", params={"limit": 101}), 400, "parameter_invalid", "limit"
        )

    def test_reads_need_an_api_key(self, stack: Stack) -> None:
        assert stack.public.get("/refunds").status_code == 401
        assert stack.public.get("/refunds/re_doesnotexist").status_code == 401


class TestLostAnswer:
    """Stripe made the refund but every answer to it was lost (the SDK's retries exhausted), and
    its webhooks recorded it before the caller retried: the retry with the same Idempotency-Key
    answers with that refund instead of making a second one."""

    @pytest.mark.parametrize("amount", [500, None], ids=["partial", "everything"])
    def test_the_retry_with_the_same_key_makes_no_second_refund(
        self, stack: Stack, amount: int | None
    ) -> None:
        order_id, intent = paid_order(stack)
        body: dict[str, Any] = {"payment_intent": intent, "reason": "requested_by_customer"}
        if amount is not None:
            body["amount"] = amount
        headers = {"Idempotency-Key": f"refund-{uuid.uuid4().hex}"}
        expected = amount or 2000

        with fault(stack, route=REFUND_ROUTE, drop="after", times=ATTEMPTS):
            lost = stack.api.post("/refunds", json=body, headers=headers)

        assert lost.status_code == 503, lost.text
        assert lost.headers["retry-after"] == "1"
        error = lost.json()["error"]
        assert (error["type"], error["code"], error["order_id"]) == (
            "api_error",
            "stripe_outcome_unknown",
            order_id,
        )
        assert "may or may not have been made" in error["message"]
        [made] = stripe_refunds(stack, intent)  # Stripe did make it, once
        assert made.amount == expected
        # Its webhooks record it before the caller retries.
        wait_until(lambda: len(local_refunds(stack, intent)) == 1)
        status = "refunded" if amount is None else "partially_refunded"
        stack.wait_for_order(order_id, status)

        retried = stack.api.post("/refunds", json=body, headers=headers)

        assert retried.status_code == 200, retried.text
        assert retried.json()["id"] == made.id
        assert (retried.json()["amount"], retried.json()["order_id"]) == (expected, order_id)
        assert [r.id for r in stripe_refunds(stack, intent)] == [made.id]
        order = stack.order(order_id)
        assert (order["status"], order["amount_refunded"]) == (status, expected)
        assert [r["stripe_id"] for r in local_refunds(stack, intent)] == [made.id]
        latest = stack.stripe.v1.payment_intents.retrieve(intent).latest_charge
        assert stack.stripe.v1.charges.retrieve(str(latest)).amount_refunded == expected
        # Once answered, the key replays that answer.
        again = stack.api.post("/refunds", json=body, headers=headers)
        assert again.status_code == 200, again.text
        assert again.json()["id"] == made.id
        assert len(stripe_refunds(stack, intent)) == 1

    def test_the_same_key_for_another_refund_is_refused(self, stack: Stack) -> None:
        order_id, intent = paid_order(stack)
        headers = {"Idempotency-Key": f"refund-{uuid.uuid4().hex}"}
        with fault(stack, route=REFUND_ROUTE, drop="after", times=ATTEMPTS):
            lost = stack.api.post(
                "/refunds", json={"payment_intent": intent, "amount": 500}, headers=headers
            )
        assert lost.status_code == 503, lost.text

        other = stack.api.post(
            "/refunds", json={"payment_intent": intent, "amount": 700}, headers=headers
        )

        error = assert_error(other, 400, "idempotency_key_reused", None)
        assert error["type"] == "idempotency_error"
        assert [r.amount for r in stripe_refunds(stack, intent)] == [500]

    def test_without_a_key_a_recorded_refund_does_not_shift_the_next_ones_key(
        self, stack: Stack
    ) -> None:
        """Keys used to count the recorded refunds: a lost refund not yet recorded gave the
        next, different refund the same Stripe key, and Stripe refused it."""
        order_id, intent = paid_order(stack)
        with (
            fault(stack, route=REFUND_ROUTE, drop="after", times=ATTEMPTS),
            fault(stack, webhook="drop", event_type="refund.created", times=1),
            fault(stack, webhook="drop", event_type="charge.refunded", times=1),
        ):
            lost = stack.api.post("/refunds", json={"payment_intent": intent, "amount": 500})
            assert lost.status_code == 503, lost.text
            assert lost.json()["error"]["code"] == "stripe_outcome_unknown"

            second = stack.api.post("/refunds", json={"payment_intent": intent, "amount": 300})

        assert second.status_code == 200, second.text
        assert sorted(r.amount for r in stripe_refunds(stack, intent)) == [300, 500]
        assert stack.order(order_id)["status"] == "partially_refunded"
        numbers = stack.rows(
            "SELECT number, stripe_key, refund FROM refund_requests WHERE order_id = :o "
            "ORDER BY number",
            o=order_id,
        )
        assert [(r["number"], r["stripe_key"]) for r in numbers] == [
            (1, f"order:{order_id}:refund:1"),
            (2, f"order:{order_id}:refund:2"),
        ]
        assert numbers[0]["refund"] is None  # its answer never came
        assert numbers[1]["refund"] == second.json()["id"]

    def test_a_refusal_leaves_no_request_row(self, stack: Stack) -> None:
        order_id, intent = paid_order(stack)

        response = stack.api.post(
            "/refunds",
            json={"payment_intent": intent, "amount": 2500},
            headers={"Idempotency-Key": f"refund-{uuid.uuid4().hex}"},
        )

        assert_error(response, 400, "amount_too_large", "amount")
        assert stack.rows("SELECT id FROM refund_requests WHERE order_id = :o", o=order_id) == []
        assert stripe_refunds(stack, intent) == []
