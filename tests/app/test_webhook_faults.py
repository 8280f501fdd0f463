"""Webhooks under faults: Stripe's real events delivered in any order, an event for an order whose
creating transaction has not committed, a handler that fails mid-event, a database that goes
away, and a rotated signing secret. Each shows the redelivery applying the event exactly once."""

from __future__ import annotations

import json
import random
import secrets
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from app.models import OrderStatus
from app.orders.state import TRANSITIONS
from tests.app.test_webhooks import (
    confirm_on_stripe,
    create_intent,
    deliver,
    event,
    history,
    inbox,
    snapshot,
)
from tests.fixtures.emulator import free_ports, make_client, start_emulator, stop_emulator
from tests.fixtures.service import (
    API_KEY,
    SERVICE_WEBHOOK_SECRET,
    STRIPE_TEST_KEY,
    Stack,
    own_database,
    sign_event,
    start_service,
    status_stripe_implies,
    stop,
    sync_url,
)


@pytest.fixture
def quiet(stack: Stack) -> Iterator[None]:
    """The emulator's own deliveries are dropped: only the events the test posts arrive."""
    stack.controls("/_emulator/faults", {"webhook": "drop"})
    try:
        yield
    finally:
        httpx.delete(f"{stack.emulator.url}/_emulator/faults", timeout=10).raise_for_status()


def events_of(stack: Stack, intent_id: str) -> list[dict[str, Any]]:
    """Stripe's real events about a payment intent (its own, its charges', its refunds'),
    oldest first."""
    found = stack.stripe.v1.events.list(params={"limit": 100}).data
    mine = []
    for evt in found:
        obj = evt.to_dict()["data"]["object"]
        if intent_id in (obj.get("id"), obj.get("payment_intent")):
            mine.append(evt.to_dict())
    return list(reversed(mine))


def stripes_status(stack: Stack, intent_id: str) -> tuple[str, int, int]:
    """The order status, amount received and amount refunded that Stripe's objects imply."""
    intent = snapshot(stack, intent_id)
    charge = None
    if intent.get("latest_charge"):
        charge = stack.stripe.v1.charges.retrieve(intent["latest_charge"]).to_dict()
    return status_stripe_implies(intent, charge)


def assert_forward_only(order: dict[str, Any]) -> None:
    for entry in order["history"][1:]:
        assert OrderStatus(entry["to"]) in TRANSITIONS[OrderStatus(entry["from"])], order


