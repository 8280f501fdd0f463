"""The service against the seed's Express endpoint: payment intent creations per second.

Starts the emulator, the service on Postgres (uvicorn, a worker per core) and the anchor, the seed's
Express `POST /api/create-payment-intent` (bench/express, its npm packages installed in a
temporary folder), both calling the same emulator, and beside them the framework's ceiling: the
same endpoint in FastAPI making the service's Stripe call and nothing else
(bench/payment_intent_bare.py). Drives them with wrk, alternating runs, in two regimes: (a) no
added Stripe latency, 32 connections; (b) 500 ms of emulator latency, 200 connections. Prints
requests/s, p50 and p99 for each and the ratios to Express per regime, plus the latency the
service adds on top of the Stripe call at 1 connection, and webhook ingestion: signed
`payment_intent.succeeded` events for existing orders posted as fast as the service takes them,
checked exactly once on Postgres, against a bare endpoint that only verifies the signature
(bench/webhook_bare.py). Run with `make bench-service` (`python -m bench.service --seconds S
--rounds R`); needs wrk, node and npm and a Postgres server (`--database-url`, default a
`payments_bench` database on 127.0.0.1, recreated).
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from bench.wrk import Run, run_wrk
from tests.fixtures.emulator import free_port, free_ports

HERE = Path(__file__).resolve().parent
DEFAULT_DATABASE = "postgresql+asyncpg://postgres@127.0.0.1:5432/payments_bench"
STRIPE_KEY = "sk_test_bench"
API_KEY = "bench_api_key_0123456789"
WEBHOOK_SECRET = "whsec_bench"
BODY = json.dumps({"amount": 2000, "currency": "usd"})
EMULATOR_BODY = "amount=2000&currency=usd"


@dataclass
class Target:
    name: str
    url: str
    api_key: str = ""
    content_type: str = "application/json"
    body: str = BODY


def wait_for_port(port: int, process: subprocess.Popen[bytes], name: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit(f"{name} exited at start (status {process.returncode})")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    sys.exit(f"{name} did not start")


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def wrk(target: Target, *, connections: int, seconds: int) -> Run:
    env = {
        **os.environ,
        "BODY": target.body,
        "API_KEY": target.api_key,
        "CONTENT_TYPE": target.content_type,
        "IDEMPOTENCY_PREFIX": uuid.uuid4().hex,
    }
    return run_wrk(
        target.url,
        str(HERE / "post.lua"),
        connections=connections,
        seconds=seconds,
        env=env,
        threads=1 if connections < 100 else 2,
        extra=("--timeout", "30s"),
    )


def recreate(database_url: str, *, drop_only: bool = False) -> None:
    """Drop the URL's database (closing its connections) and, unless `drop_only`, create it
    empty; every benchmark's database goes through here."""
    url = make_url(database_url)
    admin = create_engine(
        url.set(drivername="postgresql+psycopg", database="postgres"), isolation_level="AUTOCOMMIT"
    )
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{url.database}" WITH (FORCE)'))
        if not drop_only:
            connection.execute(text(f'CREATE DATABASE "{url.database}"'))
    admin.dispose()


def service_env(database_url: str, stripe_base: str) -> dict[str, str]:
    return {
        **os.environ,
        "DATABASE_URL": database_url,
        "STRIPE_SECRET_KEY": STRIPE_KEY,
        "STRIPE_API_BASE": stripe_base,
        "STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "API_KEYS": API_KEY,
        "PUBLIC_RATE_LIMIT": "off",
        "LOG_LEVEL": "WARNING",
    }


@dataclass
class Stack:
    service: Target
    express: Target
    # The framework's ceiling: FastAPI and the service's Stripe call alone (payment_intent_bare).
    fastapi: Target
    # The emulator itself, for the added latency.
    emulator: Target


def uvicorn(app: str, port: int, workers: int, env: dict[str, str]) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(port)]
    command += ["--log-level", "warning", "--workers", str(workers)]
    process = subprocess.Popen(command, env=env)
    wait_for_port(port, process, app)
    return process


