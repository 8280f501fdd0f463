"""app.pg_direct on a real Postgres (`TEST_DATABASE_URL`): it connects as SQLAlchemy does, the
URL's options included, its pool has the size it is given, its errors are SQLAlchemy's, which the
callers catch, and the webhook fast path on it never waits for an order's lock."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import pytest
from sqlalchemy import (
    Column,
    Integer,
    MetaData,
    String,
    Table,
    bindparam,
    column,
    func,
    insert,
    literal,
    select,
    table,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.sql.dml import Insert

from app import pg_direct
from app.db import autocommit, create_engine
from app.orders.service import insert_order, link_payment_intent
from app.webhooks import fast_path
from app.webhooks.inbox import Outcome, Receipt
from tests.fixtures.service import postgres_database

POSTGRES = os.environ.get("TEST_DATABASE_URL")
pytestmark = pytest.mark.skipif(not POSTGRES, reason="TEST_DATABASE_URL is not set")


def with_engine(url: str, work: Callable[[AsyncEngine], Awaitable[Any]]) -> Any:
    async def run() -> Any:
        engine = create_engine(url, 20, direct_pool_size=2)
        try:
            return await work(engine)
        finally:
            await pg_direct.close(engine)
            await engine.dispose()

    return asyncio.run(run())


def unique_names() -> tuple[Table, Insert]:
    """A table of its own with a unique `name`, and the INSERT of one `:name`."""
    names = Table(
        f"pg_direct_{secrets.token_hex(4)}",
        MetaData(),
        Column("id", Integer, primary_key=True),
        Column("name", String(20), unique=True),
    )
    return names, insert(names).values(name=bindparam("name"))


def test_the_urls_options_reach_the_driver_as_sqlalchemy_passes_them() -> None:
    assert POSTGRES is not None
    # `ssl` and `prepared_statement_cache_size` are SQLAlchemy's asyncpg options; in a libpq
    # URL asyncpg would send them to the server as settings, which refuses them.
    url = make_url(POSTGRES).update_query_dict(
        {"ssl": "disable", "prepared_statement_cache_size": "0"}
    )

    async def work(engine: AsyncEngine) -> list[int]:
        rows = await pg_direct.fetch(engine, select(literal(7).label("x")), {})
        return [row["x"] for row in rows]

    assert with_engine(url.render_as_string(hide_password=False), work) == [7]


def test_a_unique_violation_is_sqlalchemys_integrity_error_and_writes_nothing() -> None:
    assert POSTGRES is not None
    names, add = unique_names()

    async def work(engine: AsyncEngine) -> tuple[int, type[BaseException] | None, list[str]]:
        async with engine.begin() as connection:
            await connection.run_sync(names.metadata.create_all)
        try:
            first = await pg_direct.execute(engine, add, {"name": "once"})
            error: type[BaseException] | None = None
            try:
                async with pg_direct.transaction(engine) as transaction:
                    await transaction.execute(add, {"name": "other"})
                    await transaction.execute(add, {"name": "once"})
            except IntegrityError as exc:
                error = type(exc)
            rows = await pg_direct.fetch(engine, select(names.c.name).order_by(names.c.id), {})
            return first, error, [row["name"] for row in rows]
        finally:
            async with engine.begin() as connection:
                await connection.run_sync(names.metadata.drop_all)

    first, error, names = with_engine(POSTGRES, work)

    assert first == 1
    assert error is IntegrityError
    # The transaction was rolled back: "other" is not there.
    assert names == ["once"]


def test_executemany_writes_each_set_and_one_refused_set_rolls_them_all_back() -> None:
    """What the relay's record does with its attempts: one statement, many sets, in a
    transaction; a set the server refuses fails the transaction as SQLAlchemy's error."""
    assert POSTGRES is not None
    names, add = unique_names()

    async def work(engine: AsyncEngine) -> tuple[list[str], type[BaseException] | None, list[str]]:
        async with engine.begin() as connection:
            await connection.run_sync(names.metadata.create_all)
        listed = select(names.c.name).order_by(names.c.id)
        try:
            async with pg_direct.transaction(engine) as transaction:
                await transaction.executemany(add, [{"name": "a"}, {"name": "b"}, {"name": "c"}])
            first = [row["name"] for row in await pg_direct.fetch(engine, listed, {})]
            error: type[BaseException] | None = None
            try:
                async with pg_direct.transaction(engine) as transaction:
                    await transaction.executemany(add, [{"name": "d"}, {"name": "a"}])
            except IntegrityError as exc:
                error = type(exc)
            after = [row["name"] for row in await pg_direct.fetch(engine, listed, {})]
            return first, error, after
        finally:
            async with engine.begin() as connection:
                await connection.run_sync(names.metadata.drop_all)

    first, error, after = with_engine(POSTGRES, work)

    assert first == ["a", "b", "c"]
    assert error is IntegrityError
    assert after == ["a", "b", "c"]  # "d" went with the refused set's transaction


