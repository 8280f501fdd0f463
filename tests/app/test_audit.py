"""`python -m app audit` as a real process, on an emulator, a database and a service of its own
(the emulator sends no webhooks, so orders stay where the API left them): a clean book exits 0;
each kind of difference is then made for real (or, where only a bug could make it, written into
the database) and named, and the run exits 1."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import stripe
from sqlalchemy import create_engine, text

from tests.app.test_webhooks import event, sign
from tests.fixtures.emulator import free_port, sdk_client, start_emulator, stop_emulator
from tests.fixtures.service import (
    API_KEY,
    STRIPE_TEST_KEY,
    Stack,
    own_database,
    run_app,
    start_service,
    stop,
    sync_url,
)

NO_REDIRECTS = {"enabled": True, "allow_redirects": "never"}


@dataclass
class Book:
    """A service with its own emulator and database."""

    api: httpx.Client
    sdk: stripe.StripeClient
    database_url: str
    stripe_base: str

    def execute(self, sql: str, **params: Any) -> None:
        engine = create_engine(sync_url(self.database_url))
        with engine.begin() as connection:
            connection.execute(text(sql), params)
        engine.dispose()

    def audit(self, *flags: str) -> subprocess.CompletedProcess[str]:
        return run_app(
            "audit",
            "--min-age",
            "0",
            *flags,
            database_url=self.database_url,
            stripe_base=self.stripe_base,
        )

    def pay(self, amount: int = 2000) -> dict[str, Any]:
        response = self.api.post(
            "/payment-intents",
            json={
                "amount": amount,
                "currency": "usd",
                "confirm": True,
                "payment_method": "pm_card_visa",
                "automatic_payment_methods": NO_REDIRECTS,
            },
        )
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "succeeded"
        return dict(response.json())

    def create(self) -> dict[str, Any]:
        response = self.api.post(
            "/payment-intents",
            json={"amount": 1500, "currency": "usd", "automatic_payment_methods": NO_REDIRECTS},
        )
        assert response.status_code == 200, response.text
        return dict(response.json())


@pytest.fixture
def book(stack: Stack) -> Iterator[Book]:
    emulator = start_emulator()
    port = free_port()
    try:
        with (
            own_database(stack, "audit") as database_url,
            sdk_client(emulator.url, api_key=STRIPE_TEST_KEY) as sdk,
        ):
            service = start_service(database_url, emulator.url, port)
            api = httpx.Client(
                base_url=f"http://127.0.0.1:{port}",
                headers={"Authorization": f"Bearer {API_KEY}"},
                timeout=30,
            )
            try:
                yield Book(api, sdk, database_url, emulator.url)
            finally:
                api.close()
                stop(service)
    finally:
        stop_emulator(emulator)


def findings(ran: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    report: dict[str, Any] = json.loads(ran.stdout)
    return report


class TestAudit:
    def test_a_clean_book_passes_and_every_kind_of_difference_is_named(self, book: Book) -> None:
        clean = book.pay()
        book.create()  # not paid yet, at Stripe or here: nothing to say

        passed = book.audit("--json")

        assert passed.returncode == 0, passed.stdout + passed.stderr
        report = findings(passed)
        assert report["findings"] == []
        assert (report["orders_checked"], report["intents_checked"], report["money"]) == (2, 2, 0)

        # A double charge: a second intent for a paid order, made and paid at Stripe.
        second = book.sdk.v1.payment_intents.create(
            params={
                "amount": 2000,
                "currency": "usd",
                "confirm": True,
                "payment_method": "pm_card_visa",
                "automatic_payment_methods": NO_REDIRECTS,
                "metadata": {"service_order_id": clean["order_id"]},
            }
        )
        # Paid at Stripe while the service heard nothing (no webhooks here).
        behind = book.create()
        book.sdk.v1.payment_intents.confirm(behind["id"], params={"payment_method": "pm_card_visa"})
        # Written by a bug: paid here, not at Stripe; and an amount that differs.
        ahead = book.create()
        book.execute("UPDATE orders SET status = 'paid' WHERE id = :id", id=ahead["order_id"])
        off = book.pay(amount=3000)
        book.execute("UPDATE orders SET amount_received = 2999 WHERE id = :id", id=off["order_id"])
        # A payment for an order that is not here, delivered long after it happened.
        lost = event(
            "payment_intent.succeeded",
            {
                "id": "pi_lost",
                "object": "payment_intent",
                "status": "succeeded",
                "metadata": {"service_order_id": "ord_lost"},
            },
        )
        lost["created"] = int(time.time()) - 3600
        payload = json.dumps(lost)
        delivered = book.api.post(
            "/webhooks/stripe",
            content=payload,
            headers={"Stripe-Signature": sign(payload), "Content-Type": "application/json"},
        )
        assert delivered.json()["outcome"] == "unmatched", delivered.text

        failed = book.audit("--json")
        text_run = book.audit()

        assert failed.returncode == 1, failed.stdout + failed.stderr
        report = findings(failed)
        named = {
            (f["kind"], f["order"], f["payment_intent"], f["event"], f["money"])
            for f in report["findings"]
        }
        assert named == {
            ("orphan_intent", clean["order_id"], second.id, None, True),
            ("multiple_succeeded", clean["order_id"], None, None, True),
            ("paid_there_not_here", behind["order_id"], behind["id"], None, True),
            ("paid_here_not_there", ahead["order_id"], ahead["id"], None, True),
            ("amount_mismatch", off["order_id"], off["id"], None, True),
            ("unmatched_event", "ord_lost", None, lost["id"], True),
        }
        assert report["money"] == 6
        assert report["counts"]["orphan_intent"] == 1
        assert text_run.returncode == 1
        assert text_run.stdout.splitlines()[-1].endswith("6 findings, 6 affecting money")
        assert f"MONEY multiple_succeeded: {clean['order_id']}: 2 succeeded intents" in (
            text_run.stdout
        )

    def test_an_unreachable_stripe_is_exit_2_not_a_clean_bill(self, book: Book) -> None:
        book.stripe_base = f"http://127.0.0.1:{free_port()}"

        ran = book.audit()

        assert ran.returncode == 2, ran.stdout + ran.stderr
        assert "audit: could not run: Stripe could not be reached." in ran.stderr