@pytest.mark.usefixtures("quiet")
class TestOutOfOrder:
    """Stripe's own events for a flow, delivered in shuffled orders (each on a flow of its own):
    the order always ends where Stripe is, and never moves backwards."""

    def refunded_flow(self, stack: Stack) -> dict[str, Any]:
        intent = create_intent(stack)
        confirm_on_stripe(stack, intent["id"], "pm_card_delayedSettlement")
        stack.controls(f"/_emulator/payment_intents/{intent['id']}/settle", {"outcome": "succeed"})
        stack.stripe.v1.refunds.create(params={"payment_intent": intent["id"], "amount": 500})
        stack.stripe.v1.refunds.create(params={"payment_intent": intent["id"]})
        return intent

    def failed_then_paid_flow(self, stack: Stack) -> dict[str, Any]:
        intent = create_intent(stack)
        with pytest.raises(Exception, match="declined"):
            confirm_on_stripe(stack, intent["id"], "pm_card_chargeDeclined")
        confirm_on_stripe(stack, intent["id"], "pm_card_visa")
        return intent

    def captured_then_refunded_flow(self, stack: Stack) -> dict[str, Any]:
        intent = create_intent(
            stack, amount=5000, capture_method="manual", confirm=True, payment_method="pm_card_visa"
        )
        stack.stripe.v1.payment_intents.capture(intent["id"], params={"amount_to_capture": 4000})
        stack.stripe.v1.refunds.create(params={"payment_intent": intent["id"], "amount": 1000})
        return intent

    @pytest.mark.parametrize("seed", range(4))
    @pytest.mark.parametrize("flow", ["refunded", "failed_then_paid", "captured_then_refunded"])
    def test_shuffled_events_end_where_stripe_is(self, stack: Stack, flow: str, seed: int) -> None:
        intent = getattr(self, f"{flow}_flow")(stack)
        events = events_of(stack, intent["id"])
        order_of_arrival = events[:]
        if seed == 0:
            order_of_arrival.reverse()
        else:
            random.Random(seed).shuffle(order_of_arrival)

        for evt in order_of_arrival:
            response = deliver(stack, evt)
            assert response.status_code == 200, response.text

        order = stack.order(intent["order_id"])
        expected = stripes_status(stack, intent["id"])
        assert (order["status"], order["amount_received"], order["amount_refunded"]) == expected
        assert_forward_only(order)
        entered = [entry["to"] for entry in order["history"]]
        assert len(entered) == len(set(entered)), order

    def test_payment_failed_after_succeeded_is_stale(self, stack: Stack) -> None:
        intent = self.failed_then_paid_flow(stack)
        events = {e["type"]: e for e in events_of(stack, intent["id"])}
        assert snapshot(stack, intent["id"])["status"] == "succeeded"

        paid = deliver(stack, events["payment_intent.succeeded"])
        assert paid.json()["outcome"] == "applied"
        late = deliver(stack, events["payment_intent.payment_failed"])
        assert late.status_code == 200, late.text
        assert late.json()["outcome"] == "stale"

        order = stack.order(intent["order_id"])
        assert order["status"] == "paid"
        assert history(order) == [(None, "pending"), ("pending", "paid")]
        rows = stack.rows(
            "SELECT status FROM payment_intents WHERE stripe_id = :id", id=intent["id"]
        )
        assert rows == [{"status": "succeeded"}]

    def test_a_full_refund_before_the_payment(self, stack: Stack) -> None:
        intent = create_intent(stack)
        confirm_on_stripe(stack, intent["id"], "pm_card_visa")
        stack.stripe.v1.refunds.create(params={"payment_intent": intent["id"]})
        events = {e["type"]: e for e in events_of(stack, intent["id"])}

        assert deliver(stack, events["charge.refunded"]).json()["outcome"] == "stale"
        assert deliver(stack, events["payment_intent.succeeded"]).json()["outcome"] == "applied"

        order = stack.order(intent["order_id"])
        assert (order["status"], order["amount_refunded"]) == ("refunded", 2000)
        assert history(order) == [(None, "pending"), ("pending", "paid"), ("paid", "refunded")]


class TestSecretRotation:
    def test_two_v1_signatures_of_which_one_is_valid(self, stack: Stack) -> None:
        # While a secret is rolled, Stripe signs with the old and the new one.
        evt = event("customer.created", {"id": f"cus_rot_{secrets.token_hex(4)}"})
        payload = json.dumps(evt)
        valid = sign_event(payload)
        other = sign_event(payload, secret="whsec_the_other_secret").split(",")[1]
        for header in (f"{valid},{other}", f"{valid.split(',')[0]},{other},{valid.split(',')[1]}"):
            response = stack.public.post(
                "/webhooks/stripe",
                content=payload,
                headers={"Content-Type": "application/json", "Stripe-Signature": header},
            )
            assert response.status_code == 200, response.text
        assert len(inbox(stack, evt["id"])) == 1

    def test_two_v1_signatures_of_which_none_is_valid(self, stack: Stack) -> None:
        evt = event("customer.created", {"id": f"cus_rot_{secrets.token_hex(4)}"})
        payload = json.dumps(evt)
        one = sign_event(payload, secret="whsec_old")
        two = sign_event(payload, secret="whsec_new").split(",")[1]
        response = stack.public.post(
            "/webhooks/stripe",
            content=payload,
            headers={"Content-Type": "application/json", "Stripe-Signature": f"{one},{two}"},
        )
        assert response.status_code == 400, response.text
        assert response.json()["error"]["code"] == "webhook_signature_invalid"
        assert inbox(stack, evt["id"]) == []


