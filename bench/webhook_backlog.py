"""Webhook bursts on Postgres: first deliveries a second against the bare signature check, then a
backlog of signed events (Stripe redelivering after an outage) drained by concurrent senders.

Starts the service (`uvicorn app.main:app --workers N`) on a fresh Postgres database whose
orders are bulk-loaded already linked to their payment intents, and the anchor,
bench/webhook_bare.py (one uvicorn process that verifies `Stripe-Signature` with the official SDK
and stores nothing, as in bench/service.py). Then:

1. Ingestion: one signed `payment_intent.succeeded` per order of their own, posted in turn by
   wrk (bench/webhooks.lua, `-t1 -c32`) for `--seconds`, alternating service and anchor for
   `--rounds` (each service run on events not sent before: first deliveries).
2. The backlog: `--events` signed events (default 100,000) for other orders, four kinds of flow
   (processing then succeeded; authorized then canceled; a failed payment; succeeded then
   `charge.refunded` in full), a tenth of them delivered twice, all shuffled (out of order),
   posted once each by `--connections` concurrent senders until every post is answered; the
   same file to the anchor. Printed: events a second, the ratio to the anchor, answers ≥ 500
   (must be 0), every order's final status against its flow's, each event in the inbox once and
   handled, no order moved twice by one event, and each worker's RSS (VmRSS) before, at its
   highest during, and after the backlog.

Run with `make bench-webhooks` (`python -m bench.webhook_backlog --events N --connections C`);
needs wrk and a Postgres server (`--database-url`, default a `bench_webhooks_backlog` database on
127.0.0.1, created afresh and dropped at the end unless `--keep-database`).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
from sqlalchemy import Connection, create_engine, text
from sqlalchemy.engine import make_url

from bench.service import (
    WEBHOOK_SECRET,
    recreate,
    service_env,
    sign,
    stop,
    uvicorn,
    wait_for_port,
)
from tests.fixtures.emulator import free_port, free_ports

HERE = Path(__file__).resolve().parent
DEFAULT_DATABASE = "postgresql+asyncpg://postgres@127.0.0.1:5432/bench_webhooks_backlog"
AMOUNT = 2000
# Each flow's events, in Stripe's order, and the status its order must end in whatever the
# order of arrival (the state machine never moves backwards).
FLOWS: dict[str, tuple[tuple[str, ...], str]] = {
    "paid": (("payment_intent.processing", "payment_intent.succeeded"), "paid"),
    "canceled": (
        ("payment_intent.amount_capturable_updated", "payment_intent.canceled"),
        "canceled",
    ),
    "failed": (("payment_intent.payment_failed",), "payment_failed"),
    "refunded": (("payment_intent.succeeded", "charge.refunded"), "refunded"),
}
KINDS = tuple(FLOWS)
REDELIVERED = 0.1


@dataclass
class Posted:
    requests: int
    seconds: float
    errors: int
    server_errors: int
    p50_ms: float
    p99_ms: float

    @property
    def rps(self) -> float:
        return self.requests / self.seconds


def post(url: str, events: Path, *, connections: int, seconds: int, once: bool) -> Posted:
    """wrk with bench/webhooks.lua on one thread: for `seconds`, or (once) until each line of
    `events` is answered, timed here (latencies then unknown: 0)."""
    started = time.monotonic()
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "30s"]
        + ["-s", str(HERE / "webhooks.lua"), url],
        env={**os.environ, "EVENTS": str(events), "ONCE": "1" if once else "0"},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    elapsed = time.monotonic() - started
    data = json.loads(next(line for line in out.splitlines() if line.startswith("JSON "))[5:])
    return Posted(
        requests=data["requests"],
        seconds=elapsed if once else data["duration_us"] / 1e6,
        errors=data.get("refused", data.get("errors", 0)),
        server_errors=data["server_errors"],
        p50_ms=data.get("p50_us", 0) / 1000,
        p99_ms=data.get("p99_us", 0) / 1000,
    )


# Orders and events ---------------------------------------------------------------------------


def order_id(prefix: str, n: int) -> str:
    return f"ord_{prefix}{n:08d}"


def intent_id(prefix: str, n: int) -> str:
    return f"pi_{prefix}{n:08d}"


def load_orders(connection: Connection, prefix: str, count: int) -> None:
    """`count` pending orders, each linked to its payment intent (and its mirror), as a create
    leaves them; with SQL, not through the API, so the backlog's size is the only limit."""
    params = {"prefix": prefix, "count": count, "amount": AMOUNT, "key": "service_order_id"}
    connection.execute(
        text(
            "INSERT INTO orders (id, status, amount, currency, amount_received, amount_refunded, "
            "payment_intent, metadata, attempts, created_at, updated_at) "
            "SELECT 'ord_' || CAST(:prefix AS text) || lpad(n::text, 8, '0'), 'pending', "
            ":amount, 'usd', 0, 0, "
            "'pi_' || :prefix || lpad(n::text, 8, '0'), '{}', 1, now(), now() "
            "FROM generate_series(0, :count - 1) AS n"
        ),
        params,
    )
    connection.execute(
        text(
            "INSERT INTO payment_intents (stripe_id, order_id, status, amount, amount_received, "
            "amount_capturable, currency, created, metadata, data, created_at, updated_at) "
            "SELECT 'pi_' || CAST(:prefix AS text) || lpad(n::text, 8, '0'), "
            "'ord_' || :prefix || lpad(n::text, 8, '0'), 'requires_payment_method', :amount, 0, "
            "0, 'usd', extract(epoch FROM now())::bigint - 3600, "
            "jsonb_build_object(CAST(:key AS text), 'ord_' || :prefix || lpad(n::text, 8, '0')), "
            "'{}', now(), "
            "now() FROM generate_series(0, :count - 1) AS n"
        ),
        params,
    )


