"""Input validation before any Stripe call, on every endpoint that takes an amount: each refusal
is a 400 naming the parameter, and nothing reached Stripe (no intent or session carrying this
test's marker, no new intent at all for the public endpoint) and no order row was written.
(`tests/app/test_payment_intents.py` covers the basic amount and metadata cases of
`POST /payment-intents`; these are the rest.)"""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest

from tests.fixtures.service import Stack

SUFFIX = "statement_descriptor_suffix"


def marker() -> str:
    return f"validation-{uuid.uuid4().hex[:12]}"


def marked(stripe_object: Any, mark: str) -> bool:
    metadata = stripe_object.metadata.to_dict() if stripe_object.metadata else {}
    return bool(metadata.get("mark") == mark)


def intents_marked(stack: Stack, mark: str, since: int) -> list[Any]:
    listed = stack.stripe.v1.payment_intents.list(params={"created": {"gte": since}, "limit": 100})
    return [pi for pi in listed.auto_paging_iter() if marked(pi, mark)]


def intents_since(stack: Stack, since: int) -> int:
    listed = stack.stripe.v1.payment_intents.list(params={"created": {"gte": since}, "limit": 100})
    return len(list(listed.auto_paging_iter()))


def sessions_marked(stack: Stack, mark: str) -> list[Any]:
    listed = stack.stripe.v1.checkout.sessions.list(params={"limit": 100})
    return [s for s in listed.auto_paging_iter() if marked(s, mark)]


def order_count(stack: Stack) -> int:
    return int(stack.rows("SELECT count(*) AS n FROM orders")[0]["n"])


def assert_refused(response: Any, code: str, param: str) -> dict[str, Any]:
    assert response.status_code == 400, response.text
    error = dict(response.json()["error"])
    assert error["type"] == "invalid_request_error", error
    assert (error["code"], error["param"]) == (code, param), error
    assert error["message"]
    return error


class TestPaymentIntentCreate:
    @pytest.mark.parametrize(
        ("change", "code", "param"),
        [
            ({"amount": 1.0}, "parameter_invalid", "amount"),
            ({"amount": None}, "parameter_invalid", "amount"),
            ({"amount": True}, "parameter_invalid", "amount"),
            ({"amount": 99_999_999 + 1}, "parameter_invalid", "amount"),
            ({"amount": 10_000_000_000_000}, "parameter_invalid", "amount"),
            ({"currency": "jpy", "amount": 500.5}, "parameter_invalid", "amount"),
            ({"currency": "jpy", "amount": 49}, "amount_too_small", "amount"),
            ({"currency": "huf", "amount": 17_499}, "amount_too_small", "amount"),
            ({"currency": "gbp", "amount": 29}, "amount_too_small", "amount"),
            ({"currency": "isk", "amount": 1050}, "invalid_amount", "amount"),
            ({"currency": "bhd", "amount": 5124}, "invalid_amount", "amount"),
            ({"currency": "omr", "amount": 999_999_1}, "invalid_amount", "amount"),
            ({"currency": "xxx"}, "parameter_invalid", "currency"),
            ({"currency": ""}, "parameter_invalid", "currency"),
            ({"currency": "us"}, "parameter_invalid", "currency"),
            ({"currency": 840}, "parameter_invalid", "currency"),
            ({"metadata": {"": "v"}}, "parameter_invalid", "metadata"),
            ({"metadata": {"k": 1}}, "parameter_invalid", "metadata[k]"),
            ({"metadata": ["k", "v"]}, "parameter_invalid", "metadata"),
            ({SUFFIX: ""}, "parameter_invalid", SUFFIX),
            ({SUFFIX: "SHOP<1>"}, "parameter_invalid", SUFFIX),
            ({SUFFIX: "SHOP\\1"}, "parameter_invalid", SUFFIX),
            ({SUFFIX: "JOE'S"}, "parameter_invalid", SUFFIX),
            ({SUFFIX: 'THE "BEST"'}, "parameter_invalid", SUFFIX),
            ({SUFFIX: "12-34 56"}, "parameter_invalid", SUFFIX),
        ],
    )  # fmt: skip
    def test_refused_before_stripe(
        self, stack: Stack, change: dict[str, Any], code: str, param: str
    ) -> None:
        since = int(time.time()) - 1
        mark = marker()
        body = {"amount": 2000, "currency": "usd", **change}
        body["metadata"] = change.get("metadata", {"mark": mark})
        before = order_count(stack)

        assert_refused(stack.api.post("/payment-intents", json=body), code, param)

        assert intents_marked(stack, mark, since) == []
        assert order_count(stack) == before

    @pytest.mark.parametrize(
        ("currency", "amount"),
        [("jpy", 50), ("isk", 10_000), ("huf", 17_550), ("twd", 1_555), ("ugx", 3_777),
         ("kwd", 1_010), ("usd", 99_999_999), ("eur", 50), ("usd", 50)],
    )  # fmt: skip
    def test_the_edges_are_accepted(self, stack: Stack, currency: str, amount: int) -> None:
        response = stack.api.post(
            "/payment-intents",
            json={"amount": amount, "currency": currency, SUFFIX: "EDGE CASE"},
        )
        assert response.status_code == 200, response.text
        assert (response.json()["amount"], response.json()["currency"]) == (amount, currency)


