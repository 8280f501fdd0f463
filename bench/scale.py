"""Reads at scale: N orders and their payment intents in Postgres, every documented read timed.

Recreates a Postgres database (`--database-url`, default `bench_scale` on 127.0.0.1), migrates it
to the revision before the read indexes, loads N orders, intents and history rows with `COPY`
(customers ~N/20 with a skew, statuses by weight, 5 currencies, metadata with `order_id`,
`channel` and sometimes `campaign`, ages over 2 years), and times a small write benchmark
(creates and webhook-style updates) there; then migrates to head (building the read indexes),
times the same writes again, ANALYZEs, starts the emulator and the service (uvicorn, one worker)
on that database, and for each documented read (bench.scale_reads) prints p50/p99 over
`--requests` HTTP requests and the `EXPLAIN (ANALYZE, BUFFERS)` of the SQL the service sends.
Exits 1 if any of them plans a sequential scan of `orders` or `payment_intents`. Prints load
time, table and index sizes. Drops the database at the end unless `--keep`.

Run with `make bench-scale` (N=1000000; `N=10000000` for the big run).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import asyncpg
import httpx
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

from bench import scale_reads
from bench.service import recreate, service_env, stop, uvicorn, wait_for_port
from bench.webhook_backlog import rss_kb
from tests.fixtures.emulator import free_port

DEFAULT_DATABASE = "postgresql+asyncpg://postgres@127.0.0.1:5432/bench_scale"
BEFORE_INDEXES = "d41c7e9a2b10"
API_KEY = "bench_api_key_0123456789"
CHUNK = 50_000
NOW = int(datetime(2026, 12, 1, tzinfo=UTC).timestamp())
SPAN = 2 * 365 * 86400
STATUSES = [  # intent status, order status, weight
    ("succeeded", "paid", 66),
    ("succeeded", "refunded", 3),
    ("succeeded", "partially_refunded", 1),
    ("requires_payment_method", "pending", 8),
    ("requires_payment_method", "payment_failed", 4),
    ("canceled", "canceled", 8),
    ("requires_confirmation", "pending", 3),
    ("requires_capture", "authorized", 3),
    ("requires_action", "requires_action", 2),
    ("processing", "processing", 2),
]
CURRENCIES = [("usd", 50), ("eur", 25), ("gbp", 12), ("jpy", 8), ("cad", 5)]
CHANNELS = [("web", 60), ("ios", 20), ("android", 15), ("pos", 5)]
CAMPAIGNS = ["BlackFriday", "CyberMonday", "Spring", "Summer", "Newsletter", "Referral"]


def weighted(choices: list[tuple[Any, ...]]) -> tuple[list[Any], list[int]]:
    return [c[:-1] if len(c) > 2 else c[0] for c in choices], [c[-1] for c in choices]


def token(n: int = 15) -> str:
    return base64.urlsafe_b64encode(os.urandom(n)).decode()


def rows(n: int, seed: int = 17) -> Iterator[tuple[list[Any], list[Any], list[Any]]]:
    """Chunks of (orders, intents, history) records, oldest first (ids grow with `created`)."""
    rng = random.Random(seed)
    customers = max(1, n // 20)
    statuses, status_weights = weighted(STATUSES)
    currencies, currency_weights = weighted(CURRENCIES)
    channels, channel_weights = weighted(CHANNELS)
    for start in range(0, n, CHUNK):
        count = min(CHUNK, n - start)
        picked = rng.choices(statuses, status_weights, k=count)
        money = rng.choices(currencies, currency_weights, k=count)
        channel = rng.choices(channels, channel_weights, k=count)
        order_rows, intent_rows, history_rows = [], [], []
        for j in range(count):
            i = start + j + 1
            created = NOW - SPAN + (SPAN * i) // n
            at = datetime.fromtimestamp(created, UTC)
            intent_status, order_status = picked[j]
            currency = money[j]
            amount = max(50, int(rng.lognormvariate(7.8, 1.1)))
            # 15 % guests; the rest skewed: a few customers hold many orders
            customer = (
                None if rng.random() < 0.15 else f"cus_{int(customers * rng.random() ** 2):08d}"
            )
            order_id = f"ord_{token()}"
            stripe_id = f"pi_{token(18)}"
            metadata = {
                "order_id": str(100_000 + i),
                "channel": channel[j],
                "service_order_id": order_id,
            }
            if rng.random() < 0.1:
                metadata["campaign"] = rng.choice(CAMPAIGNS)
            received = amount if intent_status == "succeeded" else 0
            refunded = (
                amount
                if order_status == "refunded"
                else amount // 3
                if order_status == "partially_refunded"
                else 0
            )
            metadata_json = json.dumps(metadata)
            data = {
                "id": stripe_id,
                "object": "payment_intent",
                "amount": amount,
                "amount_received": received,
                "amount_capturable": amount if intent_status == "requires_capture" else 0,
                "capture_method": "automatic_async",
                "created": created,
                "currency": currency,
                "customer": customer,
                "description": None,
                "latest_charge": f"ch_{token(18)}" if received else None,
                "livemode": False,
                "metadata": metadata,
                "payment_method_types": ["card"],
                "status": intent_status,
            }
            order_rows.append(
                (
                    order_id,
                    order_status,
                    amount,
                    currency,
                    received,
                    refunded,
                    customer,
                    stripe_id,
                    metadata_json,
                    1,
                    at,
                    at,
                )
            )
            intent_rows.append(
                (
                    i,
                    stripe_id,
                    order_id,
                    intent_status,
                    amount,
                    received,
                    data["amount_capturable"],
                    currency,
                    customer,
                    "automatic_async",
                    data["latest_charge"],
                    created,
                    metadata_json,
                    json.dumps(data),
                    at,
                    at,
                )
            )
            history_rows.append((order_id, "pending", order_status, f"evt_{token()}", at))
        yield order_rows, intent_rows, history_rows


ORDER_COLUMNS = [
    "id",
    "status",
    "amount",
    "currency",
    "amount_received",
    "amount_refunded",
    "customer",
    "payment_intent",
    "metadata",
    "attempts",
    "created_at",
    "updated_at",
]
INTENT_COLUMNS = [
    "id",
    "stripe_id",
    "order_id",
    "status",
    "amount",
    "amount_received",
    "amount_capturable",
    "currency",
    "customer",
    "capture_method",
    "latest_charge",
    "created",
    "metadata",
    "data",
    "created_at",
    "updated_at",
]
HISTORY_COLUMNS = ["order_id", "from_status", "to_status", "source", "at"]


NEWEST = "ORDER BY created DESC, id DESC OFFSET $1 LIMIT 1"


def insert(table: str, columns: list[str]) -> str:
    values = ", ".join(f"${k + 1}" for k in range(len(columns)))
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({values})"


def dsn(database_url: str) -> str:
    return make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)


def migrate(database_url: str, revision: str) -> float:
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "alembic", "upgrade", revision],
        env={**os.environ, "DATABASE_URL": database_url},
        check=True,
        capture_output=True,
    )
    return time.perf_counter() - started


async def load(database_url: str, n: int) -> float:
    """COPY n orders, intents and history rows; the seconds it took."""
    conn = await asyncpg.connect(dsn(database_url))
    started = time.perf_counter()
    done = 0
    for order_rows, intent_rows, history_rows in rows(n):
        async with conn.transaction():
            await conn.copy_records_to_table("orders", records=order_rows, columns=ORDER_COLUMNS)
            await conn.copy_records_to_table(
                "payment_intents", records=intent_rows, columns=INTENT_COLUMNS
            )
            await conn.copy_records_to_table(
                "order_history", records=history_rows, columns=HISTORY_COLUMNS
            )
        done += len(order_rows)
        if done % 200_000 == 0 or done == n:
            print(
                f"  loaded {done:,} orders ({done / (time.perf_counter() - started):,.0f}/s)",
                flush=True,
            )
    seconds = time.perf_counter() - started
    await conn.execute("SELECT setval(pg_get_serial_sequence('payment_intents', 'id'), $1)", n)
    await conn.close()
    return seconds


async def writes(database_url: str, count: int, label: str) -> None:
    """`count` creates (order, intent, history in one transaction) and `count` webhook-style
    updates (intent status and data, order status, a history row), one connection, one
    transaction each; prints each per second and the share of HOT intent updates."""
    conn = await asyncpg.connect(dsn(database_url))
    hot_before = await conn.fetchrow(
        "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables WHERE relname = 'payment_intents'"
    )
    batch = next(rows(count, seed=int(time.time())))
    started = time.perf_counter()
    for order, intent, history in zip(*batch, strict=True):
        async with conn.transaction():
            await conn.execute(
                insert("orders", ORDER_COLUMNS),
                *order,
            )
            await conn.execute(
                insert("payment_intents", INTENT_COLUMNS[1:]),
                *intent[1:],
            )
            await conn.execute(
                insert("order_history", HISTORY_COLUMNS),
                *history,
            )
    creates = count / (time.perf_counter() - started)
    targets = [(i[1], i[2]) for i in batch[1]]
    started = time.perf_counter()
    for stripe_id, order_id in targets:
        async with conn.transaction():
            await conn.execute(
                "UPDATE payment_intents SET status = 'succeeded', amount_received = amount, "
                'data = data || \'{"status": "succeeded"}\', updated_at = now() '
                "WHERE stripe_id = $1",
                stripe_id,
            )
            await conn.execute(
                "UPDATE orders SET status = 'paid', amount_received = amount, "
                "updated_at = now() WHERE id = $1",
                order_id,
            )
            await conn.execute(
                "INSERT INTO order_history (order_id, from_status, to_status, source, at) "
                "VALUES ($1, 'pending', 'paid', 'evt_bench', now())",
                order_id,
            )
    updates = count / (time.perf_counter() - started)
    await asyncio.sleep(0.7)  # the statistics collector reports at most twice a second
    hot_after = await conn.fetchrow(
        "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables WHERE relname = 'payment_intents'"
    )
    await conn.close()
    hot = (hot_after[1] - hot_before[1]) / max(1, hot_after[0] - hot_before[0])
    print(
        f"  writes {label}: {creates:,.0f} creates/s, {updates:,.0f} webhook updates/s, "
        f"HOT intent updates {hot:.0%}"
    )


async def sample(database_url: str) -> scale_reads.Sample:
    conn = await asyncpg.connect(dsn(database_url))
    # `DEEP` pages down, or half way down a small table
    total = await conn.fetchval("SELECT count(*) FROM payment_intents WHERE status = 'succeeded'")
    deep = min(scale_reads.DEEP * scale_reads.PAGE, total // 2)

    async def one(sql: str, *args: Any) -> Any:
        return await conn.fetchval(sql, *args)

    typical = await one(
        "SELECT customer FROM payment_intents WHERE customer IS NOT NULL GROUP BY customer "
        "HAVING count(*) BETWEEN 5 AND 30 LIMIT 1"
    )
    hot = await one(
        "SELECT customer FROM payment_intents WHERE customer IS NOT NULL GROUP BY customer "
        "ORDER BY count(*) DESC LIMIT 1"
    )
    n = await one("SELECT max(id) FROM payment_intents")
    position = await conn.fetchrow(
        f"SELECT created, id FROM payment_intents WHERE status = 'succeeded' {NEWEST}",
        deep,
    )
    result = scale_reads.Sample(
        customer=typical,
        hot_customer=hot,
        order_ref=str(100_000 + n // 3),
        other_order_ref=str(100_000 + n // 2),
        created_mid=await one("SELECT created FROM payment_intents WHERE id = $1", n // 2),
        created_old=await one(
            "SELECT created FROM payment_intents WHERE id = $1", max(1, n // 100)
        ),
        created_exact=await one("SELECT created FROM payment_intents WHERE id = $1", n // 4),
        amount_high=await one(
            "SELECT percentile_disc(0.999) WITHIN GROUP (ORDER BY amount) FROM payment_intents"
        ),
        amount_exact=await one("SELECT amount FROM payment_intents WHERE id = $1", n // 5),
        deep_order=await one(
            "SELECT id FROM orders ORDER BY created_at DESC, id DESC OFFSET $1 LIMIT 1", deep
        ),
        deep_paid_order=await one(
            "SELECT id FROM orders WHERE status = 'paid' "
            "ORDER BY created_at DESC, id DESC OFFSET $1 LIMIT 1",
            deep,
        ),
        deep_intent=await one(
            f"SELECT stripe_id FROM payment_intents {NEWEST}",
            deep,
        ),
        deep_succeeded_intent=await one(
            f"SELECT stripe_id FROM payment_intents WHERE status = 'succeeded' {NEWEST}",
            deep,
        ),
        deep_search_position=(position["created"], position["id"]),
    )
    await conn.close()
    return result


async def sizes(database_url: str) -> None:
    conn = await asyncpg.connect(dsn(database_url))
    for table in ("orders", "payment_intents", "order_history"):
        count = await conn.fetchval(f"SELECT count(*) FROM {table}")
        heap = await conn.fetchval("SELECT pg_table_size($1)", table)
        print(
            f"  {table}: {count:,} rows, table {heap / 2**20:,.0f} MB "
            f"({heap / max(1, count):,.0f} B/row)"
        )
        for name, size in await conn.fetch(
            "SELECT indexrelname, pg_relation_size(indexrelid) FROM pg_stat_user_indexes "
            "WHERE relname = $1 ORDER BY 2 DESC",
            table,
        ):
            print(f"    {name}: {size / 2**20:,.1f} MB ({size / max(1, count):,.1f} B/row)")
    await conn.close()


async def explain(database_url: str, reads: list[scale_reads.Read]) -> dict[str, list[str]]:
    """Each read's SQL, EXPLAIN (ANALYZE, BUFFERS)ed; the big tables each one scans sequentially."""
    engine = create_async_engine(database_url)
    scans: dict[str, list[str]] = {}
    async with AsyncSession(engine) as session:
        for read in reads:
            _, sent = await scale_reads.statements(session, read)
            scans[read.name] = []
            print(f"\n== {read.name}: {read.path} {read.params}")
            for statement, parameters in sent:
                connection = await session.connection()
                plan = (
                    await connection.exec_driver_sql(
                        "EXPLAIN (FORMAT JSON) " + statement, parameters
                    )
                ).scalar()
                scans[read.name] += scale_reads.seq_scans(
                    json.loads(plan) if isinstance(plan, str) else plan
                )
                text = await connection.exec_driver_sql(
                    "EXPLAIN (ANALYZE, BUFFERS) " + statement, parameters
                )
                print("\n".join("   " + line for (line,) in text))
            await session.rollback()
    await engine.dispose()
    return scans