# A payment intent as Stripe sends it (every field), made once by the emulator: events carry the
# whole object, and the anchor's cost (the SDK builds a StripeObject of it) grows with its size.
TEMPLATE: dict[str, object] = {}


def fetch_template() -> None:
    port = free_port()
    emulator = subprocess.Popen(
        [sys.executable, "-m", "emulator", "--port", str(port), "--empty"],
        stdout=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, emulator, "the emulator")
        response = httpx.post(
            f"http://127.0.0.1:{port}/v1/payment_intents",
            data={"amount": AMOUNT, "currency": "usd", "metadata[service_order_id]": "ord_x"},
            auth=("sk_test_bench", ""),
            timeout=30,
        )
        response.raise_for_status()
        TEMPLATE.update(response.json())
    finally:
        stop(emulator)


def intent(prefix: str, n: int, status: str, created: int, **fields: object) -> dict[str, object]:
    return {
        **TEMPLATE,
        "id": intent_id(prefix, n),
        "amount": AMOUNT,
        "amount_capturable": 0,
        "amount_received": 0,
        "capture_method": "automatic",
        "client_secret": f"{intent_id(prefix, n)}_secret_bench",
        "created": created,
        "currency": "usd",
        "last_payment_error": None,
        "latest_charge": None,
        "livemode": False,
        "metadata": {"service_order_id": order_id(prefix, n)},
        "status": status,
        **fields,
    }


def event_object(event_type: str, prefix: str, n: int, created: int) -> dict[str, object]:
    charge = f"ch_{prefix}{n:08d}"
    if event_type == "payment_intent.processing":
        return intent(prefix, n, "processing", created)
    if event_type == "payment_intent.succeeded":
        return intent(prefix, n, "succeeded", created, amount_received=AMOUNT, latest_charge=charge)
    if event_type == "payment_intent.amount_capturable_updated":
        return intent(
            prefix,
            n,
            "requires_capture",
            created,
            amount_capturable=AMOUNT,
            capture_method="manual",
            latest_charge=charge,
        )
    if event_type == "payment_intent.canceled":
        return intent(prefix, n, "canceled", created, capture_method="manual")
    if event_type == "payment_intent.payment_failed":
        error = {"type": "card_error", "code": "card_declined", "message": "Declined."}
        return intent(prefix, n, "requires_payment_method", created, last_payment_error=error)
    assert event_type == "charge.refunded"
    return {
        "id": charge,
        "object": "charge",
        "amount": AMOUNT,
        "amount_captured": AMOUNT,
        "amount_refunded": AMOUNT,
        "captured": True,
        "refunded": True,
        "currency": "usd",
        "payment_intent": intent_id(prefix, n),
        "status": "succeeded",
    }