def deliveries(stack_emulator_url: str, event_type: str, object_id: str) -> list[dict[str, Any]]:
    """The emulator's delivery attempts of one event type about one object."""
    log = httpx.get(f"{stack_emulator_url}/_emulator/webhooks/deliveries", timeout=10).json()
    sdk_events: dict[str, str] = {}
    found = []
    for attempt in log["data"]:
        if attempt["type"] != event_type:
            continue
        if attempt["event"] not in sdk_events:
            with httpx.Client(timeout=10) as client:
                evt = client.get(
                    f"{stack_emulator_url}/v1/events/{attempt['event']}",
                    headers={"Authorization": f"Bearer {STRIPE_TEST_KEY}"},
                ).json()
            sdk_events[attempt["event"]] = evt["data"]["object"]["id"]
        if sdk_events[attempt["event"]] == object_id:
            found.append(attempt)
    return found


def wait_for_delivery(
    emulator_url: str, event_type: str, object_id: str, status: int | None, timeout: float = 15
) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = deliveries(emulator_url, event_type, object_id)
        if any(a["status"] == status for a in found):
            return found
        time.sleep(0.1)
    raise AssertionError(f"no {event_type} delivery answered {status}: {found}")


class TestOrderNotCommittedYet:
    """The service's create request holds its transaction open after Stripe has made the intent
    (the test's SHARE lock blocks its insert of the intent's mirror): the events Stripe sends
    meanwhile are refused with a 503 after a bounded wait, and their redelivery applies them."""

    def test_refused_while_the_creation_is_open_then_the_redelivery_applies(
        self, stack: Stack
    ) -> None:
        if stack.backend != "postgres":
            pytest.skip("holds the service's transaction open with a Postgres table lock")
        description = f"held {secrets.token_hex(6)}"
        created: dict[str, httpx.Response] = {}
        # The test's SHARE lock lets the service write the order but blocks its insert of the
        # intent's mirror: the creating transaction stays open after Stripe has the intent.
        with stack.engine.connect() as lock:
            lock.execute(text("LOCK TABLE payment_intents IN SHARE MODE"))

            def create() -> None:
                created["response"] = stack.api.post(
                    "/payment-intents",
                    json={
                        "amount": 2000,
                        "currency": "usd",
                        "description": description,
                        "automatic_payment_methods": {"enabled": True, "allow_redirects": "never"},
                    },
                )

            creator = threading.Thread(target=create)
            creator.start()
            intent_id = self.wait_for_intent_on_stripe(stack, description)
            # The customer pays at once (Stripe.js): Stripe tells the service before its order
            # is committed.
            confirm_on_stripe(stack, intent_id, "pm_card_visa")
            refused = wait_for_delivery(
                stack.emulator.url, "payment_intent.succeeded", intent_id, 503
            )
            assert all(a["status"] == 503 for a in refused), refused
            # Nothing of the event is written; the order (if its row is visible at all) is not
            # linked to the intent until the creating request commits.
            assert (
                stack.rows("SELECT id FROM webhook_events WHERE object_id = :id", id=intent_id)
                == []
            )
            assert (
                stack.rows(
                    "SELECT id FROM orders WHERE description = :d AND payment_intent IS NOT NULL",
                    d=description,
                )
                == []
            )
            lock.rollback()
        creator.join(timeout=30)
        response = created["response"]
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "requires_payment_method"

        order = stack.wait_for_order(response.json()["order_id"], "paid", timeout=20)
        attempts = deliveries(stack.emulator.url, "payment_intent.succeeded", intent_id)
        assert [a["status"] for a in attempts][-1] == 200
        assert attempts[0]["status"] == 503
        source = order["history"][-1]["source"]
        assert inbox(stack, source)[0]["outcome"] == "applied"
        assert history(order) == [(None, "pending"), ("pending", "paid")]

    def wait_for_intent_on_stripe(self, stack: Stack, description: str) -> str:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            for pi in stack.stripe.v1.payment_intents.list(params={"limit": 5}).data:
                if pi.description == description:
                    return str(pi.id)
            time.sleep(0.05)
        raise AssertionError("the service did not create the intent on Stripe")