@contextmanager
def stack(database_url: str, node_dir: Path, latency_ms: int, workers: int) -> Iterator[Stack]:
    """The emulator, the service and the anchors, all pointed at that emulator."""
    emulator_port, service_port, express_port, bare_port = free_ports(4)
    emulator_base = f"http://127.0.0.1:{emulator_port}"
    command = [sys.executable, "-m", "emulator", "--port", str(emulator_port), "--empty"]
    if latency_ms:
        command += ["--latency-ms", str(latency_ms)]
    processes = [subprocess.Popen(command, stdout=subprocess.DEVNULL)]
    try:
        wait_for_port(emulator_port, processes[0], "the emulator")
        env = service_env(database_url, emulator_base)
        processes.append(uvicorn("app.main:app", service_port, workers, env))
        processes.append(uvicorn("bench.payment_intent_bare:app", bare_port, workers, env))
        processes.append(
            subprocess.Popen(
                ["node", "--no-warnings", "server.js"],
                cwd=node_dir,
                env={
                    **os.environ,
                    "STRIPE_SECRET_KEY": STRIPE_KEY,
                    "STRIPE_HOST": "127.0.0.1",
                    "STRIPE_PORT": str(emulator_port),
                    "PORT": str(express_port),
                },
            )
        )
        wait_for_port(express_port, processes[-1], "the Express anchor")
        yield Stack(
            service=Target("service", f"http://127.0.0.1:{service_port}/payment-intents", API_KEY),
            express=Target("express", f"http://127.0.0.1:{express_port}/api/create-payment-intent"),
            fastapi=Target("fastapi", f"http://127.0.0.1:{bare_port}/payment-intents"),
            emulator=Target(
                "emulator",
                f"{emulator_base}/v1/payment_intents",
                STRIPE_KEY,
                "application/x-www-form-urlencoded",
                EMULATOR_BODY,
            ),
        )
    finally:
        for process in reversed(processes):
            stop(process)


@dataclass
class Summary:
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int


def summarise(runs: list[Run]) -> Summary:
    """Requests over time across runs; the median run's p50; the worst run's p99."""
    return Summary(
        rps=sum(r.requests for r in runs) / sum(r.seconds for r in runs),
        p50_ms=statistics.median(r.p50_ms for r in runs),
        p99_ms=max(r.p99_ms for r in runs),
        errors=sum(r.errors for r in runs),
    )


def regime(running: Stack, *, connections: int, seconds: int, rounds: int) -> dict[str, Summary]:
    targets = (running.service, running.express, running.fastapi)
    for target in targets:
        wrk(target, connections=connections, seconds=2)  # warm-up
    runs: dict[str, list[Run]] = {target.name: [] for target in targets}
    for _ in range(rounds):
        for target in targets:
            runs[target.name].append(wrk(target, connections=connections, seconds=seconds))
    return {name: summarise(r) for name, r in runs.items()}


def print_regime(title: str, results: dict[str, Summary]) -> None:
    print(title)
    for name, s in results.items():
        print(
            f"  {name:>8}: {s.rps:8.0f} req/s  p50 {s.p50_ms:7.2f} ms  p99 {s.p99_ms:7.2f} ms  "
            f"errors {s.errors}"
        )
    express = results["express"].rps
    print(f"  ratio service/express: {results['service'].rps / express:.2f}")
    print(f"  ratio fastapi/express: {results['fastapi'].rps / express:.2f} (the framework alone)")
    service_to_bare = results["service"].rps / results["fastapi"].rps
    print(f"  ratio service/fastapi: {service_to_bare:.2f} (the same call, bare)")


def create_orders(target: Target, count: int) -> list[dict[str, object]]:
    headers = {"Authorization": f"Bearer {target.api_key}", "Content-Type": "application/json"}
    with httpx.Client(headers=headers, timeout=60) as client:

        def create(_: int) -> dict[str, object]:
            response = client.post(target.url, content=BODY)
            response.raise_for_status()
            return dict(response.json())

        with ThreadPoolExecutor(16) as pool:
            return list(pool.map(create, range(count)))


def sign(payload: str) -> str:
    timestamp = int(time.time())
    digest = hmac.new(WEBHOOK_SECRET.encode(), f"{timestamp}.{payload}".encode(), hashlib.sha256)
    return f"t={timestamp},v1={digest.hexdigest()}"


def write_events(intents: list[dict[str, object]], path: Path) -> None:
    """One signed `payment_intent.succeeded` per order."""
    lines = []
    for n, created in enumerate(intents):
        intent = {k: v for k, v in created.items() if k != "order_id"}
        intent.update(status="succeeded", amount_received=intent["amount"])
        event = {
            "id": f"evt_bench_{n}",
            "object": "event",
            "type": "payment_intent.succeeded",
            "created": int(time.time()),
            "livemode": False,
            "data": {"object": intent},
        }
        payload = json.dumps(event, separators=(",", ":"))
        lines.append(f"{sign(payload)}\t{payload}\n")
    path.write_text("".join(lines))


def post_events(url: str, events: Path, connections: int, seconds: int) -> Run:
    return run_wrk(
        url,
        str(HERE / "webhooks.lua"),
        connections=connections,
        seconds=seconds,
        env={**os.environ, "EVENTS": str(events)},
    )


