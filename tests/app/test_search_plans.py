"""Every documented list and search form can be answered by an index on Postgres.

The reads of `make bench-scale` (bench/scale_reads.py), run through the service's own functions
on a few thousand loaded rows; each statement they send is EXPLAINed with `enable_seqscan = off`
(so a sequential scan in the plan means no index can serve it) and must not scan `orders` or
`payment_intents` sequentially. The rows the indexed plan returns must be the rows a plan with
index scans disabled returns, so an index never changes an answer. The figures at 1M rows are
`make bench-scale`'s; no timing here.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

from bench import scale, scale_reads
from tests.fixtures.service import postgres_database

POSTGRES = os.environ.get("TEST_DATABASE_URL")
pytestmark = pytest.mark.skipif(not POSTGRES, reason="TEST_DATABASE_URL is not set")
ROWS = 4000

PLACEHOLDER = scale_reads.Sample(
    customer="",
    hot_customer="",
    order_ref="",
    other_order_ref="",
    created_mid=0,
    created_old=0,
    created_exact=0,
    amount_high=0,
    amount_exact=0,
    deep_order="",
    deep_paid_order="",
    deep_intent="",
    deep_succeeded_intent="",
    deep_search_position=(0, 0),
)
NAMES = [read.name for read in scale_reads.reads(PLACEHOLDER)]
# Forms whose sample values match no row by design.
EMPTY = {"search status (no match)", "search metadata (no match)"}
# A rare amount in one currency: may match nothing among a few thousand rows.
RARE = {"search amount AND currency"}


@pytest.fixture(scope="module")
def loaded() -> Iterator[tuple[str, dict[str, scale_reads.Read]]]:
    assert POSTGRES is not None
    with postgres_database(POSTGRES, "plans") as url:
        asyncio.run(scale.load(url, ROWS))
        asyncio.run(_analyze(url))
        sample = asyncio.run(scale.sample(url))
        yield url, {read.name: read for read in scale_reads.reads(sample)}


async def _analyze(url: str) -> None:
    engine = create_async_engine(url, isolation_level="AUTOCOMMIT")
    async with engine.connect() as connection:
        await connection.exec_driver_sql("VACUUM ANALYZE")
    await engine.dispose()


async def _plans_and_rows(
    url: str, read: scale_reads.Read
) -> tuple[int, list[tuple[Any, list[Any], list[Any]]]]:
    """The rows the read returns and, for each statement it sends: its plan with sequential
    scans discouraged, its rows that way, and its rows with index scans disabled."""
    engine = create_async_engine(url)
    out = []
    try:
        async with AsyncSession(engine) as session:
            count, sent = await scale_reads.statements(session, read)
            connection = await session.connection()
            for statement, parameters in sent:
                await connection.exec_driver_sql("SET LOCAL enable_seqscan = off")
                plan = (
                    await connection.exec_driver_sql(
                        "EXPLAIN (FORMAT JSON) " + statement, parameters
                    )
                ).scalar()
                indexed = (await connection.exec_driver_sql(statement, parameters)).all()
                await connection.exec_driver_sql("SET LOCAL enable_seqscan = on")
                await connection.exec_driver_sql("SET LOCAL enable_indexscan = off")
                await connection.exec_driver_sql("SET LOCAL enable_bitmapscan = off")
                scanned = (await connection.exec_driver_sql(statement, parameters)).all()
                await connection.exec_driver_sql("SET LOCAL enable_indexscan = on")
                await connection.exec_driver_sql("SET LOCAL enable_bitmapscan = on")
                out.append((json.loads(plan) if isinstance(plan, str) else plan, indexed, scanned))
            await session.rollback()
    finally:
        await engine.dispose()
    return count, out


class TestSearchPlans:
    @pytest.mark.parametrize("name", NAMES)
    def test_an_index_serves_the_read_and_gives_the_same_rows(
        self, loaded: tuple[str, dict[str, scale_reads.Read]], name: str
    ) -> None:
        url, reads = loaded
        count, results = asyncio.run(_plans_and_rows(url, reads[name]))

        assert results, "the read sent no SQL"
        for plan, indexed, scanned in results:
            assert scale_reads.seq_scans(plan) == [], json.dumps(plan, indent=1)[:3000]
            assert [tuple(row) for row in indexed] == [tuple(row) for row in scanned]
        assert 0 < count <= scale_reads.PAGE or name in EMPTY | RARE
        assert count == 0 or name not in EMPTY

    def test_the_metadata_search_stays_case_insensitive_on_values_and_exact_on_keys(
        self, loaded: tuple[str, dict[str, scale_reads.Read]]
    ) -> None:
        # Stripe: "metadata['key']:'value'" matches exactly, case-insensitively on the value;
        # the GIN test lower-cases keys too, and the exact comparison must undo that widening.
        url, _ = loaded
        upper_value = scale_reads.Read(
            "v", scale_reads.SEARCH, {"query": "metadata['campaign']:'BLACKFRIDAY'"}
        )
        upper_key = scale_reads.Read(
            "k", scale_reads.SEARCH, {"query": "metadata['CAMPAIGN']:'blackfriday'"}
        )

        async def count(read: scale_reads.Read) -> int:
            engine = create_async_engine(url)
            try:
                async with AsyncSession(engine) as session:
                    return await scale_reads.run(session, read)
            finally:
                await engine.dispose()

        assert asyncio.run(count(upper_value)) == scale_reads.PAGE
        assert asyncio.run(count(upper_key)) == 0

    def test_the_check_sees_a_sequential_scan(
        self, loaded: tuple[str, dict[str, scale_reads.Read]]
    ) -> None:
        # A filter no index serves (a key inside the stored Stripe object): the check must fail.
        url, _ = loaded

        async def plan() -> Any:
            engine = create_async_engine(url)
            try:
                async with engine.connect() as connection:
                    await connection.exec_driver_sql("SET enable_seqscan = off")
                    return (
                        await connection.exec_driver_sql(
                            "EXPLAIN (FORMAT JSON) SELECT id FROM payment_intents "
                            "WHERE data->>'livemode' = 'true'"
                        )
                    ).scalar()
            finally:
                await engine.dispose()

        found = asyncio.run(plan())
        assert scale_reads.seq_scans(json.loads(found) if isinstance(found, str) else found) == [
            "payment_intents"
        ]