class TestHandlerFailsMidEvent:
    def test_nothing_half_written_then_the_redelivery_applies_once(self, stack: Stack) -> None:
        intent = create_intent(stack)
        order_id = intent["order_id"]
        # A trigger makes the handler's last write (the order's history entry) fail, after the
        # inbox row, the intent's mirror and the order have been written in its transaction.
        name = "fail_" + "".join(c if c.isalnum() else "_" for c in order_id).lower()
        with stack.engine.begin() as connection:
            if stack.backend == "postgres":
                connection.execute(
                    text(
                        f"CREATE FUNCTION {name}() RETURNS trigger AS $$ BEGIN "
                        f"IF NEW.order_id = '{order_id}' THEN RAISE EXCEPTION 'injected failure'; "
                        "END IF; RETURN NEW; END $$ LANGUAGE plpgsql"
                    )
                )
                connection.execute(
                    text(
                        f"CREATE TRIGGER {name} BEFORE INSERT ON order_history "
                        f"FOR EACH ROW EXECUTE FUNCTION {name}()"
                    )
                )
            else:
                connection.execute(
                    text(
                        f"CREATE TRIGGER {name} BEFORE INSERT ON order_history "
                        f"WHEN NEW.order_id = '{order_id}' "
                        "BEGIN SELECT RAISE(ABORT, 'injected failure'); END"
                    )
                )
        try:
            confirm_on_stripe(stack, intent["id"], "pm_card_visa")
            wait_for_delivery(stack.emulator.url, "payment_intent.succeeded", intent["id"], 503)
            order = stack.order(order_id)
            assert order["status"] == "pending"
            assert history(order) == [(None, "pending")]
            assert order["amount_received"] == 0
            rows = stack.rows(
                "SELECT status FROM payment_intents WHERE stripe_id = :id", id=intent["id"]
            )
            assert rows == [{"status": "requires_payment_method"}]
            applied = stack.rows(
                "SELECT stripe_event_id FROM webhook_events WHERE object_id = :id "
                "AND type = 'payment_intent.succeeded'",
                id=intent["id"],
            )
            assert applied == []
        finally:
            with stack.engine.begin() as connection:
                if stack.backend == "postgres":
                    connection.execute(text(f"DROP TRIGGER {name} ON order_history"))
                    connection.execute(text(f"DROP FUNCTION {name}()"))
                else:
                    connection.execute(text(f"DROP TRIGGER {name}"))

        order = stack.wait_for_order(order_id, "paid", timeout=20)
        attempts = deliveries(stack.emulator.url, "payment_intent.succeeded", intent["id"])
        assert attempts[0]["status"] == 503
        assert attempts[-1]["status"] == 200
        assert history(order) == [(None, "pending"), ("pending", "paid")]
        events = stack.rows(
            "SELECT stripe_event_id, outcome FROM webhook_events WHERE object_id = :id "
            "AND type = 'payment_intent.succeeded'",
            id=intent["id"],
        )
        assert events == [{"stripe_event_id": order["history"][-1]["source"], "outcome": "applied"}]


