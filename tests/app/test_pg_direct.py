"""app.pg_direct on a real Postgres (`TEST_DATABASE_URL`): it connects as SQLAlchemy does, the
URL's options included, and its errors are SQLAlchemy's, which the callers catch."""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

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

from app import pg_direct
from app.db import autocommit, create_engine

POSTGRES = os.environ.get("TEST_DATABASE_URL")
pytestmark = pytest.mark.skipif(not POSTGRES, reason="TEST_DATABASE_URL is not set")


def with_engine(url: str, work: Callable[[AsyncEngine], Awaitable[Any]]) -> Any:
    async def run() -> Any:
        engine = create_engine(url, 2)
        try:
            return await work(engine)
        finally:
            await pg_direct.close(engine)
            await engine.dispose()

    return asyncio.run(run())


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
    names = Table(
        f"pg_direct_{secrets.token_hex(4)}",
        MetaData(),
        Column("id", Integer, primary_key=True),
        Column("name", String(20), unique=True),
    )
    add = insert(names).values(name=bindparam("name"))

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


def test_the_engine_and_its_autocommit_copy_share_one_pool_closed_with_the_engine() -> None:
    assert POSTGRES is not None
    backend = select(func.pg_backend_pid().label("pid"), func.pg_sleep(0.2))

    async def work(engine: AsyncEngine) -> tuple[set[int], set[int]]:
        # Four statements at once on each, through a pool of 2 (`with_engine`).
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