def webhooks(service: Target, database_url: str, orders: int, seconds: int, work: Path) -> None:
    """Events/s into the service (inbox, order update) against a bare signature check."""
    intents = create_orders(service, orders)
    events = work / "events.tsv"
    write_events(intents, events)
    base = service.url.removesuffix("/payment-intents")
    applied = post_events(f"{base}/webhooks/stripe", events, 32, seconds)
    port = free_port()
    bare = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "bench.webhook_bare:app",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        env={**os.environ, "STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET},
    )
    try:
        wait_for_port(port, bare, "the bare webhook endpoint")
        anchor = post_events(f"http://127.0.0.1:{port}/webhooks/stripe", events, 32, seconds)
    finally:
        stop(bare)
    engine = create_engine(make_url(database_url).set(drivername="postgresql+psycopg"))
    with engine.connect() as connection:
        inbox = connection.scalar(
            text("SELECT count(*) FROM webhook_events WHERE stripe_event_id LIKE 'evt_bench_%'")
        )
        twice = connection.scalar(
            text(
                "SELECT count(*) FROM (SELECT order_id FROM order_history "
                "WHERE source LIKE 'evt_bench_%' GROUP BY order_id HAVING count(*) > 1) AS t"
            )
        )
        moved = connection.scalar(
            text(
                "SELECT count(DISTINCT order_id) FROM order_history WHERE source LIKE 'evt_bench_%'"
            )
        )
    engine.dispose()
    print(
        f"webhooks: signed payment_intent.succeeded events, one for each of {orders} existing "
        f"orders, posted in turn for {seconds} s (then again: redeliveries), 32 connections"
    )
    for name, run in (("service", applied), ("bare", anchor)):
        print(
            f"  {name:>8}: {run.rps:8.0f} events/s  p50 {run.p50_ms:7.2f} ms  "
            f"p99 {run.p99_ms:7.2f} ms  errors {run.errors}  ({run.requests} posts)"
        )
    print(f"  ratio service/bare: {applied.rps / anchor.rps:.2f}")
    first = min(orders, applied.requests)
    print(
        f"  applied: {(inbox or 0) / applied.seconds:.0f} events/s (first deliveries stored in the "
        f"inbox over the run{'; every event sent, a lower bound' if first == orders else ''})"
    )
    print(
        f"  exactly once: {inbox} events in the inbox (expected {first}), {moved} orders "
        f"moved by them, {twice} orders moved twice"
    )


def machine() -> str:
    model = ""
    with open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    node = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()
    return (
        f"{os.cpu_count()} cores ({model}); Python {platform.python_version()}, node {node}, "
        f"{platform.system()} {platform.release()}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=10, help="length of each run (10)")
    parser.add_argument("--rounds", type=int, default=2, help="alternating runs per target (2)")
    parser.add_argument("--database-url", default=DEFAULT_DATABASE)
    parser.add_argument("--latency-ms", type=int, default=500, help="regime (b)'s latency (500)")
    parser.add_argument(
        "--orders",
        type=int,
        default=40000,
        help="orders for the webhooks (40000: more than are posted in a run, so every post is "
        "a first delivery)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=os.cpu_count() or 1,
        help="uvicorn worker processes for the service (one per core)",
    )
    args = parser.parse_args()
    for tool in ("wrk", "node", "npm"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is not installed (apt-get install wrk nodejs npm)")
    recreate(args.database_url)
    subprocess.run(
        [sys.executable, "-m", "app", "migrate"],
        env=service_env(args.database_url, "http://127.0.0.1:9"),
        check=True,
        capture_output=True,
    )
    with tempfile.TemporaryDirectory(prefix="bench-express-") as node_dir:
        for name in ("server.js", "package.json"):
            shutil.copy(HERE / "express" / name, node_dir)
        subprocess.run(
            ["npm", "install", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=node_dir,
            check=True,
            stdout=subprocess.DEVNULL,
        )
        print(f"machine: {machine()}")
        print(
            f"wrk, {args.seconds} s runs, {args.rounds} alternating rounds per target; "
            'body {"amount": 2000, "currency": "usd"}'
        )
        print(
            f"service and fastapi: uvicorn, {args.workers} worker process(es) each; express: one "
            "node process"
        )
        with stack(args.database_url, Path(node_dir), 0, args.workers) as running:
            a = regime(running, connections=32, seconds=args.seconds, rounds=args.rounds)
            wrk(running.emulator, connections=1, seconds=2)
            direct = wrk(running.emulator, connections=1, seconds=args.seconds)
            alone = wrk(running.service, connections=1, seconds=args.seconds)
            print_regime("(a) no added Stripe latency, 32 connections", a)
            webhooks(running.service, args.database_url, args.orders, args.seconds, Path(node_dir))
        with stack(args.database_url, Path(node_dir), args.latency_ms, args.workers) as running:
            b = regime(running, connections=200, seconds=args.seconds, rounds=args.rounds)
        print_regime(f"(b) {args.latency_ms} ms of emulator latency, 200 connections", b)
    print("added latency at 1 connection, no added Stripe latency:")
    print(f"  emulator direct create p50 {direct.p50_ms:6.2f} ms ({direct.rps:.0f} req/s)")
    print(f"  service create         p50 {alone.p50_ms:6.2f} ms ({alone.rps:.0f} req/s)")
    print(f"  added by the service   p50 {alone.p50_ms - direct.p50_ms:6.2f} ms")


if __name__ == "__main__":
    main()