class TestDatabaseDown:
    """One database of the Postgres server taken down for real (connections refused and the open
    ones terminated), with its own service and emulator, then brought back."""

    @pytest.fixture
    def own_database(self, stack: Stack) -> Iterator[str]:
        if stack.backend != "postgres":
            pytest.skip("takes one Postgres database down")
        base = make_url(stack.database_url)
        self.admin = create_engine(
            sync_url(base.set(database="postgres").render_as_string(hide_password=False)),
            isolation_level="AUTOCOMMIT",
        )
        try:
            with own_database(stack, "down") as url:
                self.name = str(make_url(url).database)
                yield url
        finally:
            self.admin.dispose()

    def set_down(self, down: bool) -> None:
        with self.admin.connect() as connection:
            connection.execute(
                text(f'ALTER DATABASE "{self.name}" ALLOW_CONNECTIONS {str(not down).lower()}')
            )
            if down:
                connection.execute(
                    text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE datname = :name"
                    ),
                    {"name": self.name},
                )

    def test_5xx_while_down_then_the_redelivery_applies_once(self, own_database: str) -> None:
        port, emulator_port = free_ports(2)
        emulator = start_emulator(
            "--webhook-url",
            f"http://127.0.0.1:{port}/webhooks/stripe",
            "--webhook-secret",
            SERVICE_WEBHOOK_SECRET,
            "--webhook-retry-base-ms",
            "500",
            port=emulator_port,
        )
        service = start_service(own_database, emulator.url, port)
        api = httpx.Client(
            base_url=f"http://127.0.0.1:{port}",
            headers={"Authorization": f"Bearer {API_KEY}"},
            timeout=30,
        )
        sdk = make_client(emulator.url, api_key=STRIPE_TEST_KEY)
        try:
            created = api.post(
                "/payment-intents",
                json={
                    "amount": 2000,
                    "currency": "usd",
                    "automatic_payment_methods": {"enabled": True, "allow_redirects": "never"},
                },
            )
            assert created.status_code == 200, created.text
            intent = created.json()

            self.set_down(True)
            sdk.v1.payment_intents.confirm(intent["id"], params={"payment_method": "pm_card_visa"})
            refused = wait_for_delivery(emulator.url, "payment_intent.succeeded", intent["id"], 503)
            assert refused[0]["status"] == 503, refused
            # Every kind of request answers in the envelope, with no traceback. (A fresh
            # connection each: after an unhandled error the server closes the one it used.)
            base = f"http://127.0.0.1:{port}"
            auth = {"Authorization": f"Bearer {API_KEY}"}
            payload = json.dumps(event("customer.created", {"id": "cus_down"}))
            for response in (
                httpx.get(f"{base}/orders/{intent['order_id']}", headers=auth),
                httpx.post(
                    f"{base}/payment-intents",
                    json={"amount": 2000, "currency": "usd"},
                    headers={**auth, "Idempotency-Key": f"down-{secrets.token_hex(4)}"},
                ),
                httpx.post(
                    f"{base}/webhooks/stripe",
                    content=payload,
                    headers={"Stripe-Signature": sign_event(payload)},
                ),
            ):
                assert response.status_code >= 500, response.text
                error = response.json()["error"]
                assert error["type"] == "api_error", error
                assert "Traceback" not in response.text
                assert "asyncpg" not in response.text
            time.sleep(1.5)  # a redelivery or two while down
            self.set_down(False)

            deadline = time.monotonic() + 30
            order = httpx.get(f"{base}/orders/{intent['order_id']}", headers=auth).json()
            while order.get("status") != "paid" and time.monotonic() < deadline:
                time.sleep(0.2)
                order = httpx.get(f"{base}/orders/{intent['order_id']}", headers=auth).json()
            assert order["status"] == "paid", order
            assert history(order) == [(None, "pending"), ("pending", "paid")]
            attempts = deliveries(emulator.url, "payment_intent.succeeded", intent["id"])
            assert [a["status"] for a in attempts].count(200) == 1, attempts
            assert len(attempts) >= 2
            engine = create_engine(sync_url(own_database))
            with engine.connect() as connection:
                rows = connection.execute(
                    text(
                        "SELECT outcome FROM webhook_events WHERE object_id = :id "
                        "AND type = 'payment_intent.succeeded'"
                    ),
                    {"id": intent["id"]},
                ).all()
            engine.dispose()
            assert [r.outcome for r in rows] == ["applied"]
        finally:
            self.set_down(False)
            api.close()
            sdk._requestor._client.close()  # type: ignore[union-attr]
            stop(service)
            stop_emulator(emulator)
