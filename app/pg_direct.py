"""The hot paths' statements on Postgres, run on asyncpg itself.

SQLAlchemy's execution (its pool's checkout and reset, parameter processing, execution context,
result wrapping, the greenlet hop into the async driver) cost more CPU than the statement's
round trip. Each statement here is still written with Core (so its SQL follows the models),
compiled once for asyncpg, and run in autocommit or in a `transaction` on a connection of the
engine's direct pool: an asyncpg pool beside SQLAlchemy's, of the same size, one per SQLAlchemy
pool (an `execution_options` copy of the engine shares it), opened on first use and closed with
`close` (or when the engine is disposed). Errors come out as SQLAlchemy's, as from its
`execute`. Figures in bench/README.md.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import asyncpg
from sqlalchemy import JSON, Executable, event
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import Pool, QueuePool
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ClauseElement

from app.db import json_text

if TYPE_CHECKING:
    from asyncpg.pool import PoolConnectionProxy

    _Pooled = PoolConnectionProxy[asyncpg.Record]


@dataclass(frozen=True, slots=True)
class _Compiled:
    sql: str
    # Per positional parameter: its name, the value when the statement fixes it, and whether
    # it is JSON (serialized here: the driver takes JSON as text).
    names: tuple[str, ...]
    fixed: tuple[Any, ...]
    json: tuple[bool, ...]

    def args(self, params: Mapping[str, Any]) -> list[Any]:
        values = []
        for name, fixed, is_json in zip(self.names, self.fixed, self.json, strict=True):
            value = params[name] if fixed is _REQUIRED else fixed
            values.append(json_text(value) if is_json and value is not None else value)
        return values


_REQUIRED = object()
_COMPILED: dict[int, tuple[Executable, _Compiled]] = {}


def _compiled(statement: Executable, dialect: Dialect) -> _Compiled:
    found = _COMPILED.get(id(statement))
    if found is not None and found[0] is statement:
        return found[1]
    compiled = cast(SQLCompiler, cast(ClauseElement, statement).compile(dialect=dialect))
    names = tuple(compiled.positiontup or ())
    binds = [compiled.binds[name] for name in names]
    result = _Compiled(
        sql=compiled.string,
        names=names,
        fixed=tuple(_REQUIRED if b.required or b.callable else b.value for b in binds),
        json=tuple(isinstance(b.type, JSON) for b in binds),
    )
    _COMPILED[id(statement)] = (statement, result)
    return result


async def fetch(
    engine: AsyncEngine, statement: Executable, params: Mapping[str, Any]
) -> list[asyncpg.Record]:
    """The statement's rows (none for a statement without RETURNING), committed."""
    async with _driver(engine) as connection:
        return await Connection(engine.dialect, connection).fetch(statement, params)


async def execute(engine: AsyncEngine, statement: Executable, params: Mapping[str, Any]) -> int:
    """The statement's row count, committed."""
    async with _driver(engine) as connection:
        return await Connection(engine.dialect, connection).execute(statement, params)


@asynccontextmanager
async def transaction(engine: AsyncEngine) -> AsyncIterator[Connection]:
    """A connection in a transaction, committed when the block ends, rolled back when it
    raises."""
    async with _driver(engine) as connection, connection.transaction():
        yield Connection(engine.dialect, connection)


class Connection:
    def __init__(self, dialect: Dialect, driver: _Pooled) -> None:
        self._dialect = dialect
        self._driver = driver

    async def fetch(self, statement: Executable, params: Mapping[str, Any]) -> list[asyncpg.Record]:
        compiled = _compiled(statement, self._dialect)
        return await self._driver.fetch(compiled.sql, *compiled.args(params))

    async def fetchrow(
        self, statement: Executable, params: Mapping[str, Any]
    ) -> asyncpg.Record | None:
        compiled = _compiled(statement, self._dialect)
        return await self._driver.fetchrow(compiled.sql, *compiled.args(params))

    async def execute(self, statement: Executable, params: Mapping[str, Any]) -> int:
        """The statement's row count."""
        compiled = _compiled(statement, self._dialect)
        status = await self._driver.execute(compiled.sql, *compiled.args(params))
        count = status.rsplit(" ", 1)[-1]
        return int(count) if count.isdigit() else 0


async def close(engine: AsyncEngine) -> None:
    """Close the engine's direct pool, if it was opened."""
    pool = _POOLS.pop(engine.sync_engine.pool, None)
    if pool is not None:
        await pool.close()


@asynccontextmanager
async def _driver(engine: AsyncEngine) -> AsyncIterator[_Pooled]:
    """A connection of the engine's direct pool, in autocommit; the driver's errors raised as
    SQLAlchemy's."""
    pool = _POOLS.get(engine.sync_engine.pool) or await _open_pool(engine)
    try:
        async with pool.acquire() as connection:
            yield connection
    except asyncpg.IntegrityConstraintViolationError as exc:
        raise IntegrityError(None, None, exc) from exc
    except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError) as exc:
        # A broken connection is not handed out again: the pool replaces it.
        raise DBAPIError(None, None, exc) from exc


# By SQLAlchemy's pool, which an engine's `execution_options` copies share: one direct pool each.
_POOLS: weakref.WeakKeyDictionary[Pool, asyncpg.Pool] = weakref.WeakKeyDictionary()
_OPENING: weakref.WeakKeyDictionary[Pool, asyncio.Lock] = weakref.WeakKeyDictionary()


async def _open_pool(engine: AsyncEngine) -> asyncpg.Pool:
    key = engine.sync_engine.pool
    async with _OPENING.setdefault(key, asyncio.Lock()):
        pool = _POOLS.get(key)
        if pool is None:
            pool = await asyncpg.create_pool(
                **_connect_args(engine),
                min_size=0,
                max_size=cast(QueuePool, engine.sync_engine.pool).size(),
                reset=_no_reset,
            )
            _POOLS[key] = pool
            event.listen(engine.sync_engine, "engine_disposed", lambda _: pool.terminate())
        return pool


def _connect_args(engine: AsyncEngine) -> dict[str, Any]:
    """asyncpg's arguments as SQLAlchemy connects (the URL's query included, `ssl` say), less
    its adapter's own options; its statement cache size is asyncpg's (0 behind pgbouncer)."""
    _, options = engine.dialect.create_connect_args(engine.url)
    options = dict(options)
    cache = options.pop("prepared_statement_cache_size", None)
    if cache is not None:
        options["statement_cache_size"] = cache
    for adapter_only in ("prepared_statement_name_func", "async_creator_fn"):
        options.pop(adapter_only, None)
    return options


async def _no_reset(_connection: asyncpg.Connection) -> None:
    """Instead of asyncpg's reset query, a round trip on every release (each statement here):
    these statements leave no session state (their lock timeout is SET LOCAL), and the pool
    itself rolls back a transaction left open."""
