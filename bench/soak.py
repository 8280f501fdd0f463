"""Soak: complete payment flows against two service processes on one Postgres database while the
emulator fails 10% of Stripe calls with a 500 and 5% with a 429, duplicates, reorders and delays
webhook deliveries, and one service process is killed with SIGKILL midway and restarted. Then
`python -m app reconcile --min-age 0` runs once, and the service is compared with Stripe.

Flows (each call with its own Idempotency-Key, retried with it on a 5xx, a 409 in-flight answer
or a dropped connection, on either process): pay; pay and refund part; pay and refund all; manual
capture of part and a small refund; create and cancel; a declined card then another card.

It prints the flows attempted and the four figures that must be 0: orders whose status differs
from Stripe's, payment intents per order above one, refunds exceeding payments, events applied
twice. Run with `make soak` (`python -m bench.soak --flows N --concurrency C`); it needs a
Postgres server (`--database-url`, default a `payments_soak` database on 127.0.0.1, recreated).
"""

from __future__ import annotations

import argparse
import collections
import os
import random
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import httpx
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from tests.fixtures.emulator import free_port, make_client, start_emulator, stop_emulator
from tests.fixtures.service import (
    API_KEY,
    SERVICE_WEBHOOK_SECRET,
    STRIPE_TEST_KEY,
    migrate,
    start_service,
    status_stripe_implies,
    stop,
    sync_url,
)

DEFAULT_DATABASE = "postgresql+asyncpg://postgres@127.0.0.1:5432/payments_soak"
SERVICE_ENV = {"STRIPE_TIMEOUT_SECONDS": "10"}
FAULTS: list[dict[str, Any]] = [
    {"status": 500, "probability": 0.10},
    {"status": 429, "retry_after": 1, "probability": 0.05},
    {"webhook": "duplicate", "copies": 3, "probability": 0.10},
    {"webhook": "reorder", "batch": 3, "probability": 0.05},
    {"webhook": "delay", "delay_ms": 1500, "probability": 0.05},
]
KINDS = [
    ("pay", 40),
    ("refund_part", 15),
    ("refund_all", 10),
    ("capture", 15),
    ("cancel", 10),
    ("decline_then_pay", 10),
]
CALL_DEADLINE_S = 150.0  # longer than the idempotency lease of a killed process's claims


@dataclass
class Services:
    urls: list[str]
    alive: list[bool]

    def pick(self, rng: random.Random) -> str:
        up = [u for u, a in zip(self.urls, self.alive, strict=True) if a] or self.urls
        return rng.choice(up)


@dataclass
class Tally:
    lock: threading.Lock = field(default_factory=threading.Lock)
    done: int = 0
    retries: collections.Counter[str] = field(default_factory=collections.Counter)
    answers: collections.Counter[str] = field(default_factory=collections.Counter)
    gave_up: int = 0

    def count(self, counter: collections.Counter[str], key: str) -> None:
        with self.lock:
            counter[key] += 1


class Client:
    def __init__(self, services: Services, tally: Tally, run: str) -> None:
        self.services = services
        self.tally = tally
        self.run = run
        self.local = threading.local()

    def http(self) -> httpx.Client:
        if not hasattr(self.local, "client"):
            self.local.client = httpx.Client(
                headers={"Authorization": f"Bearer {API_KEY}"}, timeout=60
            )
        client: httpx.Client = self.local.client
        return client

    def post(self, rng: random.Random, path: str, body: dict[str, Any], key: str) -> httpx.Response:
        """POST with one Idempotency-Key until an answer that is not a retry-later one."""
        deadline = time.monotonic() + CALL_DEADLINE_S
        while True:
            url = self.services.pick(rng)
            try:
                response = self.http().post(
                    f"{url}{path}", json=body, headers={"Idempotency-Key": f"{self.run}-{key}"}
                )
            except httpx.HTTPError as exc:
                self.tally.count(self.tally.retries, type(exc).__name__)
                self.local.__dict__.pop("client", None)
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.3)
                continue
            retry = response.status_code >= 500 or response.status_code in (409, 429)
            if response.status_code == 409:
                retry = response.json()["error"]["code"] == "idempotency_key_in_use"
            if not retry or time.monotonic() > deadline:
                self.tally.count(self.tally.answers, f"{path.split('/')[1]} {response.status_code}")
                return response
            self.tally.count(self.tally.retries, str(response.status_code))
            time.sleep(min(float(response.headers.get("Retry-After", "0.5")), 2.0))