def signed(event_id: str, event_type: str, obj: dict[str, object], created: int) -> str:
    payload = json.dumps(
        {
            "id": event_id,
            "object": "event",
            "api_version": "2025-03-31.basil",
            "type": event_type,
            "created": created,
            "livemode": False,
            "pending_webhooks": 1,
            "data": {"object": obj},
        },
        separators=(",", ":"),
    )
    return f"{sign(payload)}\t{payload}\n"


def write_ingestion(path: Path, prefix: str, first: int, count: int) -> None:
    """One `payment_intent.succeeded` for each of the orders first … first + count - 1."""
    created = int(time.time())
    with path.open("w") as out:
        for n in range(first, first + count):
            obj = event_object("payment_intent.succeeded", prefix, n, created)
            out.write(signed(f"evt_{prefix}{n:08d}", "payment_intent.succeeded", obj, created))


def backlog_orders(events: int) -> int:
    """Orders whose flows make `events` posts with a tenth redelivered."""
    per_order = sum(len(FLOWS[kind][0]) for kind in KINDS) / len(KINDS)
    return max(len(KINDS), round(events / (1 + REDELIVERED) / per_order))


def write_backlog(path: Path, prefix: str, orders: int, total: int, seed: int) -> int:
    """The backlog's events, shuffled, `total` posts of which the ones past the distinct events
    are redeliveries; returns the number of distinct events. Events are an hour old (created
    during the outage); their signatures are made now, as Stripe signs each delivery."""
    rng = random.Random(seed)
    created = int(time.time()) - 3600
    lines = []
    for n in range(orders):
        for step, event_type in enumerate(FLOWS[KINDS[n % len(KINDS)]][0]):
            obj = event_object(event_type, prefix, n, created + step)
            lines.append(signed(f"evt_{prefix}{n:08d}_{step}", event_type, obj, created + step))
    distinct = len(lines)
    lines += rng.choices(lines, k=max(0, total - distinct))
    rng.shuffle(lines)
    path.write_text("".join(lines))
    return distinct


# Workers' memory -----------------------------------------------------------------------------


def workers_of(process: subprocess.Popen[bytes]) -> list[int]:
    """uvicorn's worker processes (its master's children)."""
    children = Path(f"/proc/{process.pid}/task/{process.pid}/children").read_text().split()
    return [int(pid) for pid in children if "spawn" in _cmdline(int(pid))]


def cpu_seconds(pids: list[int]) -> float:
    """User and system CPU the processes have used, in seconds (/proc/PID/stat)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / os.sysconf("SC_CLK_TCK")


def backend_cpu(database: str) -> dict[int, float]:
    """CPU seconds of each Postgres backend connected to `database` (on this machine)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and f" {database} " in _cmdline(int(entry.name)):
            if _cmdline(int(entry.name)).startswith("postgres:"):
                found[int(entry.name)] = cpu_seconds([int(entry.name)])
    return found


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


@contextmanager
def sampling(pids: list[int], every: float = 0.5) -> Iterator[dict[int, int]]:
    """Each process's highest RSS (kB) while the block runs."""
    highest = dict.fromkeys(pids, 0)
    stopped = threading.Event()

    def sample() -> None:
        while not stopped.wait(every):
            for pid in pids:
                highest[pid] = max(highest[pid], rss_kb(pid))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        yield highest
    finally:
        stopped.set()
        sampler.join()


def mb(kb: int) -> str:
    return f"{kb / 1024:.1f} MB"


# The checks ----------------------------------------------------------------------------------


@dataclass
class Checked:
    inbox: int
    handled: int
    outcomes: dict[str, int]
    twice: int
    wrong: dict[str, int]