def session_body(mark: str, **change: Any) -> dict[str, Any]:
    item = {
        "price_data": {"currency": "usd", "unit_amount": 2000, "product_data": {"name": "Mug"}},
        "quantity": 1,
    }
    body: dict[str, Any] = {
        "mode": "payment",
        "line_items": [item],
        "success_url": "https://example.com/success",
        "cancel_url": "https://example.com/cancel",
        "metadata": {"mark": mark},
    }
    for key, value in change.items():
        if key in ("unit_amount", "currency"):
            item["price_data"][key] = value
        elif key == "quantity":
            item["quantity"] = value
        else:
            body[key] = value
    return body


class TestCheckoutSessionCreate:
    @pytest.mark.parametrize(
        ("change", "code", "param"),
        [
            ({"unit_amount": -1}, "parameter_invalid", "line_items[0][price_data][unit_amount]"),
            ({"unit_amount": 20.5}, "parameter_invalid", "line_items[0][price_data][unit_amount]"),
            ({"unit_amount": 100_000_000},
             "parameter_invalid", "line_items[0][price_data][unit_amount]"),
            ({"unit_amount": 10}, "amount_too_small", "line_items"),
            ({"unit_amount": 50_000_000, "quantity": 2}, "amount_too_large", "line_items"),
            ({"currency": "kwd", "unit_amount": 1005}, "invalid_amount", "line_items"),
            ({"currency": "isk", "unit_amount": 10_050}, "invalid_amount", "line_items"),
            ({"currency": "jpy", "unit_amount": 30}, "amount_too_small", "line_items"),
            ({"currency": "abc"}, "parameter_invalid", "line_items[0][price_data][currency]"),
            ({"quantity": 0}, "parameter_invalid", "line_items[0][quantity]"),
            ({"quantity": 1.5}, "parameter_invalid", "line_items[0][quantity]"),
            ({"payment_intent_data": {SUFFIX: "BAD*NAME"}},
             "parameter_invalid", f"payment_intent_data[{SUFFIX}]"),
            ({"payment_intent_data": {SUFFIX: "2024"}},
             "parameter_invalid", f"payment_intent_data[{SUFFIX}]"),
            ({"payment_intent_data": {SUFFIX: "X" * 23}},
             "parameter_invalid", f"payment_intent_data[{SUFFIX}]"),
            ({"payment_intent_data": {"metadata": {"k" * 41: "v"}}},
             "parameter_invalid", "payment_intent_data[metadata]"),
        ],
    )  # fmt: skip
    def test_refused_before_stripe(
        self, stack: Stack, change: dict[str, Any], code: str, param: str
    ) -> None:
        mark = marker()
        before = order_count(stack)

        response = stack.api.post("/checkout-sessions", json=session_body(mark, **change))

        assert_refused(response, code, param)
        assert sessions_marked(stack, mark) == []
        assert order_count(stack) == before

    def test_a_metadata_over_the_limits_is_refused(self, stack: Stack) -> None:
        mark = marker()
        metadata = {"mark": mark, **{f"k{i}": "v" for i in range(50)}}
        response = stack.api.post("/checkout-sessions", json=session_body(mark, metadata=metadata))
        assert_refused(response, "parameter_invalid", "metadata")
        assert sessions_marked(stack, mark) == []


@pytest.fixture
def paid(stack: Stack) -> dict[str, Any]:
    intent = stack.api.post(
        "/payment-intents",
        json={
            "amount": 3000,
            "currency": "usd",
            "confirm": True,
            "payment_method": "pm_card_visa",
            "return_url": "https://example.com/done",
        },
    )
    assert intent.status_code == 200, intent.text
    stack.wait_for_order(intent.json()["order_id"], "paid")
    return dict(intent.json())


class TestRefundCreate:
    @pytest.mark.parametrize(
        ("amount", "param"),
        [(0, "amount"), (-100, "amount"), (10.5, "amount"), ("1000", "amount"),
         (100_000_000, "amount"), (None, "amount")],
    )  # fmt: skip
    def test_refused_before_stripe(
        self, stack: Stack, paid: dict[str, Any], amount: Any, param: str
    ) -> None:
        body: dict[str, Any] = {"payment_intent": paid["id"], "amount": amount}
        if amount is None:
            body = {"payment_intent": paid["id"], "amount": None, "reason": "not-a-reason"}
            param = "reason"

        assert_refused(stack.api.post("/refunds", json=body), "parameter_invalid", param)

        refunds = stack.stripe.v1.refunds.list(params={"payment_intent": paid["id"]})
        assert list(refunds.auto_paging_iter()) == []
        assert stack.order(paid["order_id"])["amount_refunded"] == 0


class TestPublicCreatePaymentIntent:
    def price(self, stack: Stack, unit_amount: int, currency: str = "usd") -> str:
        product = stack.stripe.v1.products.create(params={"name": marker()})
        return stack.stripe.v1.prices.create(
            params={"product": product.id, "currency": currency, "unit_amount": unit_amount}
        ).id

    @pytest.mark.parametrize(
        ("unit_amount", "quantity", "currency", "code"),
        [
            (10, 1, "usd", "amount_too_small"),
            (60_000_000, 2, "usd", "amount_too_large"),
            (1005, 1, "kwd", "invalid_amount"),
            (10_050, 1, "isk", "invalid_amount"),
        ],
    )
    def test_a_cart_total_stripe_would_refuse_is_refused_first(
        self, stack: Stack, unit_amount: int, quantity: int, currency: str, code: str
    ) -> None:
        price = self.price(stack, unit_amount, currency)
        since = int(time.time()) - 1
        before = (order_count(stack), intents_since(stack, since))

        response = stack.public.post(
            "/api/create-payment-intent",
            json={"items": [{"price": price, "quantity": quantity}]},
        )

        assert_refused(response, code, "items")
        assert (order_count(stack), intents_since(stack, since)) == before