def flow(client: Client, index: int, seed: int) -> None:
    rng = random.Random(seed * 100_003 + index)
    kind = rng.choices([k for k, _ in KINDS], weights=[w for _, w in KINDS])[0]
    amount = rng.randrange(500, 20_000)
    base: dict[str, Any] = {
        "amount": amount,
        "currency": "usd",
        "description": f"soak {index} {kind}",
        "automatic_payment_methods": {"enabled": True, "allow_redirects": "never"},
    }
    if kind in ("pay", "refund_part", "refund_all"):
        base.update(confirm=True, payment_method="pm_card_visa")
    elif kind == "capture":
        base.update(confirm=True, payment_method="pm_card_visa", capture_method="manual")
    created = client.post(rng, "/payment-intents", base, f"{index}:create")
    if created.status_code != 200:
        return
    intent = created.json()["id"]
    if kind == "refund_part":
        client.post(
            rng, "/refunds", {"payment_intent": intent, "amount": amount // 3}, f"{index}:r"
        )
    elif kind == "refund_all":
        client.post(rng, "/refunds", {"payment_intent": intent}, f"{index}:r")
    elif kind == "capture":
        captured = client.post(
            rng,
            f"/payment-intents/{intent}/capture",
            {"amount_to_capture": amount - amount // 4},
            f"{index}:capture",
        )
        if captured.status_code == 200 and rng.random() < 0.5:
            body = {"payment_intent": intent, "amount": amount // 5}
            client.post(rng, "/refunds", body, f"{index}:r")
    elif kind == "cancel":
        client.post(rng, f"/payment-intents/{intent}/cancel", {}, f"{index}:cancel")
    elif kind == "decline_then_pay":
        path = f"/payment-intents/{intent}/confirm"
        client.post(rng, path, {"payment_method": "pm_card_chargeDeclined"}, f"{index}:c1")
        client.post(rng, path, {"payment_method": "pm_card_visa"}, f"{index}:c2")


def recreate(database_url: str) -> None:
    url = make_url(database_url)
    admin = create_engine(
        sync_url(url.set(database="postgres").render_as_string(hide_password=False)),
        isolation_level="AUTOCOMMIT",
    )
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{url.database}" WITH (FORCE)'))
        connection.execute(text(f'CREATE DATABASE "{url.database}"'))
    admin.dispose()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--flows", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--database-url", default=os.environ.get("SOAK_DATABASE_URL", DEFAULT_DATABASE)
    )
    args = parser.parse_args()
    started = time.monotonic()
    recreate(args.database_url)
    migrate(args.database_url)
    ports = [free_port(), free_port()]
    hooks = [a for p in ports for a in ("--webhook-url", f"http://127.0.0.1:{p}/webhooks/stripe")]
    emulator = start_emulator(
        *hooks,
        "--webhook-secret",
        SERVICE_WEBHOOK_SECRET,
        "--webhook-retry-base-ms",
        "300",
        "--webhook-max-attempts",
        "10",
    )
    processes = [start_service(args.database_url, emulator.url, p, **SERVICE_ENV) for p in ports]
    services = Services([f"http://127.0.0.1:{p}" for p in ports], [True, True])
    tally = Tally()
    client = Client(services, tally, f"soak{int(time.time())}")
    try:
        for spec in FAULTS:
            httpx.post(f"{emulator.url}/_emulator/faults", json=spec).raise_for_status()
        killed = threading.Event()

        def one(index: int) -> None:
            try:
                flow(client, index, args.seed)
            except httpx.HTTPError:
                tally.count(tally.answers, "gave up")
            with tally.lock:
                tally.done += 1
                due = tally.done >= args.flows // 2 and not killed.is_set()
                if due:
                    killed.set()
            if due:
                services.alive[1] = False
                processes[1].kill()  # SIGKILL: no shutdown, requests cut mid-flight
                processes[1].wait()
                print(f"killed service 2 (SIGKILL) after {tally.done} flows", flush=True)
                time.sleep(2)
                processes[1] = start_service(
                    args.database_url, emulator.url, ports[1], **SERVICE_ENV
                )
                services.alive[1] = True
                print("service 2 restarted", flush=True)

        with ThreadPoolExecutor(args.concurrency) as pool:
            list(pool.map(one, range(args.flows)))
        flows_seconds = time.monotonic() - started
        fired = httpx.get(f"{emulator.url}/_emulator/faults").json()["data"]
        httpx.delete(f"{emulator.url}/_emulator/faults").raise_for_status()
        time.sleep(10)  # deliveries and redeliveries in flight
        reconcile = subprocess.run(
            [sys.executable, "-m", "app", "reconcile", "--min-age", "0"],
            env={
                **os.environ,
                "DATABASE_URL": args.database_url,
                "STRIPE_SECRET_KEY": STRIPE_TEST_KEY,
                "STRIPE_API_BASE": emulator.url,
                "STRIPE_WEBHOOK_SECRET": SERVICE_WEBHOOK_SECRET,
                "API_KEYS": API_KEY,
            },
            capture_output=True,
            text=True,
            check=False,
        )
        summary = [line for line in reconcile.stdout.splitlines() if line.strip()]
        time.sleep(2)
        report(args, emulator.url, tally, flows_seconds, reconcile.returncode, summary)
        print("faults fired: " + ", ".join(_fault(f) for f in fired))
    finally:
        for process in processes:
            stop(process)
        stop_emulator(emulator)
    return 0


def report(
    args: argparse.Namespace,
    emulator_url: str,
    tally: Tally,
    flows_seconds: float,
    reconcile_code: int,
    reconcile_lines: list[str],
) -> None:
    sdk = make_client(emulator_url, api_key=STRIPE_TEST_KEY)
    intents = {
        pi.id: pi.to_dict() for pi in sdk.v1.payment_intents.list({"limit": 100}).auto_paging_iter()
    }
    charges = {c.id: c.to_dict() for c in sdk.v1.charges.list({"limit": 100}).auto_paging_iter()}
    refunds = [r.to_dict() for r in sdk.v1.refunds.list({"limit": 100}).auto_paging_iter()]
    engine = create_engine(sync_url(args.database_url))
    with engine.connect() as connection:
        orders = [dict(r._mapping) for r in connection.execute(text("SELECT * FROM orders"))]
        twice = connection.execute(
            text(
                "SELECT count(*) FROM (SELECT order_id, to_status FROM order_history "
                "GROUP BY order_id, to_status HAVING count(*) > 1) AS repeated"
            )
        ).scalar_one()
        inbox = connection.execute(text("SELECT count(*) FROM webhook_events")).scalar_one()
        inbox_dupes = connection.execute(
            text(
                "SELECT count(*) FROM (SELECT stripe_event_id FROM webhook_events "
                "GROUP BY stripe_event_id HAVING count(*) > 1) AS d"
            )
        ).scalar_one()
    engine.dispose()
    per_order: collections.Counter[str] = collections.Counter(
        pi["metadata"].get("service_order_id") for pi in intents.values()
    )
    refunded_on_stripe: collections.Counter[str] = collections.Counter()
    for refund in refunds:
        if refund["status"] not in ("failed", "canceled"):
            refunded_on_stripe[refund["payment_intent"]] += refund["amount"]
    differs, amounts_differ, no_intent = [], 0, 0
    exceeding = 0
    for order in orders:
        if order["payment_intent"] is None:
            no_intent += 1
            if per_order[order["id"]] or order["status"] != "pending":
                differs.append((order["id"], order["status"], "no intent linked"))
            continue
        intent = intents[order["payment_intent"]]
        charge = charges.get(intent.get("latest_charge") or "")
        status, received, refunded = status_stripe_implies(intent, charge)
        if order["status"] != status:
            differs.append((order["id"], order["status"], status))
        if (order["amount_received"], order["amount_refunded"]) != (received, refunded):
            amounts_differ += 1
        if (
            order["amount_refunded"] > order["amount_received"]
            or refunded_on_stripe[intent["id"]] > received
        ):
            exceeding += 1
    status_counts = collections.Counter(o["status"] for o in orders)
    deliveries = httpx.get(f"{emulator_url}/_emulator/webhooks/deliveries").json()["data"]
    print()
    print(f"flows attempted:                          {args.flows}")
    print(f"orders whose status differs from Stripe's: {len(differs)}")
    print(
        f"payment intents per order above one:       {sum(1 for n in per_order.values() if n > 1)}"
    )
    print(f"refunds exceeding payments:                {exceeding}")
    print(f"events applied twice:                      {twice + inbox_dupes}")
    print()
    print(f"concurrency {args.concurrency}, seed {args.seed}, flows took {flows_seconds:.0f} s")
    print(f"orders: {len(orders)} ({dict(sorted(status_counts.items()))})")
    print(f"orders with no payment intent (Stripe has none either): {no_intent}")
    print(f"orders whose amounts differ from Stripe's: {amounts_differ}")
    print(f"payment intents on Stripe: {len(intents)}, refunds: {len(refunds)}")
    print(
        f"webhook events in the inbox: {inbox}; last {len(deliveries)} delivery attempts: "
        f"{dict(collections.Counter(_answer(d) for d in deliveries))}"
    )
    print(f"client retries: {dict(tally.retries)}")
    print(f"final answers: {dict(sorted(tally.answers.items()))}")
    print(f"reconcile (exit {reconcile_code}): " + " | ".join(reconcile_lines[-3:]))
    for order_id, ours, theirs in differs[:20]:
        print(f"  differs: {order_id} ours={ours} stripe={theirs}")


def _fault(fault: dict[str, Any]) -> str:
    what = fault["webhook"] or fault["status"]
    return f"{what} p={fault['probability']}: {fault['hits']}"


def _answer(delivery: dict[str, Any]) -> str:
    if delivery["status"] is not None:
        return str(delivery["status"])
    return str(delivery["error"] or "none").split(":")[0]


if __name__ == "__main__":
    sys.exit(main())
