"""Soak: complete payment flows against two service processes on one Postgres database while the
emulator injects the faults that once made the service charge twice, plus the usual ones, and
one service process is killed with SIGKILL midway and restarted. Then
`python -m app reconcile --min-age 0` and `python -m app audit --json --min-age 0` run once, and
the service is compared with Stripe.

Faults (the emulator's `probability` on every matching call or event; `FAULTS` below):
- Stripe slower than the service's client timeout: the services run with
  `STRIPE_TIMEOUT_SECONDS=2`, and 5% of `POST /v1/payment_intents` take 3.5 s more, 5% of
  confirms, captures (`POST /v1/payment_intents/{intent}/confirm`, `.../capture`) and
  `POST /v1/refunds` 3 s more. Stripe carries on and commits after the service gave up; the
  SDK's retry with the same Stripe idempotency key then meets Stripe's 409
  `idempotency_key_in_use` (counted by the emulator), and when its retries run out the client
  gets 503 `stripe_outcome_unknown` (with the order id) and resumes with its own key;
- a connection reset after Stripe committed (`drop: "after"`): 3% of Stripe calls;
- 2% of Stripe calls answer a plain 409 (an injected conflict, which the SDK retries);
- 10% answer 500, 5% answer 429 (`Retry-After: 1`);
- webhooks: 10% of events delivered three times at once, 5% start a reordered batch of three,
  5% are delayed 1.5 s;
- SIGKILL of service process 2 halfway through (requests cut mid-flight), restarted 2 s later.

Flows, each POST with its own Idempotency-Key and retried with that key as a real client would
(on a 5xx after its Retry-After, capped at 5 s; on 409 `idempotency_key_in_use`; on a dropped
connection or a timeout; on either live process, so a request cut by the SIGKILL is retried on
the other one), never with a new key for the same payment: pay; pay and refund part; pay and
refund all; manual capture of part and a small refund; create and cancel; a declined card then
another card.

It prints the flows attempted and the figures that must be 0, and exits 1 if one is not:
orders with two charges (Stripe intents that took or hold money per `service_order_id` above
one); payments with two orders or charges (a flow whose create key made more than one order, or
whose orders, or intents carrying its description, took or hold money more than once); orphan
charged intents (one whose `service_order_id` order is missing or linked to another intent);
lost orders (an order an answer named that is not in the database, or an order still `pending`
with no intent after reconcile); 5xx answers that were not a 503 with Retry-After; orders whose
status differs from Stripe's; payment intents per order above one; refunds exceeding payments;
events applied twice; and the audit's findings that affect money. It also fails when the audit
could not run or checked fewer orders than there are, when reconcile exits non-zero, and when
no SDK retry met a 409 `idempotency_key_in_use` (the run would then prove nothing about it).
Run with `make soak` (`python -m bench.soak --flows N --concurrency C --seed S`); it needs a
Postgres server (`--database-url`, default a `payments_soak` database on 127.0.0.1, created
afresh and dropped at the end unless `--keep-database`).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import random
import re
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import httpx
from sqlalchemy import create_engine, text

from bench.service import recreate
from tests.fixtures.emulator import free_ports, make_client, start_emulator, stop_emulator
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
STRIPE_TIMEOUT_SECONDS = 2
SERVICE_ENV = {"STRIPE_TIMEOUT_SECONDS": str(STRIPE_TIMEOUT_SECONDS), "LOG_LEVEL": "WARNING"}
# Stripe slower than the services' timeout, and still committing: the SDK's retries (after 0.5 s,
# then 0.5-1 s) meet 409 `idempotency_key_in_use` while the first attempt runs. 3.5 s outlasts
# them mostly (the client gets 503 stripe_outcome_unknown and resumes), 3 s not always (the
# SDK's last retry gets the saved result).
SLOW: list[tuple[str, int]] = [
    ("POST /v1/payment_intents", 3500),
    ("POST /v1/payment_intents/{intent}/confirm", 3000),
    ("POST /v1/payment_intents/{intent}/capture", 3000),
    ("POST /v1/refunds", 3000),
]
FAULTS: list[dict[str, Any]] = [
    *({"route": route, "latency_ms": ms, "probability": 0.05} for route, ms in SLOW),
    {"drop": "after", "probability": 0.03},
    {"status": 409, "probability": 0.02},
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
# Intents that took money or hold it: a payment made twice shows as two of these.
CHARGED = frozenset({"succeeded", "requires_capture", "processing"})
CALL_DEADLINE_S = 150.0  # a client gives up on one call after this long
RETRY_AFTER_CAP_S = 5.0
KILLED = 1  # the index of the service process killed midway


@dataclass
class Services:
    urls: list[str]
    alive: list[bool]
    epoch: int = 0  # moves on when a process is killed

    def pick(self, rng: random.Random) -> str:
        up = [u for u, a in zip(self.urls, self.alive, strict=True) if a] or self.urls
        return rng.choice(up)

    def name(self, url: str) -> str:
        return f"service {self.urls.index(url) + 1}"


@dataclass
class Flow:
    """One client payment: its create's Idempotency-Key, every answer it saw, the orders they
    named."""

    index: int
    kind: str
    description: str
    create_key: str
    answers: list[str] = field(default_factory=list)
    order_ids: set[str] = field(default_factory=set)


@dataclass
class Tally:
    lock: threading.Lock = field(default_factory=threading.Lock)
    done: int = 0
    retries: collections.Counter[str] = field(default_factory=collections.Counter)
    answers: collections.Counter[str] = field(default_factory=collections.Counter)
    seen: collections.Counter[str] = field(default_factory=collections.Counter)  # every answer
    bad_5xx: collections.Counter[str] = field(default_factory=collections.Counter)
    cut: int = 0  # requests cut by the SIGKILL
    after_cut: collections.Counter[str] = field(default_factory=collections.Counter)
    flows: dict[int, Flow] = field(default_factory=dict)

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

    def post(
        self, rng: random.Random, flow: Flow, label: str, path: str, body: dict[str, Any], key: str
    ) -> httpx.Response:
        """POST with one Idempotency-Key until an answer that is not a retry-later one."""
        deadline = time.monotonic() + CALL_DEADLINE_S
        tally = self.tally
        cut = False
        while True:
            epoch = self.services.epoch
            url = self.services.pick(rng)
            try:
                response = self.http().post(
                    f"{url}{path}", json=body, headers={"Idempotency-Key": f"{self.run}-{key}"}
                )
            except httpx.HTTPError as exc:
                tally.count(tally.retries, type(exc).__name__)
                flow.answers.append(f"{label} {type(exc).__name__} ({self.services.name(url)})")
                self.local.__dict__.pop("client", None)
                if url == self.services.urls[KILLED] and self.services.epoch != epoch:
                    cut = True
                    with tally.lock:
                        tally.cut += 1
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.3)
                continue
            status = response.status_code
            error = _error(response)
            code = error.get("code") or ""
            seen = f"{label} {status}{f' {code}' if code else ''}"
            flow.answers.append(f"{seen} ({self.services.name(url)})")
            tally.count(tally.seen, seen)
            if status >= 500 and not (status == 503 and response.headers.get("Retry-After")):
                tally.count(tally.bad_5xx, f"{status} {code or '-'}")
            order_id = error.get("order_id") or (_json(response).get("order_id"))
            if isinstance(order_id, str):
                flow.order_ids.add(order_id)
            retry = status >= 500 or status == 429
            if status == 409:
                retry = code == "idempotency_key_in_use"
            if not retry or time.monotonic() > deadline:
                tally.count(tally.answers, f"{label} {status}")
                if cut:
                    tally.count(tally.after_cut, f"{status} on {self.services.name(url)}")
                return response
            tally.count(tally.retries, f"{status}{f' {code}' if code else ''}")
            time.sleep(_retry_after(response))


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _error(response: httpx.Response) -> dict[str, Any]:
    if response.status_code < 400:
        return {}
    error = _json(response).get("error")
    return error if isinstance(error, dict) else {}


def _retry_after(response: httpx.Response) -> float:
    """The answer's Retry-After in seconds (0.5 when absent or not a number), capped."""
    try:
        wait = float(response.headers.get("Retry-After", "0.5"))
    except ValueError:
        wait = 0.5
    return min(max(wait, 0.0), RETRY_AFTER_CAP_S)