def test_a_rollback_asked_for_writes_nothing_and_keeps_the_connection() -> None:
    assert POSTGRES is not None
    names = Table(f"pg_direct_{secrets.token_hex(4)}", MetaData(), Column("name", String(20)))
    add = insert(names).values(name=bindparam("name"))
    backend = select(func.pg_backend_pid().label("pid"))

    async def work(engine: AsyncEngine) -> tuple[int, int, int]:
        async with engine.begin() as connection:
            await connection.run_sync(names.metadata.create_all)
        try:
            inside = 0
            with contextlib.suppress(pg_direct.Rollback):
                async with pg_direct.transaction(engine) as transaction:
                    await transaction.execute(add, {"name": "undone"})
                    inside = (await transaction.fetch(backend, {}))[0]["pid"]
                    raise pg_direct.Rollback
            after = (await pg_direct.fetch(engine, backend, {}))[0]["pid"]
            rows = await pg_direct.fetch(
                engine, select(func.count().label("n")).select_from(names), {}
            )
            return inside, after, rows[0]["n"]
        finally:
            async with engine.begin() as connection:
                await connection.run_sync(names.metadata.drop_all)

    inside, after, count = with_engine(POSTGRES, work)

    assert count == 0
    assert after == inside


def test_the_engine_and_its_autocommit_copy_share_one_pool_closed_with_the_engine() -> None:
    assert POSTGRES is not None
    backend = select(func.pg_backend_pid().label("pid"), func.pg_sleep(0.2))

    async def work(engine: AsyncEngine) -> tuple[set[int], set[int]]:
        # Four statements at once on each, through a direct pool of 2 (`with_engine`; SQLAlchemy's
        # pool is 20).
        calls = [pg_direct.fetch(e, backend, {}) for e in (engine, autocommit(engine)) * 4]
        pids = {row["pid"] for rows in await asyncio.gather(*calls) for row in rows}
        await pg_direct.close(engine)
        for _ in range(50):
            alive = await pg_direct.fetch(
                autocommit(engine),
                select(table("pg_stat_activity", column("pid")).c.pid),
                {},
            )
            left = pids & {row["pid"] for row in alive}
            if not left:
                break
            await asyncio.sleep(0.05)
        await pg_direct.close(engine)
        return pids, left

    pids, left = with_engine(POSTGRES, work)

    assert len(pids) <= 2
    assert left == set()


def test_a_statement_cancelled_midway_gives_up_its_connection_and_its_place() -> None:
    assert POSTGRES is not None
    backend = select(func.pg_backend_pid().label("pid"))
    slow = select(func.pg_backend_pid().label("pid"), func.pg_sleep(5))

    async def work(engine: AsyncEngine) -> tuple[int, list[int]]:
        first = (await pg_direct.fetch(engine, backend, {}))[0]["pid"]
        # The slow statement takes that (idle) connection and is cancelled midway.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(pg_direct.fetch(engine, slow, {}), 0.3)
        # Its connection is closed, not handed out again; its place in the pool of 2 is free.
        after = [
            (await asyncio.wait_for(pg_direct.fetch(engine, backend, {}), 5))[0]["pid"]
            for _ in range(3)
        ]
        return first, after

    first, after = with_engine(POSTGRES, work)

    assert first not in after
    assert len(set(after)) == 1


def test_the_webhook_fast_path_leaves_an_order_another_transaction_holds_to_the_general_path() -> (
    None
):
    assert POSTGRES is not None
    intent = {
        "id": f"pi_held_{secrets.token_hex(4)}",
        "object": "payment_intent",
        "amount": 2000,
        "currency": "usd",
        "status": "requires_payment_method",
        "created": 1_700_000_000,
        "metadata": {},
    }
    succeeded = {**intent, "status": "succeeded", "amount_received": 2000}
    event = {
        "id": f"evt_held_{secrets.token_hex(4)}",
        "object": "event",
        "type": "payment_intent.succeeded",
        "created": 1_700_000_100,
        "data": {"object": succeeded},
    }

    with postgres_database(POSTGRES, "direct") as url:

        async def work(engine: AsyncEngine) -> tuple[Receipt | None, int, Receipt | None, str]:
            order_id = await insert_order(engine, amount=2000, currency="usd", source="test")
            assert await link_payment_intent(engine, order_id, intent, "test")
            held = await asyncpg.connect(
                make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
            )
            try:
                async with held.transaction():
                    await held.execute("SELECT 1 FROM orders WHERE id = $1 FOR UPDATE", order_id)
                    # Bounded: a fast path that waited for the lock would wait for ever here.
                    while_held = await asyncio.wait_for(fast_path.receive(engine, event), 10)
                    stored = await pg_direct.fetch(engine, _EVENT_COUNT, {"id": event["id"]})
            finally:
                await held.close()
            released = await fast_path.receive(engine, event)
            status = await pg_direct.fetch(engine, _ORDER_STATUS, {"id": order_id})
            return while_held, stored[0]["n"], released, status[0]["status"]

        while_held, stored, released, status = with_engine(url, work)

    # Held elsewhere: not waited for, nothing written; the general path takes the event.
    assert while_held is None
    assert stored == 0
    # Released: the fast path applies it.
    assert released is not None
    assert released.outcome is Outcome.APPLIED
    assert status == "paid"


_EVENT_COUNT = select(func.count().label("n")).where(
    table("webhook_events", column("stripe_event_id")).c.stripe_event_id == bindparam("id")
)
_ORDER_STATUS = select(table("orders", column("id"), column("status")).c.status).where(
    column("id") == bindparam("id")
)
