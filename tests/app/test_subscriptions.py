"""Subscriptions through the service's REST, against the emulator's Stripe Billing with its signed
webhooks flowing back: created (with the money-safety rules of `POST /customers`), changed,
canceled, mirrored, and driven over a Stripe test clock
(https://docs.stripe.com/billing/testing/test-clocks).

Stripe's behaviour followed: a renewal invoice is created and paid at each period end; a failed
renewal payment makes the subscription `past_due`
(https://docs.stripe.com/billing/subscriptions/overview#subscription-statuses); with
`payment_behavior=default_incomplete` the subscription starts `incomplete` and its first
invoice's `confirmation_secret.client_secret` is what the customer confirms
(https://docs.stripe.com/billing/subscriptions/build-subscriptions)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypeVar

import httpx
import pytest

from tests.fixtures.service import Stack, backdate, extra_service, fault

T = TypeVar("T")
DAY = 86400
HOUR = 3600
START = 1_767_225_600  # 2026-01-01T00:00:00Z: then months of 31, 28 and 31 days
ATTEMPTS = 3  # the stack's service: one call and the SDK's 2 retries


def wait_for(read: Callable[[], T], done: Callable[[T], bool], timeout: float = 15.0) -> T:
    """Read until `done` (the webhooks arrive when they arrive); the last read."""
    deadline = time.monotonic() + timeout
    value = read()
    while not done(value) and time.monotonic() < deadline:
        time.sleep(0.05)
        value = read()
    assert done(value), _brief(value)
    return value


def ok(response: httpx.Response, status: int = 200) -> dict[str, Any]:
    assert response.status_code == status, response.text
    return dict(response.json())


def new_clock(stack: Stack, at: int = START) -> str:
    clock = stack.stripe.v1.test_helpers.test_clocks.create(params={"frozen_time": at})
    return str(clock.id)


def advance(stack: Stack, clock: str, to: int) -> None:
    stack.stripe.v1.test_helpers.test_clocks.advance(clock, params={"frozen_time": to})
    wait_for(
        lambda: stack.stripe.v1.test_helpers.test_clocks.retrieve(clock).status,
        lambda status: status == "ready",
    )


def customer_with(stack: Stack, card: str = "pm_card_visa", clock: str | None = None) -> str:
    """A customer made through the service (on `clock`), with `card` attached."""
    body: dict[str, Any] = {"email": f"sub-{uuid.uuid4().hex[:8]}@example.com"}
    if clock is not None:
        body["test_clock"] = clock
    customer = ok(stack.api.post("/customers", json=body))
    if clock is not None:
        assert customer["test_clock"] == clock
    attach(stack, customer["id"], card)
    return str(customer["id"])


def attach(stack: Stack, customer: str, card: str) -> str:
    pm = ok(stack.api.post(f"/customers/{customer}/payment-methods", json={"payment_method": card}))
    return str(pm["id"])


def subscribe(
    stack: Stack,
    customer: str,
    pm: str | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> httpx.Response:
    if pm is None:
        listed = ok(stack.api.get(f"/customers/{customer}/payment-methods"))
        pm = listed["data"][0]["id"]
    body = {
        "customer": customer,
        "items": [{"price": "price_monthly", "quantity": 1}],
        "default_payment_method": pm,
        **extra,
    }
    return stack.api.post("/subscriptions", json=body, headers=headers)


def subscription(stack: Stack, sub: str) -> dict[str, Any]:
    return ok(stack.api.get(f"/subscriptions/{sub}"))


def invoices(stack: Stack, sub: str) -> list[dict[str, Any]]:
    return list(ok(stack.api.get("/invoices", params={"subscription": sub, "limit": 100}))["data"])


def entitled(stack: Stack, customer: str) -> dict[str, Any]:
    return ok(stack.api.get(f"/customers/{customer}/entitlements"))


def rows(stack: Stack, customer: str) -> list[dict[str, Any]]:
    return stack.rows(
        "SELECT id, stripe_id, status, event_created FROM subscriptions WHERE customer = :c "
        "ORDER BY id",
        c=customer,
    )


def on_stripe(stack: Stack, customer: str) -> list[str]:
    listed = stack.stripe.v1.subscriptions.list(params={"customer": customer, "status": "all"})
    return [s.id for s in listed.data]


class TestOverSimulatedTime:
    def test_paid_renewals_then_a_failing_card_then_cancel(self, stack: Stack) -> None:
        clock = new_clock(stack)
        customer = customer_with(stack, clock=clock)
        created = ok(subscribe(stack, customer))
        sub = created["id"]
        assert (created["status"], created["customer"]) == ("active", customer)
        assert created["client_secret"] is None  # paid at once: nothing to confirm
        product = stack.stripe.v1.prices.retrieve("price_monthly").product
        first = wait_for(lambda: invoices(stack, sub), lambda found: len(found) == 1)
        assert first[0]["status"] == "paid"
        assert [e["product"] for e in entitled(stack, customer)["data"]] == [product]

        # Two periods: a renewal invoice, paid, at each period end; entitled throughout.
        # A renewal invoice is a draft for an hour, then finalized and charged
        # (https://docs.stripe.com/billing/subscriptions/overview#subscription-lifecycle).
        for count, end in ((2, START + 31 * DAY), (3, START + 59 * DAY)):
            to = end + 2 * HOUR
            advance(stack, clock, to)
            wait_for(lambda: entitled(stack, customer), lambda found, to=to: found["as_of"] == to)
            paid = wait_for(
                lambda: invoices(stack, sub),
                lambda found, count=count: (
                    len(found) == count and all(i["status"] == "paid" for i in found)
                ),
            )
            assert paid[0]["created"] == end  # on the clock's time
            renewed = wait_for(
                lambda: subscription(stack, sub), lambda s, to=to: _period_end(s) > to
            )
            assert renewed["status"] == "active"
            assert renewed["latest_invoice"] == paid[0]["id"]
            rights = entitled(stack, customer)
            assert [(e["product"], e["status"]) for e in rights["data"]] == [(product, "active")]
            assert rights["data"][0]["until"] == _period_end(renewed)
        found = invoices(stack, sub)
        assert [i["status"] for i in found] == ["paid", "paid", "paid"]
        assert [i["billing_reason"] for i in found] == [
            "subscription_cycle",
            "subscription_cycle",
            "subscription_create",
        ]

        # A card that declines every charge: the next renewal fails, past_due, not entitled.
        failing = attach(stack, customer, "pm_card_chargeCustomerFail")
        updated = ok(
            stack.api.post(f"/subscriptions/{sub}", json={"default_payment_method": failing})
        )
        assert updated["default_payment_method"] == failing
        advance(stack, clock, START + 90 * DAY + 2 * HOUR)
        lapsed = wait_for(lambda: subscription(stack, sub), lambda s: s["status"] == "past_due")
        assert lapsed["latest_invoice"] == invoices(stack, sub)[0]["id"]
        assert wait_for(lambda: invoices(stack, sub), lambda f: len(f) == 4)[0]["status"] == "open"
        assert entitled(stack, customer)["data"] == []
        (row,) = rows(stack, customer)
        assert row["status"] == "past_due"

        # The invoices' PaymentIntents carry no `service_order_id`: no order for any of them.
        assert stack.rows("SELECT id FROM orders WHERE customer = :c", c=customer) == []
        intents = stack.stripe.v1.payment_intents.list(params={"customer": customer}).data
        assert len(intents) >= 3
        outcomes = {
            row["outcome"]
            for intent in intents
            for row in stack.rows(
                "SELECT outcome FROM webhook_events WHERE object_id = :id", id=intent.id
            )
        }
        assert outcomes == {"ignored"}

        canceled = ok(stack.api.post(f"/subscriptions/{sub}/cancel"))
        assert canceled["status"] == "canceled"
        assert stack.stripe.v1.subscriptions.retrieve(sub).status == "canceled"
        assert subscription(stack, sub)["status"] == "canceled"
        assert entitled(stack, customer)["data"] == []


def _period_end(sub: dict[str, Any]) -> int:
    return max(int(item["current_period_end"]) for item in sub["items"]["data"])


class TestCreate:
    def test_default_incomplete_answers_the_client_secret_to_confirm(self, stack: Stack) -> None:
        customer = customer_with(stack)
        created = ok(subscribe(stack, customer, payment_behavior="default_incomplete"))
        assert created["status"] == "incomplete"
        assert created["client_secret"]
        assert "_secret_" in created["client_secret"]
        # Kept nowhere: a read does not show it.
        read = subscription(stack, created["id"])
        assert read["client_secret"] is None
        assert isinstance(read["latest_invoice"], str)
        stored = stack.rows(
            "SELECT data FROM invoices WHERE stripe_id = :id", id=read["latest_invoice"]
        )
        assert stored
        assert "_secret_" not in str(stored[0]["data"])

    def test_a_decline_under_error_if_incomplete_is_402_and_leaves_nothing(
        self, stack: Stack
    ) -> None:
        customer = customer_with(stack, card="pm_card_chargeCustomerFail")
        response = subscribe(stack, customer, payment_behavior="error_if_incomplete")
        assert response.status_code == 402, response.text
        assert response.json()["error"]["type"] == "card_error"
        assert rows(stack, customer) == []
        assert on_stripe(stack, customer) == []

    @pytest.mark.parametrize(
        ("body", "param"),
        [
            ({"items": []}, "items"),
            ({"items": [{"price": "price_monthly", "quantity": 0}]}, "items[0][quantity]"),
            ({"trial_period_days": 731}, "trial_period_days"),
            ({"payment_behavior": "pending_if_incomplete"}, "payment_behavior"),
            ({"coupon": "X"}, "coupon"),
        ],
    )
    def test_invalid_parameters_are_refused_before_stripe(
        self, stack: Stack, body: dict[str, Any], param: str
    ) -> None:
        customer = f"cus_never_{uuid.uuid4().hex[:8]}"
        request = {"customer": customer, "items": [{"price": "price_monthly"}], **body}
        response = stack.api.post("/subscriptions", json=request)
        assert response.status_code == 400, response.text
        assert response.json()["error"]["param"] == param
        assert rows(stack, customer) == []

    def test_the_same_price_twice_is_refused(self, stack: Stack) -> None:
        customer = f"cus_never_{uuid.uuid4().hex[:8]}"
        items = [{"price": "price_monthly"}, {"price": "price_monthly", "quantity": 2}]
        response = stack.api.post("/subscriptions", json={"customer": customer, "items": items})
        assert response.status_code == 400, response.text
        assert rows(stack, customer) == []

    def test_an_unknown_customer_is_stripes_refusal_and_leaves_no_row(self, stack: Stack) -> None:
        customer = f"cus_missing_{uuid.uuid4().hex[:8]}"
        response = stack.api.post(
            "/subscriptions", json={"customer": customer, "items": [{"price": "price_monthly"}]}
        )
        assert response.status_code in (400, 404), response.text
        assert response.json()["error"]["code"] == "resource_missing"
        assert rows(stack, customer) == []

    def test_a_lost_answer_is_resumed_by_the_same_key_never_a_second_subscription(
        self, stack: Stack
    ) -> None:
        customer = customer_with(stack)
        key = f"sub-{uuid.uuid4().hex}"
        with fault(stack, route="POST /v1/subscriptions", drop="after", times=ATTEMPTS):
            lost = subscribe(stack, customer, headers={"Idempotency-Key": key})
        assert lost.status_code == 503, lost.text
        error = lost.json()["error"]
        assert error["code"] == "stripe_outcome_unknown"
        kept = [r for r in rows(stack, customer) if r["stripe_id"] is None]
        assert [r["id"] for r in kept] == [error["subscription_row"]]
        other = subscribe(stack, customer, headers={"Idempotency-Key": key}, metadata={"x": "y"})
        assert other.status_code == 400, other.text
        assert other.json()["error"]["code"] == "idempotency_key_reused"
        resumed = ok(subscribe(stack, customer, headers={"Idempotency-Key": key}))
        assert resumed["status"] == "active"
        assert on_stripe(stack, customer) == [resumed["id"]]
        # One row: the placeholder, or the webhook's row of the same subscription that took
        # over its key.
        assert stack.rows(
            "SELECT stripe_id, idempotency_key FROM subscriptions WHERE customer = :c", c=customer
        ) == [{"stripe_id": resumed["id"], "idempotency_key": key}]
        again = ok(subscribe(stack, customer, headers={"Idempotency-Key": key}))
        assert again["id"] == resumed["id"]
        assert on_stripe(stack, customer) == [resumed["id"]]

    def test_a_row_older_than_stripe_keeps_keys_is_not_resumed(self, stack: Stack) -> None:
        """Stripe keeps an idempotency key for 24 hours: past 23, resending the row's key could
        start a second subscription (a second charge every period), so the retry is refused."""
        customer = customer_with(stack)
        key = f"sub-old-{uuid.uuid4().hex}"
        with fault(stack, route="POST /v1/subscriptions", drop="after", times=ATTEMPTS):
            lost = subscribe(stack, customer, headers={"Idempotency-Key": key})
        assert lost.status_code == 503, lost.text
        row_id = lost.json()["error"]["subscription_row"]
        made = on_stripe(stack, customer)
        assert len(made) == 1
        backdate(stack, "subscriptions", row_id, created_at=timedelta(hours=24))

        retried = subscribe(stack, customer, headers={"Idempotency-Key": key})

        assert retried.status_code == 409, retried.text
        refused = retried.json()["error"]
        assert (refused["code"], refused["subscription_row"]) == (
            "subscription_not_resumable",
            row_id,
        )
        assert on_stripe(stack, customer) == made


class TestUpdateAndCancel:
    def test_price_quantity_period_end_and_metadata(self, stack: Stack) -> None:
        customer = customer_with(stack)
        sub = ok(subscribe(stack, customer))
        item = sub["items"]["data"][0]["id"]
        price = stack.stripe.v1.prices.create(
            params={
                "currency": "usd",
                "unit_amount": 2500,
                "recurring": {"interval": "month"},
                "product": stack.stripe.v1.prices.retrieve("price_monthly").product,
            }
        )
        changed = ok(
            stack.api.post(
                f"/subscriptions/{sub['id']}",
                json={"items": [{"price": price.id, "quantity": 3}], "metadata": {"tier": "b"}},
            )
        )
        (now,) = changed["items"]["data"]
        assert (now["id"], now["price"]["id"], now["quantity"]) == (item, price.id, 3)
        assert changed["metadata"] == {"tier": "b"}
        at_stripe = stack.stripe.v1.subscriptions.retrieve(sub["id"])
        assert (at_stripe["items"].data[0].price.id, at_stripe["items"].data[0].quantity) == (
            price.id,
            3,
        )
        # Not prorated: no new invoice for the change.
        assert len(stack.stripe.v1.invoices.list(params={"subscription": sub["id"]}).data) == 1
        for flag in (True, False):
            flipped = ok(
                stack.api.post(f"/subscriptions/{sub['id']}", json={"cancel_at_period_end": flag})
            )
            assert flipped["cancel_at_period_end"] is flag
            assert stack.stripe.v1.subscriptions.retrieve(sub["id"]).cancel_at_period_end is flag
            assert subscription(stack, sub["id"])["cancel_at_period_end"] is flag

    def test_a_retry_after_a_lost_answer_is_the_same_change(self, stack: Stack) -> None:
        customer = customer_with(stack)
        sub = ok(subscribe(stack, customer))["id"]
        route = "POST /v1/subscriptions/{subscription_exposed_id}"
        headers = {"Idempotency-Key": f"upd-{uuid.uuid4().hex}"}
        body = {"metadata": {"seats": "5"}}
        with fault(stack, route=route, drop="after", times=ATTEMPTS):
            lost = stack.api.post(f"/subscriptions/{sub}", json=body, headers=headers)
        assert lost.status_code == 503, lost.text
        assert lost.json()["error"]["code"] == "stripe_outcome_unknown"
        # The change reached Stripe; the retry is answered with it (Stripe replays its answer).
        assert stack.stripe.v1.subscriptions.retrieve(sub).metadata.to_dict() == {"seats": "5"}
        retried = ok(stack.api.post(f"/subscriptions/{sub}", json=body, headers=headers))
        assert retried["metadata"] == {"seats": "5"}
        assert subscription(stack, sub)["metadata"] == {"seats": "5"}

    def test_refused_changes(self, stack: Stack) -> None:
        customer = customer_with(stack)
        sub = ok(subscribe(stack, customer))["id"]
        nothing = stack.api.post(f"/subscriptions/{sub}", json={})
        assert nothing.status_code == 400, nothing.text
        wrong_item = stack.api.post(
            f"/subscriptions/{sub}", json={"items": [{"id": "si_other", "quantity": 2}]}
        )
        assert wrong_item.status_code == 400, wrong_item.text
        assert wrong_item.json()["error"]["param"] == "items[0][id]"
        missing = stack.api.post("/subscriptions/sub_missing", json={"metadata": {"a": "b"}})
        assert missing.status_code == 404, missing.text
        assert ok(stack.api.post(f"/subscriptions/{sub}/cancel"))["status"] == "canceled"
        again = ok(stack.api.post(f"/subscriptions/{sub}/cancel"))
        assert again["status"] == "canceled"
        ended = stack.api.post(f"/subscriptions/{sub}", json={"metadata": {"a": "b"}})
        assert ended.status_code == 409, ended.text
        assert ended.json()["error"]["code"] == "subscription_ended"
        assert stack.stripe.v1.subscriptions.retrieve(sub).metadata.to_dict() == {}


class TestMirror:
    def test_a_change_made_at_stripe_reaches_the_mirror(self, stack: Stack) -> None:
        customer = customer_with(stack)
        sub = ok(subscribe(stack, customer))["id"]
        # As a change in the Dashboard would: only its webhook tells the service.
        stack.stripe.v1.subscriptions.update(sub, params={"metadata": {"from": "dashboard"}})
        row = wait_for(lambda: subscription(stack, sub), lambda s: s["metadata"] != {})
        assert row["metadata"] == {"from": "dashboard"}
        (stored,) = rows(stack, customer)
        assert stored["event_created"] is not None
        listed = ok(stack.api.get("/subscriptions", params={"customer": customer}))
        assert [s["id"] for s in listed["data"]] == [sub]

    def test_duplicated_and_reordered_updates_leave_the_newest_state(self, stack: Stack) -> None:
        customer = customer_with(stack)
        sub = ok(subscribe(stack, customer))["id"]
        kind = "customer.subscription.updated"
        with (
            fault(stack, webhook="reorder", event_type=kind, batch=3),
            fault(stack, webhook="duplicate", event_type=kind, copies=2),
        ):
            for n in range(3):
                body = {"metadata": {"step": str(n)}}
                ok(stack.api.post(f"/subscriptions/{sub}", json=body))
            time.sleep(0.5)  # let the reordered batch flow (no assertion rests on the time)
        at_stripe = stack.stripe.v1.subscriptions.retrieve(sub).metadata.to_dict()
        assert at_stripe == {"step": "2"}
        applied = wait_for(
            lambda: stack.rows(
                "SELECT count(*) AS n FROM webhook_events WHERE object_id = :id AND type = :t",
                id=sub,
                t=kind,
            )[0]["n"],
            lambda n: n >= 3,
        )
        assert applied >= 3
        assert subscription(stack, sub)["metadata"] == {"step": "2"}


def _brief(value: Any) -> Any:
    """What a failed wait last read, in short: ids and statuses."""
    if isinstance(value, list):
        return [(v.get("id"), v.get("status"), v.get("billing_reason")) for v in value]
    if isinstance(value, dict) and "status" in value:
        return (value.get("id"), value.get("status"))
    return value


class TestCheckout:
    """A subscription-mode Checkout Session and the subscription it makes, linked both ways
    whichever of their webhooks arrives first."""

    def _session(self, stack: Stack, customer: str) -> dict[str, Any]:
        body = {
            "mode": "subscription",
            "line_items": [{"price": "price_monthly", "quantity": 1}],
            "customer": customer,
            "subscription_data": {"trial_period_days": 7},
            "success_url": "https://example.com/success",
            "cancel_url": "https://example.com/cancel",
        }
        return ok(stack.api.post("/checkout-sessions", json=body))

    def _complete(self, stack: Stack, session: str) -> str:
        stack.controls(f"/_emulator/checkout/sessions/{session}/complete")
        return str(stack.stripe.v1.checkout.sessions.retrieve(session).subscription)

    def test_linked_both_ways_and_entitled(self, stack: Stack) -> None:
        customer = customer_with(stack)
        session = self._session(stack, customer)["id"]
        sub = self._complete(stack, session)
        mirrored = wait_for(
            lambda: stack.api.get(f"/subscriptions/{sub}"),
            lambda r: r.status_code == 200 and r.json()["checkout_session"] == session,
        ).json()
        assert (mirrored["status"], mirrored["customer"]) == ("trialing", customer)
        assert ok(stack.api.get(f"/checkout-sessions/{session}"))["subscription"] == sub
        listed = ok(stack.api.get("/subscriptions", params={"customer": customer}))
        assert [(s["id"], s["checkout_session"]) for s in listed["data"]] == [(sub, session)]
        product = stack.stripe.v1.prices.retrieve("price_monthly").product
        assert [(e["product"], e["status"]) for e in entitled(stack, customer)["data"]] == [
            (product, "trialing")
        ]

    def test_the_session_completing_late_still_links(self, stack: Stack) -> None:
        customer = customer_with(stack)
        session = self._session(stack, customer)["id"]
        with fault(
            stack, webhook="drop", event_type="checkout.session.completed", times=1
        ) as dropped:
            sub = self._complete(stack, session)
            # The subscription is mirrored first; its session is not linked yet.
            alone = wait_for(
                lambda: stack.api.get(f"/subscriptions/{sub}"), lambda r: r.status_code == 200
            ).json()
            assert alone["checkout_session"] is None
        assert dropped["id"]
        # The session's completion, read now (as its redelivery would bring it), links them.
        assert ok(stack.api.get(f"/checkout-sessions/{session}"))["subscription"] == sub
        assert subscription(stack, sub)["checkout_session"] == session


class TestTestClockCustomers:
    def test_the_clock_is_passed_to_stripe(self, stack: Stack) -> None:
        clock = new_clock(stack)
        created = ok(stack.api.post("/customers", json={"test_clock": clock}))
        assert created["test_clock"] == clock
        assert stack.stripe.v1.customers.retrieve(created["id"]).test_clock == clock

    def test_an_unknown_clock_is_stripes_refusal(self, stack: Stack) -> None:
        email = f"clock-{uuid.uuid4().hex[:8]}@example.com"
        response = stack.api.post(
            "/customers", json={"email": email, "test_clock": "clock_missing"}
        )
        assert response.status_code in (400, 404), response.text
        assert response.json()["error"]["param"] == "test_clock"
        assert stack.rows("SELECT id FROM customers WHERE email = :e", e=email) == []

    def test_a_live_key_refuses_a_clock_before_calling_stripe(self, stack: Stack) -> None:
        email = f"live-{uuid.uuid4().hex[:8]}@example.com"
        with extra_service(
            stack,
            STRIPE_SECRET_KEY="sk_live_service_tests_0123456789",
            STRIPE_PUBLISHABLE_KEY="pk_live_service_tests_0123456789",
        ) as live:
            response = live.post("/customers", json={"email": email, "test_clock": "clock_x"})
        assert response.status_code == 400, response.text
        error = response.json()["error"]
        assert (error["code"], error["param"]) == ("parameter_invalid", "test_clock")
        assert "live" in error["message"]
        assert stack.rows("SELECT id FROM customers WHERE email = :e", e=email) == []
        assert stack.stripe.v1.customers.list(params={"email": email}).data == []