def flow(client: Client, index: int, seed: int) -> None:
    rng = random.Random(seed * 100_003 + index)
    kind = rng.choices([k for k, _ in KINDS], weights=[w for _, w in KINDS])[0]
    amount = rng.randrange(500, 20_000)
    description = f"soak {index} {kind}"  # no long digit runs: those look like card numbers
    record = Flow(index, kind, description, f"{client.run}-{index}:create")
    with client.tally.lock:
        client.tally.flows[index] = record
    base: dict[str, Any] = {
        "amount": amount,
        "currency": "usd",
        "description": description,
        "automatic_payment_methods": {"enabled": True, "allow_redirects": "never"},
    }
    if kind in ("pay", "refund_part", "refund_all"):
        base.update(confirm=True, payment_method="pm_card_visa")
    elif kind == "capture":
        base.update(confirm=True, payment_method="pm_card_visa", capture_method="manual")

    def post(label: str, path: str, body: dict[str, Any], key: str) -> httpx.Response:
        return client.post(rng, record, label, path, body, f"{index}:{key}")

    created = post("create", "/payment-intents", base, "create")
    if created.status_code != 200:
        return
    intent = created.json()["id"]
    if kind == "refund_part":
        post("refund", "/refunds", {"payment_intent": intent, "amount": amount // 3}, "r")
    elif kind == "refund_all":
        post("refund", "/refunds", {"payment_intent": intent}, "r")
    elif kind == "capture":
        captured = post(
            "capture",
            f"/payment-intents/{intent}/capture",
            {"amount_to_capture": amount - amount // 4},
            "capture",
        )
        if captured.status_code == 200 and rng.random() < 0.5:
            post("refund", "/refunds", {"payment_intent": intent, "amount": amount // 5}, "r")
    elif kind == "cancel":
        post("cancel", f"/payment-intents/{intent}/cancel", {}, "cancel")
    elif kind == "decline_then_pay":
        path = f"/payment-intents/{intent}/confirm"
        post("confirm", path, {"payment_method": "pm_card_chargeDeclined"}, "c1")
        post("confirm", path, {"payment_method": "pm_card_visa"}, "c2")


def inbox_count(database_url: str) -> int:
    engine = create_engine(sync_url(database_url))
    with engine.connect() as connection:
        count = connection.execute(text("SELECT count(*) FROM webhook_events")).scalar_one()
    engine.dispose()
    return int(count)


def scrape_stripe_errors(url: str, into: collections.Counter[str]) -> None:
    """Add a service process's `stripe_errors` counters (Stripe calls that failed after the
    SDK's own retries, by operation and the SDK's error) to `into`."""
    try:
        metrics = httpx.get(f"{url}/metrics", timeout=10).text
    except httpx.HTTPError:
        return
    for line in metrics.splitlines():
        if line.startswith("stripe_errors_total{"):
            labels = dict(re.findall(r'(\w+)="([^"]*)"', line))
            into[f"{labels.get('operation')} {labels.get('error')}"] += int(float(line.split()[-1]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--flows", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--database-url", default=os.environ.get("SOAK_DATABASE_URL", DEFAULT_DATABASE)
    )
    parser.add_argument(
        "--keep-database", action="store_true", help="leave the database for inspection"
    )
    args = parser.parse_args()
    started = time.monotonic()
    recreate(args.database_url)
    migrate(args.database_url)
    *ports, emulator_port = free_ports(3)
    hooks = [a for p in ports for a in ("--webhook-url", f"http://127.0.0.1:{p}/webhooks/stripe")]
    emulator = start_emulator(
        *hooks,
        "--webhook-secret",
        SERVICE_WEBHOOK_SECRET,
        "--webhook-retry-base-ms",
        "300",
        "--webhook-max-attempts",
        "10",
        port=emulator_port,
    )
    processes = [start_service(args.database_url, emulator.url, p, **SERVICE_ENV) for p in ports]
    services = Services([f"http://127.0.0.1:{p}" for p in ports], [True, True])
    tally = Tally()
    client = Client(services, tally, f"soak{int(time.time())}")
    stripe_errors: collections.Counter[str] = collections.Counter()
    failed = True
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
                scrape_stripe_errors(services.urls[KILLED], stripe_errors)
                services.alive[KILLED] = False
                services.epoch += 1
                processes[KILLED].kill()  # SIGKILL: no shutdown, requests cut mid-flight
                processes[KILLED].wait()
                print(f"killed service 2 (SIGKILL) after {tally.done} flows", flush=True)
                down = time.monotonic()
                time.sleep(2)
                processes[KILLED] = start_service(
                    args.database_url, emulator.url, ports[KILLED], **SERVICE_ENV
                )
                services.alive[KILLED] = True
                print(f"service 2 restarted, {time.monotonic() - down:.1f} s after", flush=True)

        with ThreadPoolExecutor(args.concurrency) as pool:
            list(pool.map(one, range(args.flows)))
        flows_seconds = time.monotonic() - started
        fired = httpx.get(f"{emulator.url}/_emulator/faults").json()["data"]
        httpx.delete(f"{emulator.url}/_emulator/faults").raise_for_status()
        for url in services.urls:
            scrape_stripe_errors(url, stripe_errors)
        time.sleep(10)  # deliveries and redeliveries in flight
        made = httpx.get(f"{emulator.url}/_emulator/health").json()["objects"].get("event", 0)
        backlog = f"{made - inbox_count(args.database_url)} of the {made} events Stripe made"
        env = {
            **os.environ,
            "DATABASE_URL": args.database_url,
            "STRIPE_SECRET_KEY": STRIPE_TEST_KEY,
            "STRIPE_API_BASE": emulator.url,
            "STRIPE_WEBHOOK_SECRET": SERVICE_WEBHOOK_SECRET,
            "API_KEYS": API_KEY,
        }
        reconcile = subprocess.run(
            [sys.executable, "-m", "app", "reconcile", "--min-age", "0"],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        summary = [line for line in reconcile.stdout.splitlines() if line.strip()]
        time.sleep(2)
        audit = run_audit(env)
        idempotency = httpx.get(f"{emulator.url}/_emulator/health").json()["idempotency"]
        failed = report(
            args,
            emulator.url,
            services,
            tally,
            flows_seconds,
            reconcile.returncode,
            summary,
            audit,
            idempotency,
            stripe_errors,
            backlog,
        )
        print("faults fired: " + ", ".join(_fault(f) for f in fired))
    finally:
        for process in processes:
            stop(process)
        stop_emulator(emulator)
        if not args.keep_database:
            recreate(args.database_url, drop_only=True)
    print(f"the whole run took {time.monotonic() - started:.0f} s")
    return 1 if failed else 0


@dataclass
class Audit:
    result: dict[str, Any] | None
    exit_code: int
    problem: str | None  # why it is unavailable


def run_audit(env: dict[str, str]) -> Audit:
    """`python -m app audit --json --min-age 0` (its default leaves out objects younger than
    5 minutes: the whole run): exit 0 nothing affects money, 1 something does, 2 (or
    anything else) it could not run."""
    try:
        done = subprocess.run(
            [sys.executable, "-m", "app", "audit", "--json", "--min-age", "0"],
            env=env,
            capture_output=True,
            text=True,
            check=False,
            timeout=600,
        )
    except subprocess.TimeoutExpired:
        return Audit(None, -1, "no answer in 600 s")
    last = (done.stderr.strip().splitlines() or [""])[-1]
    if done.returncode not in (0, 1):
        return Audit(None, done.returncode, f"exit {done.returncode}: {last}")
    try:
        result = json.loads(done.stdout)
        int(result["money"])
    except (ValueError, KeyError, TypeError):
        return Audit(None, done.returncode, f"exit {done.returncode}, no JSON report: {last}")
    return Audit(result, done.returncode, None)


def report(
    args: argparse.Namespace,
    emulator_url: str,
    services: Services,
    tally: Tally,
    flows_seconds: float,
    reconcile_code: int,
    reconcile_lines: list[str],
    audit: Audit,
    idempotency: dict[str, int],
    stripe_errors: collections.Counter[str],
    backlog: str,
) -> bool:
    """Print the figures; True when one that must be 0 is not (or a check could not run)."""
    sdk = make_client(emulator_url, api_key=STRIPE_TEST_KEY)
    intents = {
        pi.id: pi.to_dict() for pi in sdk.v1.payment_intents.list({"limit": 100}).auto_paging_iter()
    }
    charges = {c.id: c.to_dict() for c in sdk.v1.charges.list({"limit": 100}).auto_paging_iter()}
    refunds = [r.to_dict() for r in sdk.v1.refunds.list({"limit": 100}).auto_paging_iter()]
    engine = create_engine(sync_url(args.database_url))
    with engine.connect() as connection:
        orders = {r.id: dict(r._mapping) for r in connection.execute(text("SELECT * FROM orders"))}
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
    sdk._requestor._client.close()  # type: ignore[union-attr]

    def order_of(intent: dict[str, Any]) -> str | None:
        found: str | None = (intent.get("metadata") or {}).get("service_order_id")
        return found

    per_order: collections.Counter[str | None] = collections.Counter(
        order_of(pi) for pi in intents.values()
    )
    charged = [pi for pi in intents.values() if pi["status"] in CHARGED]
    charged_per_order: collections.Counter[str | None] = collections.Counter(
        order_of(pi) for pi in charged
    )
    two_charges = sorted(o or "-" for o, n in charged_per_order.items() if n > 1)
    orphans = [
        pi
        for pi in charged
        if order_of(pi) not in orders or orders[order_of(pi)]["payment_intent"] != pi["id"]
    ]

    # Per client payment: the orders its create key made or its answers named, and the
    # charged intents of those orders or carrying its description.
    orders_by_key: dict[str, set[str]] = collections.defaultdict(set)
    for order in orders.values():
        if order["idempotency_key"]:
            orders_by_key[order["idempotency_key"]].add(order["id"])
    charged_by_description: dict[str, set[str]] = collections.defaultdict(set)
    for pi in charged:
        charged_by_description[pi.get("description") or ""].add(pi["id"])
    doubled: list[tuple[Flow, set[str], set[str]]] = []
    lost: list[tuple[str, str]] = []
    for record in tally.flows.values():
        flow_orders = orders_by_key.get(record.create_key, set()) | record.order_ids
        flow_charged = set(charged_by_description.get(record.description, set()))
        flow_charged |= {pi["id"] for pi in charged if order_of(pi) in flow_orders}
        if len(flow_orders) > 1 or len(flow_charged) > 1:
            doubled.append((record, flow_orders, flow_charged))
        lost += [
            (o, f"flow {record.index}: named by an answer, not in the database")
            for o in record.order_ids
            if o not in orders
        ]
    lost += [
        (o["id"], f"{o['status']} with no payment intent after reconcile")
        for o in orders.values()
        if o["payment_intent"] is None and o["status"] == "pending"
    ]

    refunded_on_stripe: collections.Counter[str] = collections.Counter()
    for refund in refunds:
        if refund["status"] not in ("failed", "canceled"):
            refunded_on_stripe[refund["payment_intent"]] += refund["amount"]
    differs, amounts_differ, no_intent = [], 0, 0
    exceeding = 0
    for order in orders.values():
        if order["payment_intent"] is None:
            no_intent += 1
            if per_order[order["id"]] or order["status"] not in ("pending", "abandoned"):
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
    intents_above_one = sum(1 for n in per_order.values() if n > 1)
    bad_5xx = sum(tally.bad_5xx.values())
    money = audit.result["money"] if audit.result is not None else None
    unknown_503 = sum(n for k, n in tally.seen.items() if k.endswith("503 stripe_outcome_unknown"))

    figures = [
        ("orders with two charges", len(two_charges)),
        ("payments with two orders or charges", len(doubled)),
        ("orphan charged intents", len(orphans)),
        ("lost orders", len(lost)),
        ("5xx not a 503 with Retry-After", bad_5xx),
        ("orders whose status differs from Stripe's", len(differs)),
        ("payment intents per order above one", intents_above_one),
        ("refunds exceeding payments", exceeding),
        ("events applied twice", twice + inbox_dupes),
    ]
    width = max(len(name) for name, _ in figures) + 2
    print()
    print(f"{'flows attempted:':<{width}}{args.flows}")
    for name, value in figures:
        print(f"{name + ':':<{width}}{value}")
    if audit.result is not None:
        print(f"{'audit findings affecting money:':<{width}}{money}")
    else:
        print(f"{'audit findings affecting money:':<{width}}audit unavailable ({audit.problem})")
    print()
    print(
        f"Stripe slower than the client timeout: {idempotency['in_use']} answers 409 "
        f"idempotency_key_in_use from Stripe to the services' retries, {idempotency['replayed']} "
        f"replays of a saved result; clients saw {unknown_503} answers 503 "
        "stripe_outcome_unknown and retried each with its Idempotency-Key"
    )
    print(
        f"SIGKILL: {tally.cut} requests cut on service 2, retried with the same key: final "
        f"answers {dict(sorted(tally.after_cut.items()))}"
    )
    print(f"concurrency {args.concurrency}, seed {args.seed}, flows took {flows_seconds:.0f} s")
    status_counts = collections.Counter(o["status"] for o in orders.values())
    print(f"orders: {len(orders)} ({dict(sorted(status_counts.items()))})")
    print(f"orders with no payment intent (Stripe has none either): {no_intent}")
    print(f"orders whose amounts differ from Stripe's: {amounts_differ}")
    print(f"payment intents on Stripe: {len(intents)}, refunds: {len(refunds)}")
    deliveries = httpx.get(f"{emulator_url}/_emulator/webhooks/deliveries").json()["data"]
    by_target: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for delivery in deliveries:
        port = delivery["url"].split(":")[-1].split("/")[0]
        target = next((services.name(u) for u in services.urls if u.endswith(f":{port}")), port)
        by_target[target][_answer(delivery)] += 1
    print(
        f"webhook events in the inbox: {inbox}; the last {len(deliveries)} delivery attempts "
        f"(the emulator keeps 5,000), by target: "
        + ", ".join(f"{t} {dict(c)}" for t, c in sorted(by_target.items()))
    )
    print(f"client retries: {dict(sorted(tally.retries.items()))}")
    print(f"answers seen (every attempt, not 2xx): {_not_2xx(tally.seen)}")
    if tally.bad_5xx:
        print(f"5xx not a 503 with Retry-After: {dict(tally.bad_5xx)}")
    print(f"final answers: {dict(sorted(tally.answers.items()))}")
    print(f"service Stripe errors (after the SDK's retries): {dict(sorted(stripe_errors.items()))}")
    print(f"not in the inbox when reconcile started: {backlog}")
    print(f"reconcile (exit {reconcile_code}): " + " | ".join(reconcile_lines[-3:]))
    if audit.result is not None:
        counts = audit.result.get("counts") or {}
        print(
            f"audit (exit {audit.exit_code}): {audit.result.get('orders_checked')} orders, "
            f"{audit.result.get('intents_checked')} intents checked; findings {counts}"
        )
        for finding in [f for f in audit.result.get("findings", []) if f.get("money")][:20]:
            print(f"  audit: {finding}")
    for order_id in two_charges[:20]:
        ids = [pi["id"] for pi in charged if (order_of(pi) or "-") == order_id]
        print(f"  two charges: order {order_id}: {ids}")
    for record, flow_orders, flow_charged in doubled[:20]:
        print(
            f"  doubled: flow {record.index} ({record.kind}) orders {sorted(flow_orders)} "
            f"charged {sorted(flow_charged)}; answers {record.answers}"
        )
    for pi in orphans[:20]:
        order = orders.get(order_of(pi) or "")
        print(
            f"  orphan: {pi['id']} ({pi['status']}, {pi.get('description')}) names "
            f"{order_of(pi)}: {'missing' if order is None else order['status']} "
            f"linked to {None if order is None else order['payment_intent']}"
        )
    for order_id, why in lost[:20]:
        print(f"  lost: {order_id}: {why}")
    for order_id, ours, theirs in differs[:20]:
        print(f"  differs: {order_id} ours={ours} stripe={theirs}")
    problems = [name for name, value in figures if value]
    if audit.result is None:
        problems.append("the audit could not run")
    else:
        if money:
            problems.append("audit findings affecting money")
        if int(audit.result.get("orders_checked") or 0) < len(orders):
            problems.append(
                f"the audit checked {audit.result.get('orders_checked')} orders of {len(orders)}"
            )
    if reconcile_code != 0:
        problems.append(f"reconcile exited {reconcile_code}")
    if not idempotency["in_use"]:
        problems.append(
            "no 409 idempotency_key_in_use happened: the slow-Stripe fault proved nothing"
        )
    print()
    print("FAILED: " + "; ".join(problems) if problems else "all figures 0")
    return bool(problems)


def _not_2xx(seen: collections.Counter[str]) -> dict[str, int]:
    return {k: n for k, n in sorted(seen.items()) if not k.split()[1].startswith("2")}


def _fault(fault: dict[str, Any]) -> str:
    if fault["webhook"]:
        what = f"webhook {fault['webhook']}"
    elif fault["drop"]:
        what = f"drop {fault['drop']}"
    elif fault["latency_ms"]:
        what = f"+{fault['latency_ms']} ms"
    else:
        what = str(fault["status"])
    where = f" on {fault['route']}" if fault["route"] else ""
    return f"{what}{where} p={fault['probability']}: {fault['hits']}"


def _answer(delivery: dict[str, Any]) -> str:
    if delivery["status"] is not None:
        return str(delivery["status"])
    return str(delivery["error"] or "none").split(":")[0]


if __name__ == "__main__":
    sys.exit(main())
