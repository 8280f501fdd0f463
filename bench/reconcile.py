"""Reconcile at scale: N unsettled orders with payment intents, 1% of them paid at Stripe with no
webhook delivered, one `python -m app reconcile` from its events cursor.

1. A fresh Postgres database (`--database-url`, dropped at the end unless `--keep-database`),
   migrated; `python -m emulator --empty` on a free port with no webhook endpoint (nothing it
   makes is delivered).
2. N payment intents created over the emulator's own HTTP API with wrk (`bench/reconcile.lua`,
   `--connections`), each naming its own order in `metadata[service_order_id]`; listed back, and
   loaded into Postgres with COPY as the service would hold them: the N orders (`pending`,
   linked, an hour old), their intents' mirror rows, and each `payment_intent.created` in the
   webhook inbox (`stale`, what its delivery leaves when the API already recorded the intent).
3. The cursors a run just after the load would have left: the newest event (one made after a
   pause longer than reconcile's overlap; `--burst`: the load's last), and the orphan window up
   to now.
4. `--changed` of the orders (default 1%) paid at Stripe (confirmed with `pm_card_visa`).
5. One `reconcile --min-age 0` (the orders were just loaded; 0 makes every one old enough), timed,
   its Stripe calls counted by the emulator (`GET /_emulator/requests`); then a check that every
   changed order is paid and every other one still pending.
6. With `--anchor`: another `--changed` paid, and `reconcile --full` (today's full pass: one
   retrieve per unsettled order) on the same data, as the anchor of the ratios.

Run under `flock /tmp/bench.lock` on a shared machine: `make bench-reconcile N=100000`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from app.reconcile import OVERLAP_SECONDS
from bench.service import recreate
from bench.wrk import run_wrk
from tests.fixtures.emulator import free_port

API_KEY = "sk_test_bench_reconcile"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def sync_url(database_url: str) -> str:
    return make_url(database_url).set(drivername="postgresql+psycopg").render_as_string(False)


def app_env(database_url: str, stripe_base: str) -> dict[str, str]:
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("STRIPE_")}
    return {
        **inherited,
        "DATABASE_URL": database_url,
        "STRIPE_SECRET_KEY": API_KEY,
        "STRIPE_API_BASE": stripe_base,
        "STRIPE_WEBHOOK_SECRET": "whsec_bench_reconcile",
        "LOG_LEVEL": "WARNING",
    }


def create_intents(base: str, count: int, connections: int) -> float:
    """At least `count` intents at the emulator, with wrk; the seconds it took."""
    started = time.perf_counter()
    script = os.path.join(os.path.dirname(__file__), "reconcile.lua")
    while (missing := count - stored_intents(base)) > 0:
        run_wrk(
            f"{base}/v1/payment_intents",
            script,
            connections=connections,
            seconds=max(1, min(20, missing // 6000)),
            # A prefix per wrk run: its counters start again at 1.
            env={**os.environ, "API_KEY": API_KEY, "PREFIX": f"ord_b{secrets.token_hex(4)}t"},
        )
    return time.perf_counter() - started


def stored_intents(base: str) -> int:
    objects = httpx.get(f"{base}/_emulator/health", timeout=30).json()["objects"]
    return int(objects.get("payment_intent", 0))


def every(base: str, path: str, **params: str) -> list[dict[str, Any]]:
    """Every object of a Stripe list, newest first (100 a page)."""
    found: list[dict[str, Any]] = []
    headers = {"Authorization": f"Bearer {API_KEY}"}
    with httpx.Client(base_url=base, headers=headers, timeout=60) as client:
        while True:
            page_params = {"limit": "100", **params}
            if found:
                page_params["starting_after"] = found[-1]["id"]
            page = client.get(path, params=page_params).json()
            found += page["data"]
            if not page["has_more"]:
                return found


async def pay(base: str, intent_ids: list[str], connections: int) -> None:
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    headers = {"Authorization": f"Bearer {API_KEY}"}
    async with httpx.AsyncClient(base_url=base, limits=limits, headers=headers) as client:
        queue = iter(intent_ids)

        async def worker() -> None:
            for intent_id in queue:
                response = await client.post(
                    f"/v1/payment_intents/{intent_id}/confirm",
                    data={"payment_method": "pm_card_visa"},
                    timeout=60,
                )
                response.raise_for_status()
                assert response.json()["status"] == "succeeded"

        await asyncio.gather(*(worker() for _ in range(connections)))


async def load_rows(
    database_url: str,
    base: str,
    intents: list[dict[str, Any]],
    created_events: list[dict[str, Any]],
    burst: bool,
) -> None:
    """With COPY: an order (an hour old, `pending`, linked) and a mirror row per intent, and each
    intent's `payment_intent.created` in the inbox (`stale`, as its webhook would have left it);
    then the cursors a run just after the load would have left."""
    url = make_url(database_url)
    connection = await asyncpg.connect(
        host=url.host,
        port=url.port,
        user=url.username,
        password=url.password,
        database=url.database,
    )
    at = datetime.now(UTC) - timedelta(hours=1)
    try:
        await connection.copy_records_to_table(
            "orders",
            columns=[
                "id",
                "status",
                "amount",
                "currency",
                "amount_received",
                "amount_refunded",
                "payment_intent",
                "metadata",
                "attempts",
                "created_at",
                "updated_at",
            ],  # fmt: skip
            records=[
                (order_of(i), "pending", 2000, "usd", 0, 0, i["id"], "{}", 1, at, at)
                for i in intents
            ],
        )
        await connection.copy_records_to_table(
            "payment_intents",
            columns=[
                "stripe_id",
                "order_id",
                "status",
                "amount",
                "amount_received",
                "amount_capturable",
                "currency",
                "created",
                "metadata",
                "data",
                "created_at",
                "updated_at",
            ],  # fmt: skip
            records=[
                (
                    i["id"],
                    order_of(i),
                    i["status"],
                    2000,
                    0,
                    0,
                    "usd",
                    i["created"],
                    json.dumps(i["metadata"]),
                    json.dumps({k: v for k, v in i.items() if k != "client_secret"}),
                    at,
                    at,
                )  # fmt: skip
                for i in intents
            ],
        )
        await connection.copy_records_to_table(
            "webhook_events",
            columns=["stripe_event_id", "type", "object_id", "outcome", "payload", "received_at"],
            records=[
                (e["id"], e["type"], e["data"]["object"]["id"], "stale", json.dumps(e), at)
                for e in created_events
            ],
        )
        newest = created_events[0] if burst else quiet_event(base)
        await connection.executemany(
            "INSERT INTO reconcile_cursors (name, stripe_id, created, updated_at) "
            "VALUES ($1, $2, $3, now())",
            [("events", newest["id"], newest["created"]), ("orphans", None, int(time.time()))],
        )
        await connection.execute("ANALYZE")
    finally:
        await connection.close()


def quiet_event(base: str) -> dict[str, Any]:
    """The event a previous run would have stopped at: one made after a pause longer than the
    run's overlap (`OVERLAP_SECONDS`), as on an account that does not write 5,000 intents a
    second right up to the run (Stripe's live mode allows about 100 writes a second)."""
    time.sleep(OVERLAP_SECONDS + 1)
    headers = {"Authorization": f"Bearer {API_KEY}"}
    httpx.post(f"{base}/v1/customers", data={"description": "quiet"}, headers=headers, timeout=30)
    newest = httpx.get(f"{base}/v1/events", params={"limit": 1}, headers=headers, timeout=30)
    return dict(newest.json()["data"][0])


def order_of(intent: dict[str, Any]) -> str:
    return str(intent["metadata"]["service_order_id"])


BASE = ""


def requests_by_route() -> dict[str, int]:
    return dict(httpx.get(f"{BASE}/_emulator/requests", timeout=30).json()["by_route"])


@dataclass
class Run:
    label: str
    seconds: float
    calls: dict[str, int]
    stdout: str

    @property
    def total(self) -> int:
        return sum(self.calls.values())


def reconcile(database_url: str, label: str, *flags: str) -> Run:
    before = requests_by_route()
    started = time.perf_counter()
    ran = subprocess.run(
        [sys.executable, "-m", "app", "reconcile", "--min-age", "0", *flags],
        env=app_env(database_url, BASE),
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    seconds = time.perf_counter() - started
    if ran.returncode != 0:
        output = f"{ran.stdout[-3000:]}\n{ran.stderr[-3000:]}"
        sys.exit(f"reconcile ({label}) exited {ran.returncode}:\n{output}")
    after = requests_by_route()
    calls = {r: n - before.get(r, 0) for r, n in after.items() if n - before.get(r, 0)}
    return Run(label, seconds, calls, ran.stdout)


def statuses(database_url: str, order_ids: list[str]) -> dict[str, int]:
    engine = create_engine(sync_url(database_url))
    with engine.connect() as connection:
        rows = connection.execute(
            text("SELECT status, count(*) FROM orders WHERE id = ANY(:ids) GROUP BY status"),
            {"ids": order_ids},
        )
        found = {status: int(count) for status, count in rows}
    engine.dispose()
    return found


def show(run: Run, unchanged: int) -> None:
    print(f"{run.label}:")
    print(f"  seconds                  {run.seconds:8.2f}")
    print(f"  Stripe calls             {run.total:8d}")
    print(f"  calls per unchanged order {run.total / unchanged:8.4f}")
    for route, n in sorted(run.calls.items()):
        print(f"    {route:40s} {n:8d}")
    print(f"  {run.stdout.splitlines()[0]}")
    print(f"  {run.stdout.splitlines()[-1]}")


def main() -> None:
    global BASE
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--orders", type=int, default=100_000)
    parser.add_argument("--changed", type=float, default=0.01, help="fraction paid at Stripe")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--anchor", action="store_true", help="then a --full run on the same data")
    parser.add_argument(
        "--burst",
        action="store_true",
        help="leave the cursor at the load's last event (no pause): the run reads the load's last "
        "OVERLAP_SECONDS of events and intents again",
    )
    parser.add_argument(
        "--database-url",
        default=f"postgresql+asyncpg://postgres@127.0.0.1:5432/bench_reconcile_{secrets.token_hex(3)}",
    )
    parser.add_argument("--keep-database", action="store_true")
    args = parser.parse_args()
    recreate(args.database_url)
    subprocess.run(
        [sys.executable, "-m", "alembic", "upgrade", "head"],
        env={**os.environ, "DATABASE_URL": args.database_url},
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    port = free_port()
    BASE = f"http://127.0.0.1:{port}"
    emulator = subprocess.Popen(
        [sys.executable, "-m", "emulator", "--port", str(port), "--empty"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"{BASE}/_emulator/health", timeout=1).raise_for_status()
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        created = create_intents(BASE, args.orders, args.connections)
        started = time.perf_counter()
        intents = every(BASE, "/v1/payment_intents")
        created_events = every(BASE, "/v1/events", type="payment_intent.created")
        asyncio.run(load_rows(args.database_url, BASE, intents, created_events, args.burst))
        copied = time.perf_counter() - started
        n = len(intents)
        order_ids = [order_of(i) for i in intents]
        changed = max(1, int(n * args.changed))
        step = n // changed
        paid = list(range(0, n, step))[:changed]
        asyncio.run(pay(BASE, [intents[i]["id"] for i in paid], args.connections))
        print(
            f"loaded {n} orders: intents created at the emulator in {created:.1f} s (wrk), "
            f"listed and copied into Postgres in {copied:.1f} s; {changed} paid at Stripe with "
            "no webhook delivered"
        )
        run = reconcile(args.database_url, "reconcile from the events cursor")
        paid_ids = [order_ids[i] for i in paid]
        rest = sorted(set(order_ids) - set(paid_ids))
        settled = statuses(args.database_url, paid_ids)
        untouched = statuses(args.database_url, rest)
        show(run, n - changed)
        ok = settled == {"paid": changed} and untouched == {"pending": n - changed}
        print(f"  changed orders: {settled}; unchanged: {untouched}: {'OK' if ok else 'WRONG'}")
        if args.anchor:
            more = [i + 1 for i in paid if i + 1 < n][:changed]
            asyncio.run(pay(BASE, [intents[i]["id"] for i in more], args.connections))
            anchor = reconcile(args.database_url, "anchor: reconcile --full", "--full")
            show(anchor, n - 2 * changed)
            more_ids = [order_ids[i] for i in more]
            anchor_ok = statuses(args.database_url, more_ids) == {"paid": len(more)}
            ok = ok and anchor_ok
            print(f"  changed orders settled: {'OK' if anchor_ok else 'WRONG'}")
            print(
                f"ratios cursor/full: seconds {run.seconds / anchor.seconds:.3f}, "
                f"Stripe calls {run.total / anchor.total:.4f}"
            )
        if not ok:
            sys.exit(1)
    finally:
        emulator.terminate()
        emulator.wait(timeout=30)
        if not args.keep_database:
            recreate(args.database_url, drop_only=True)


if __name__ == "__main__":
    main()
