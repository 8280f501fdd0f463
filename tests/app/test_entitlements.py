"""`GET /customers/{id}/entitlements`: what a customer may use now, answered from the
subscription mirror alone (never from Stripe), on the customer's test clock when it has one.
The subscriptions arrive as signed events we build (tests/app/test_billing_webhooks.py)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.app.test_billing_webhooks import (
    MONTH,
    NOW,
    delivered,
    event,
    new_id,
    quiet_emulator,  # noqa: F401 (a fixture)
    subscription,
)
from tests.fixtures.service import Stack, extra_service, fault

pytestmark = pytest.mark.usefixtures("quiet_emulator")

GRACE = 3600


def clock_at(stack: Stack, clock: str, frozen_time: int) -> None:
    obj = {
        "id": clock,
        "object": "test_helpers.test_clock",
        "status": "ready",
        "frozen_time": frozen_time,
    }
    delivered(stack, event("test_helpers.test_clock.ready", obj, frozen_time), "applied")


def entitlements(api: httpx.Client, customer: str) -> dict[str, Any]:
    response = api.get(f"/customers/{customer}/entitlements")
    assert response.status_code == 200, response.text
    return dict(response.json())


def products(api: httpx.Client, customer: str) -> list[str]:
    return [e["product"] for e in entitlements(api, customer)["data"]]


def subscribed(stack: Stack, status: str, at: int = NOW, **fields: Any) -> dict[str, Any]:
    sub = subscription(status=status, **fields)
    delivered(stack, event("customer.subscription.created", sub, at), "applied")
    return sub


class TestEntitlements:
    def test_an_active_subscription_entitles_its_product_until_the_period_end(
        self, stack: Stack
    ) -> None:
        clock = new_id("clock")
        clock_at(stack, clock, NOW + 60)
        sub = subscribed(stack, "active", test_clock=clock)
        product = sub["items"]["data"][0]["price"]["product"]
        assert entitlements(stack.api, sub["customer"]) == {
            "object": "list",
            "customer": sub["customer"],
            "as_of": NOW + 60,
            "data": [
                {
                    "product": product,
                    "subscription": sub["id"],
                    "status": "active",
                    "until": NOW + MONTH,
                }
            ],
        }

    @pytest.mark.parametrize(
        ("status", "entitled"),
        [
            ("trialing", True),
            ("active", True),
            ("past_due", False),  # SUBSCRIPTION_GRACE_SECONDS is 0 on the stack's service
            ("unpaid", False),
            ("incomplete", False),
            ("incomplete_expired", False),
            ("canceled", False),
            ("paused", False),
        ],
    )
    def test_which_statuses_entitle(self, stack: Stack, status: str, entitled: bool) -> None:
        sub = subscribed(stack, status)
        product = sub["items"]["data"][0]["price"]["product"]
        assert products(stack.api, sub["customer"]) == ([product] if entitled else [])

    def test_a_subscription_that_lapses_stops_entitling(self, stack: Stack) -> None:
        sub = subscribed(stack, "active")
        past_due = event("customer.subscription.updated", {**sub, "status": "past_due"}, NOW + 1)
        delivered(stack, past_due, "applied")
        assert products(stack.api, sub["customer"]) == []

    def test_the_longest_subscription_of_a_product_answers_for_it(self, stack: Stack) -> None:
        customer, product = new_id("cus"), new_id("prod")
        short = subscribed(stack, "active", customer=customer, product=product, end=NOW + 10)
        long = subscribed(stack, "trialing", customer=customer, product=product, end=NOW + 99)
        data = entitlements(stack.api, customer)["data"]
        assert [(e["subscription"], e["until"]) for e in data] == [(long["id"], NOW + 99)]
        assert short["id"] != long["id"]

    def test_a_customer_the_service_never_saw_is_404(self, stack: Stack) -> None:
        response = stack.api.get(f"/customers/{new_id('cus')}/entitlements")
        assert response.status_code == 404, response.text
        assert response.json()["error"]["code"] == "resource_missing"

    def test_stripe_is_never_asked(self, stack: Stack) -> None:
        sub = subscribed(stack, "active")
        with fault(stack, status=500):  # every /v1 call fails
            assert len(products(stack.api, sub["customer"])) == 1


@pytest.fixture(scope="module")
def patient(stack: Stack) -> Any:
    """A second service on the stack's database that lets a past_due subscription entitle for
    an hour."""
    with extra_service(stack, SUBSCRIPTION_GRACE_SECONDS=str(GRACE)) as api:
        yield api


class TestGrace:
    def test_past_due_entitles_within_the_grace_on_the_clocks_time(
        self, stack: Stack, patient: httpx.Client
    ) -> None:
        clock = new_id("clock")
        clock_at(stack, clock, NOW)
        sub = subscribed(stack, "active", test_clock=clock)
        lapsed = {**sub, "status": "past_due"}
        delivered(stack, event("customer.subscription.updated", lapsed, NOW + 10), "applied")
        clock_at(stack, clock, NOW + 10 + GRACE - 1)
        assert len(products(patient, sub["customer"])) == 1
        assert products(stack.api, sub["customer"]) == []  # no grace there
        clock_at(stack, clock, NOW + 10 + GRACE)
        assert products(patient, sub["customer"]) == []

    def test_a_clock_behind_the_past_due_event_gives_no_more_than_the_grace(
        self, stack: Stack, patient: httpx.Client
    ) -> None:
        """The subscription's `past_due` event (on the clock's time) can arrive before the
        clock's own `ready` for that time: the mirrored clock is then behind the moment the
        subscription went past due, which must not count as still before it."""
        clock = new_id("clock")
        clock_at(stack, clock, NOW)
        sub = subscribed(stack, "active", test_clock=clock)
        lapsed = {**sub, "status": "past_due"}
        delivered(stack, event("customer.subscription.updated", lapsed, NOW + MONTH), "applied")
        assert products(stack.api, sub["customer"]) == []  # no grace: no access
        assert len(products(patient, sub["customer"])) == 1  # within the grace from then
        clock_at(stack, clock, NOW + MONTH + GRACE)
        assert products(patient, sub["customer"]) == []