def check(connection: Connection, prefix: str, orders: int) -> Checked:
    like = {"like": f"evt_{prefix}%"}
    inbox = connection.scalar(
        text("SELECT count(*) FROM webhook_events WHERE stripe_event_id LIKE :like"), like
    )
    outcomes: dict[str, int] = dict(
        connection.execute(
            text(
                "SELECT outcome, count(*) FROM webhook_events WHERE stripe_event_id LIKE :like "
                "GROUP BY outcome ORDER BY outcome"
            ),
            like,
        ).all()
    )
    twice = connection.scalar(
        text(
            "SELECT count(*) FROM (SELECT 1 FROM order_history WHERE source LIKE :like "
            "GROUP BY order_id, source, to_status HAVING count(*) > 1) AS t"
        ),
        like,
    )
    expected = ", ".join(f"({k}, '{FLOWS[kind][1]}')" for k, kind in enumerate(KINDS))
    wrong: dict[str, int] = dict(
        connection.execute(
            text(
                "SELECT o.status || ' (expected ' || e.status || ')', count(*) FROM orders AS o "
                f"JOIN (VALUES {expected}) AS e (kind, status) "
                "ON e.kind = substr(o.id, length('ord_' || :prefix) + 1)::int % :kinds "
                "WHERE o.id LIKE 'ord_' || :prefix || '%' AND o.status <> e.status "
                "GROUP BY 1 ORDER BY 1"
            ),
            {"prefix": prefix, "kinds": len(KINDS)},
        ).all()
    )
    return Checked(
        inbox=inbox or 0,
        handled=sum(v for k, v in outcomes.items() if k != "received"),
        outcomes=outcomes,
        twice=twice or 0,
        wrong=wrong,
    )


