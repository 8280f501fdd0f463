"""`python -m app reconcile` reads Stripe's events from its stored cursor: an order that changed at
Stripe while its webhook was lost is settled from the events, an unchanged one costs no call, and
a cursor past the 30 days Stripe keeps events ("List events, going back up to 30 days", Stripe's
API reference for `GET /v1/events`) falls back to the full pass.

Each test runs on an emulator, a service and a database of its own, so the emulator's request
counter (`GET /_emulator/requests`) counts this test's Stripe calls and nothing else."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import stripe
from sqlalchemy import Engine, create_engine, text

from app.reconcile_cursor import LOCK_KEYS
from tests.fixtures.emulator import free_ports, sdk_client, start_emulator, stop_emulator
from tests.fixtures.service import (
    API_KEY,
    SERVICE_WEBHOOK_SECRET,
    STRIPE_TEST_KEY,
    Stack,
    own_database,
    run_app,
    start_service,
    stop,
    sync_url,
)

EVENTS_LIST = "GET /v1/events"
RETRIEVE = "GET /v1/payment_intents/{intent}"
SEARCH = "GET /v1/payment_intents/search"
DAY = 86400


@dataclass
class Solo:
    """A service on its own database and emulator (whose webhooks go to it)."""

    emulator_url: str
    database_url: str
    api: httpx.Client
    stripe: stripe.StripeClient
    engine: Engine

    def controls(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        response = httpx.post(f"{self.emulator_url}{path}", json=body, timeout=10)
        assert response.status_code == 200, response.text
        return dict(response.json())

    def requests(self) -> dict[str, int]:
        response = httpx.get(f"{self.emulator_url}/_emulator/requests", timeout=10)
        assert response.status_code == 200, response.text
        return dict(response.json()["by_route"])

    def reconcile(
        self, *flags: str, **env: str
    ) -> tuple[subprocess.CompletedProcess[str], dict[str, int]]:
        """One run, and the Stripe calls it made by route."""
        before = self.requests()
        ran = run_app(
            "reconcile",
            *flags,
            database_url=self.database_url,
            stripe_base=self.emulator_url,
            **env,
        )
        after = self.requests()
        calls = {route: n - before.get(route, 0) for route, n in after.items()}
        return ran, {route: n for route, n in calls.items() if n}

    def cursor(self) -> dict[str, Any] | None:
        with self.engine.connect() as connection:
            row = connection.execute(
                text("SELECT stripe_id, created FROM reconcile_cursors WHERE name = 'events'")
            ).first()
        return None if row is None else dict(row._mapping)

    def order(self, order_id: str) -> dict[str, Any]:
        response = self.api.get(f"/orders/{order_id}")
        assert response.status_code == 200, response.text
        return dict(response.json())

    def newest_event(self) -> stripe.Event:
        return self.stripe.v1.events.list(params={"limit": 1}).data[0]

    def order_with_intent(self) -> dict[str, Any]:
        response = self.api.post(
            "/payment-intents",
            json={
                "amount": 2000,
                "currency": "usd",
                "description": f"cursor-{uuid.uuid4().hex[:12]}",
                "automatic_payment_methods": {"enabled": True, "allow_redirects": "never"},
            },
        )
        assert response.status_code == 200, response.text
        return dict(response.json())

    def pay_at_stripe_unseen(self, intent_id: str) -> None:
        """Stripe takes the payment; its webhooks never reach the service."""
        fault = self.controls("/_emulator/faults", {"webhook": "drop"})
        try:
            paid = self.stripe.v1.payment_intents.confirm(
                intent_id, params={"payment_method": "pm_card_visa"}
            )
        finally:
            httpx.delete(f"{self.emulator_url}/_emulator/faults/{fault['id']}", timeout=10)
        assert paid.status == "succeeded"


@pytest.fixture
def solo(stack: Stack) -> Iterator[Solo]:
    port, emulator_port = free_ports(2)
    emulator = start_emulator(
        "--webhook-url",
        f"http://127.0.0.1:{port}/webhooks/stripe",
        "--webhook-secret",
        SERVICE_WEBHOOK_SECRET,
        port=emulator_port,
    )
    try:
        with (
            own_database(stack, "cursor") as database_url,
            sdk_client(emulator.url, api_key=STRIPE_TEST_KEY) as sdk,
        ):
            service = start_service(database_url, emulator.url, port)
            engine = create_engine(sync_url(database_url))
            api = httpx.Client(
                base_url=f"http://127.0.0.1:{port}",
                headers={"Authorization": f"Bearer {API_KEY}"},
                timeout=30,
            )
            try:
                yield Solo(emulator.url, database_url, api, sdk, engine)
            finally:
                api.close()
                engine.dispose()
                stop(service)
    finally:
        stop_emulator(emulator)


class TestEventsCursor:
    def test_a_dropped_webhook_is_settled_from_one_events_page_and_no_retrieve(
        self, solo: Solo
    ) -> None:
        unchanged = [solo.order_with_intent() for _ in range(3)]
        changed = solo.order_with_intent()
        first, calls = solo.reconcile("--min-age", "0")
        assert first.returncode == 0, first.stdout + first.stderr
        assert "events: full pass (no cursor yet: the first run)" in first.stdout
        assert calls[RETRIEVE] == 4  # the full pass asks Stripe about every unsettled order
        assert solo.cursor() == {
            "stripe_id": solo.newest_event().id,
            "created": solo.newest_event().created,
        }

        solo.pay_at_stripe_unseen(changed["id"])
        assert solo.order(changed["order_id"])["status"] == "pending"

        second, calls = solo.reconcile("--min-age", "0")

        assert second.returncode == 0, second.stdout + second.stderr
        assert "events: since the cursor evt_" in second.stdout
        assert f"{changed['order_id']}: pending -> paid (event evt_" in second.stdout
        # One page of events; nothing about any one order (no retrieve, no search).
        assert calls[EVENTS_LIST] == 1, calls
        assert RETRIEVE not in calls, calls
        assert SEARCH not in calls, calls
        assert set(calls) <= {EVENTS_LIST, "GET /v1/payment_intents", "GET /v1/subscriptions"}
        paid = solo.order(changed["order_id"])
        assert (paid["status"], paid["amount_received"]) == ("paid", 2000)
        assert paid["history"][-1]["source"].startswith("evt_")
        for order in unchanged:
            assert solo.order(order["order_id"])["status"] == "pending"
        newest = solo.newest_event()
        assert solo.cursor() == {"stripe_id": newest.id, "created": newest.created}

        third, calls = solo.reconcile("--min-age", "0")

        assert third.returncode == 0, third.stdout + third.stderr
        assert third.stdout.splitlines()[-1].startswith("reconcile: 0 changes; 0 orders checked")
        assert calls[EVENTS_LIST] == 1, calls
        assert RETRIEVE not in calls, calls
        assert SEARCH not in calls, calls
        assert solo.cursor() == {"stripe_id": newest.id, "created": newest.created}

    def test_a_cursor_past_stripes_30_days_of_events_falls_back_to_the_full_pass(
        self, solo: Solo
    ) -> None:
        order = solo.order_with_intent()
        first, _ = solo.reconcile("--min-age", "0")
        assert first.returncode == 0, first.stdout + first.stderr
        stored = solo.cursor()
        assert stored is not None

        solo.controls("/_emulator/clock", {"advance_seconds": 31 * DAY})
        solo.pay_at_stripe_unseen(order["id"])

        ran, calls = solo.reconcile("--min-age", "0")

        assert ran.returncode == 0, ran.stdout + ran.stderr
        why = f"the cursor {stored['stripe_id']} is past the 30 days Stripe keeps events"
        assert f"events: full pass ({why})" in ran.stdout
        assert calls[RETRIEVE] == 1, calls  # the order's intent, as the full pass does
        assert f"{order['order_id']}: pending -> paid ({order['id']} is succeeded" in ran.stdout
        assert solo.order(order["order_id"])["status"] == "paid"
        newest = solo.newest_event()
        assert newest.created >= stored["created"] + 31 * DAY
        assert solo.cursor() == {"stripe_id": newest.id, "created": newest.created}

    def test_an_event_that_cannot_be_applied_holds_the_cursor_until_it_is(self, solo: Solo) -> None:
        order = solo.order_with_intent()
        first, _ = solo.reconcile("--min-age", "0")
        assert first.returncode == 0, first.stdout + first.stderr
        stored = solo.cursor()
        # An intent naming an order this database does not hold (yet): its event cannot be
        # applied while it may be racing the order's commit (WEBHOOK_UNMATCHED_AFTER_SECONDS).
        fault = solo.controls("/_emulator/faults", {"webhook": "drop"})
        early = solo.stripe.v1.payment_intents.create(
            params={
                "amount": 900,
                "currency": "usd",
                "metadata": {"service_order_id": f"ord_notyet{uuid.uuid4().hex[:8]}"},
            }
        )
        httpx.delete(f"{solo.emulator_url}/_emulator/faults/{fault['id']}", timeout=10)
        solo.pay_at_stripe_unseen(order["id"])

        # --min-age 60 keeps the young intent out of the orphan check.
        held, calls = solo.reconcile("--min-age", "60")

        assert held.returncode == 0, held.stdout + held.stderr
        assert "1 skipped (no such order yet)" in held.stdout.splitlines()[-1]
        # The events after it were applied, but the cursor stays before it.
        assert solo.order(order["order_id"])["status"] == "paid"
        assert solo.cursor() == stored
        assert calls[EVENTS_LIST] == 1, calls
        assert RETRIEVE not in calls, calls

        again, _ = solo.reconcile("--min-age", "60")
        assert again.returncode == 0, again.stdout + again.stderr
        assert solo.cursor() == stored  # read again from the same place; nothing re-applied
        assert " 0 new to the inbox applied, 1 skipped" in again.stdout.splitlines()[-1]

        # Once it is too old to be racing anything it is stored as `unmatched`: the cursor moves.
        settled, _ = solo.reconcile("--min-age", "60", WEBHOOK_UNMATCHED_AFTER_SECONDS="0")

        assert settled.returncode == 0, settled.stdout + settled.stderr
        with solo.engine.connect() as connection:
            outcome = connection.execute(
                text("SELECT outcome FROM webhook_events WHERE object_id = :id"), {"id": early.id}
            ).scalar_one()
        assert outcome == "unmatched"
        newest = solo.newest_event()
        assert solo.cursor() == {"stripe_id": newest.id, "created": newest.created}

    def test_a_second_reconcile_waits_for_none_it_exits_2_having_done_nothing(
        self, solo: Solo, stack: Stack
    ) -> None:
        if stack.backend != "postgres":
            pytest.skip("the lock is Postgres's advisory lock; SQLite runs have no such lock")
        solo.order_with_intent()
        with solo.engine.connect() as holder:
            holder.execute(
                text("SELECT pg_advisory_lock(CAST(:a AS integer), CAST(:b AS integer))"),
                {"a": LOCK_KEYS[0], "b": LOCK_KEYS[1]},
            )
            ran, calls = solo.reconcile("--min-age", "0")
            holder.execute(
                text("SELECT pg_advisory_unlock(CAST(:a AS integer), CAST(:b AS integer))"),
                {"a": LOCK_KEYS[0], "b": LOCK_KEYS[1]},
            )

        assert ran.returncode == 2, ran.stdout + ran.stderr
        assert ran.stdout.strip() == (
            "reconcile: another reconcile is running (it holds the lock); nothing done"
        )
        assert calls == {}
        assert solo.cursor() is None

        after, _ = solo.reconcile("--min-age", "0")
        assert after.returncode == 0, after.stdout + after.stderr
        assert solo.cursor() is not None