def time_reads(
    base: str, reads: list[scale_reads.Read], requests: int
) -> dict[str, tuple[float, float]]:
    figures = {}
    with httpx.Client(
        base_url=base, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=60
    ) as client:
        for read in reads:
            for _ in range(10):
                response = client.get(read.path, params=read.params)
                if response.status_code != 200:
                    sys.exit(f"{read.name}: {response.status_code} {response.text[:300]}")
            took = []
            for _ in range(requests):
                started = time.perf_counter()
                client.get(read.path, params=read.params)
                took.append((time.perf_counter() - started) * 1000)
            took.sort()
            figures[read.name] = (
                statistics.median(took),
                took[min(len(took) - 1, int(len(took) * 0.99))],
            )
    return figures


def load_and_index(url: str, n: int, write_count: int) -> None:
    """Load N orders under the indexes before issue 17's, time writes, build the read indexes,
    time writes again, VACUUM ANALYZE."""
    migrate(url, BEFORE_INDEXES)
    seconds = asyncio.run(load(url, n))
    print(
        f"load: {n:,} orders + intents + history rows in {seconds:,.1f} s "
        f"({n / seconds:,.0f} orders/s) with the indexes before this change"
    )
    asyncio.run(writes(url, write_count, "before the read indexes"))
    print(f"read indexes built (alembic upgrade head) in {migrate(url, 'head'):,.1f} s")
    asyncio.run(writes(url, write_count, "with the read indexes"))
    started = time.perf_counter()
    subprocess.run(["psql", dsn(url), "-qc", "VACUUM ANALYZE"], check=True)
    print(f"VACUUM ANALYZE in {time.perf_counter() - started:,.1f} s")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=int(os.environ.get("N") or 1_000_000))
    parser.add_argument("--database-url", default=DEFAULT_DATABASE)
    parser.add_argument("--requests", type=int, default=300, help="timed requests per read")
    parser.add_argument(
        "--writes", type=int, default=3000, help="creates and updates per write run"
    )
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="time the reads on a database a `--keep` run left (no load, no write runs; ANALYZE "
        "first, for what a migration since then changed)",
    )
    args = parser.parse_args()
    url = args.database_url
    print(
        f"reads at scale: N={args.n:,} into {make_url(url).database}, {os.cpu_count()} cores, "
        f"load average {os.getloadavg()[0]:.2f}"
    )
    if not args.reuse:
        recreate(url)
    try:
        if not args.reuse:
            load_and_index(url, args.n, args.writes)
        else:
            migrated = migrate(url, "head")
            started = time.perf_counter()
            subprocess.run(["psql", dsn(url), "-qc", "ANALYZE"], check=True)
            print(
                f"alembic upgrade head in {migrated:,.1f} s, then ANALYZE in "
                f"{time.perf_counter() - started:,.1f} s"
            )
        asyncio.run(sizes(url))
        found = asyncio.run(sample(url))
        reads = scale_reads.reads(found)
        scans = asyncio.run(explain(url, reads))
        port = free_port()
        emulator = subprocess.Popen(
            [sys.executable, "-m", "emulator", "--port", str(port), "--empty"],
            stdout=subprocess.DEVNULL,
        )
        wait_for_port(port, emulator, "the emulator")
        service_port = free_port()
        env = {**service_env(url, f"http://127.0.0.1:{port}"), "API_KEYS": API_KEY}
        service = uvicorn("app.main:app", service_port, 1, env)
        try:
            started_rss = rss_kb(service.pid)
            figures = time_reads(f"http://127.0.0.1:{service_port}", reads, args.requests)
            print(
                f"service worker RSS (VmRSS): {started_rss / 1024:,.1f} MB after start, "
                f"{rss_kb(service.pid) / 1024:,.1f} MB after "
                f"{len(reads) * (args.requests + 10):,} reads"
            )
        finally:
            stop(service)
            stop(emulator)
        print(f"\n{'read':<42} {'p50 ms':>8} {'p99 ms':>8}  plan")
        for read in reads:
            p50, p99 = figures[read.name]
            plan = f"SEQ SCAN of {', '.join(scans[read.name])}" if scans[read.name] else "indexes"
            print(
                f"{read.name:<42} {p50:>8.2f} {p99:>8.2f}  {plan}"
                + (f"  ({read.note})" if read.note else "")
            )
        failing = [name for name, found_scans in scans.items() if found_scans]
        if failing:
            sys.exit(f"sequential scans of orders/payment_intents in: {', '.join(failing)}")
    finally:
        if not args.keep:
            recreate(url, drop_only=True)


if __name__ == "__main__":
    main()