# The run -------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=100_000, help="backlog posts (100000)")
    parser.add_argument(
        "--connections", type=int, default=64, help="concurrent senders of the backlog (64)"
    )
    parser.add_argument("--seconds", type=int, default=10, help="each ingestion run (10)")
    parser.add_argument("--rounds", type=int, default=2, help="alternating ingestion runs (2)")
    parser.add_argument("--workers", type=int, default=2, help="uvicorn workers (2)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--database-url", default=DEFAULT_DATABASE)
    parser.add_argument("--keep-database", action="store_true")
    args = parser.parse_args()
    per_run = 4000 * args.seconds  # more first deliveries than a run can take
    fetch_template()
    recreate(args.database_url)
    env = service_env(args.database_url, "http://127.0.0.1:9")
    subprocess.run(
        [sys.executable, "-m", "app", "migrate"], env=env, check=True, capture_output=True
    )
    sync_url = make_url(args.database_url).set(drivername="postgresql+psycopg")
    engine = create_engine(sync_url)
    orders = backlog_orders(args.events)
    with engine.begin() as connection:
        load_orders(connection, "bi", per_run * args.rounds)
        load_orders(connection, "bb", orders)
        connection.execute(text("ANALYZE"))
    service_port, bare_port = free_ports(2)
    service = uvicorn("app.main:app", service_port, args.workers, env)
    bare = uvicorn(
        "bench.webhook_bare:app",
        bare_port,
        1,
        {**os.environ, "STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET},
    )
    urls = {
        "service": f"http://127.0.0.1:{service_port}/webhooks/stripe",
        "bare": f"http://127.0.0.1:{bare_port}/webhooks/stripe",
    }
    try:
        with tempfile.TemporaryDirectory(prefix="bench-webhooks-") as work:
            run(args, engine, service, bare.pid, urls, Path(work), per_run, orders)
    finally:
        stop(bare)
        stop(service)
        engine.dispose()
        if not args.keep_database:
            recreate(args.database_url, drop_only=True)


def run(
    args: argparse.Namespace,
    engine: object,
    service: subprocess.Popen[bytes],
    bare_pid: int,
    urls: dict[str, str],
    work: Path,
    per_run: int,
    orders: int,
) -> None:
    assert hasattr(engine, "connect")
    workers = workers_of(service)
    print(
        f"machine: {os.cpu_count()} cores; service: uvicorn, {args.workers} workers, Postgres; "
        "bare: one uvicorn process, the SDK's signature check, nothing stored"
    )
    warm = work / "warm.tsv"
    write_ingestion(warm, "bi", 0, 200)
    for url in urls.values():
        post(url, warm, connections=32, seconds=2, once=False)
    rss_start = {pid: rss_kb(pid) for pid in workers}
    ingested: dict[str, list[Posted]] = {"service": [], "bare": []}
    # CPU seconds each side spent on its runs: the service's workers, the database's backends
    # (not Postgres's background writers), the anchor's process.
    spent = {"service": 0.0, "postgres": 0.0, "bare": 0.0}
    database = make_url(args.database_url).database or ""
    for n in range(args.rounds):
        events = work / f"ingest{n}.tsv"
        write_ingestion(events, "bi", n * per_run, per_run)
        for name, url in urls.items():
            mine = workers if name == "service" else [bare_pid]
            before, backends = cpu_seconds(mine), backend_cpu(database)
            ingested[name].append(
                post(url, events, connections=32, seconds=args.seconds, once=False)
            )
            spent[name] += cpu_seconds(mine) - before
            if name == "service":
                spent["postgres"] += sum(
                    cpu - backends.get(pid, 0.0) for pid, cpu in backend_cpu(database).items()
                )
    print(
        f"ingestion: signed payment_intent.succeeded, first deliveries, wrk -t1 -c32, "
        f"{args.rounds} x {args.seconds} s alternating"
    )
    rates = {}
    for name, runs in ingested.items():
        rates[name] = sum(r.requests for r in runs) / sum(r.seconds for r in runs)
        print(
            f"  {name:>8}: {rates[name]:7.0f} events/s  p50 {max(r.p50_ms for r in runs):6.2f} ms  "
            f"p99 {max(r.p99_ms for r in runs):6.2f} ms  errors {sum(r.errors for r in runs)}  "
            f"5xx {sum(r.server_errors for r in runs)}  (each run: "
            + ", ".join(f"{r.rps:.0f}" for r in runs)
            + ")"
        )
    print(f"  ratio service/bare: {rates['service'] / rates['bare']:.2f}")
    per_event = {
        name: 1000
        * spent[name]
        / sum(r.requests for r in ingested["bare" if name == "bare" else "service"])
        for name in spent
    }
    service_cpu = per_event["service"] + per_event["postgres"]
    print(
        f"  CPU per event: service workers {per_event['service']:.3f} ms + Postgres backends "
        f"{per_event['postgres']:.3f} ms; bare {per_event['bare']:.3f} ms; ratio bare/service "
        f"(workers + backends) {per_event['bare'] / service_cpu:.2f}"
    )

    backlog = work / "backlog.tsv"
    distinct = write_backlog(backlog, "bb", orders, args.events, args.seed)
    rss_before = {pid: rss_kb(pid) for pid in workers}
    with sampling(workers) as highest:
        drained = post(
            urls["service"], backlog, connections=args.connections, seconds=900, once=True
        )
    rss_after = {pid: rss_kb(pid) for pid in workers}
    write_backlog(backlog, "bb", orders, args.events, args.seed)  # signed afresh: 300 s
    anchor = post(urls["bare"], backlog, connections=args.connections, seconds=900, once=True)
    with engine.connect() as connection:
        checked = check(connection, "bb", orders)
    print(
        f"backlog: {args.events} posts ({distinct} distinct events for {orders} orders, "
        f"{args.events - distinct} redeliveries, shuffled), {args.connections} concurrent senders"
    )
    for name, posted in (("service", drained), ("bare", anchor)):
        print(
            f"  {name:>8}: {posted.rps:7.0f} events/s  drained in {posted.seconds:6.1f} s  "
            f"5xx {posted.server_errors}  4xx {posted.errors}  ({posted.requests} answers)"
        )
    print(f"  ratio service/bare: {drained.rps / anchor.rps:.2f}")
    print(
        f"  inbox: {checked.inbox} of {distinct} events, {checked.handled} handled "
        f"{checked.outcomes}; the same move recorded twice: {checked.twice}"
    )
    print(
        "  orders not in their flow's final status: "
        + (f"{sum(checked.wrong.values())} {checked.wrong}" if checked.wrong else "0")
    )
    print("worker RSS (VmRSS): after warm-up / before the backlog / highest during / after")
    for pid in workers:
        print(
            f"  pid {pid}: {mb(rss_start[pid])} / {mb(rss_before[pid])} / {mb(highest[pid])} / "
            f"{mb(rss_after[pid])}"
        )
    ok = (
        drained.server_errors == 0
        and checked.inbox == distinct == checked.handled
        and checked.twice == 0
        and not checked.wrong
    )
    print("all checks passed" if ok else "CHECKS FAILED")
    if not ok:
        sys.exit(1)


if __name__ == "__main__":
    main()
