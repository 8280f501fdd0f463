"""The hot paths' statements on Postgres, run on asyncpg itself (the payment and webhook paths,
and the relay's claim and record).

SQLAlchemy's execution (its pool's checkout and reset, parameter processing, execution context,
result wrapping, the greenlet hop into the async driver) cost more CPU than the statement's
round trip. Each statement here is still written with Core (so its SQL follows the models),
compiled once for asyncpg, and run in autocommit or in a `transaction` on a connection of the
engine's direct pool: an asyncpg pool beside SQLAlchemy's, one per SQLAlchemy pool (an
`execution_options` copy of the engine shares it), opened on first use and closed with `close`
(or when the engine is disposed). Errors come out as SQLAlchemy's, as from its `execute`.

The direct pool is small (`DATABASE_DIRECT_POOL_SIZE`, 8): its statements are short, never
wait for Stripe, and wait for a lock held elsewhere only briefly (the webhook fast path skips a
locked order; its inbox INSERT waits for a duplicate delivery in flight, within the inbox's lock
timeout), so a few connections keep Postgres's cores busy; with 20, a burst of requests ran 20
statements at once on a 2-core server, and each took longer than waiting for a connection did.
Figures in bench/README.md.
"""

from __future__ import annotations

import asyncio
import weakref
from collections import deque
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, cast

import asyncpg
from sqlalchemy import JSON, Executable, event
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import Pool
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ClauseElement

from app.db import direct_pool_size, json_text


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


class Rollback(Exception):
    """Raised in a `transaction` block to roll it back; raised on out of the block, the
    connection kept."""


@asynccontextmanager
async def transaction(engine: AsyncEngine) -> AsyncIterator[Connection]:
    """A connection in a transaction, committed when the block ends, rolled back when it
    raises."""
    async with _driver(engine) as connection, connection.transaction():
        yield Connection(engine.dialect, connection)


class Connection:
    def __init__(self, dialect: Dialect, driver: asyncpg.Connection) -> None:
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

    async def executemany(self, statement: Executable, params: Sequence[Mapping[str, Any]]) -> None:
        """The statement once per set of parameters, pipelined."""
        compiled = _compiled(statement, self._dialect)
        await self._driver.executemany(compiled.sql, [compiled.args(each) for each in params])


async def close(engine: AsyncEngine) -> None:
    """Close the engine's direct pool, if it was opened."""
    pool = _POOLS.pop(engine.sync_engine.pool, None)
    if pool is not None:
        await pool.close()


@asynccontextmanager
async def _driver(engine: AsyncEngine) -> AsyncIterator[asyncpg.Connection]:
    """A connection of the engine's direct pool, in autocommit; the driver's errors raised as
    SQLAlchemy's."""
    pool = _POOLS.get(engine.sync_engine.pool)
    if pool is None:
        pool = _POOLS[engine.sync_engine.pool] = _Pool(engine)
    try:
        connection = await pool.acquire()
    except _DRIVER_ERRORS as exc:
        raise _sqlalchemy_error(exc) from exc
    try:
        yield connection
    except asyncpg.PostgresError as exc:
        # The server refused the statement: the connection is as good as before (if open).
        pool.release(connection)
        raise _sqlalchemy_error(exc) from exc
    except Rollback:
        pool.release(connection)
        raise
    except BaseException as exc:
        # A broken connection, or one cancelled mid-statement: its state is unknown.
        pool.discard(connection)
        if isinstance(exc, _DRIVER_ERRORS):
            raise _sqlalchemy_error(exc) from exc
        raise
    pool.release(connection)


_DRIVER_ERRORS = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError)


def _sqlalchemy_error(exc: BaseException) -> DBAPIError:
    if isinstance(exc, asyncpg.IntegrityConstraintViolationError):
        return IntegrityError(None, None, exc)
    return DBAPIError(None, None, exc)


class _Pool:
    """At most `DATABASE_DIRECT_POOL_SIZE` connections, opened when first needed and kept; a
    request waits, first come first served, when all are in use. Taking an idle connection and
    giving it back are plain calls: asyncpg's own pool gives a connection back in a task of its
    own, a turn of the event loop that every statement waited for (bench/README.md). A
    connection is never reset: the statements here leave no session state (their settings are
    `SET LOCAL`), and one left in a transaction, or whose statement failed other than by the
    server's refusal, is closed instead of kept."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._options = connect_args(engine)
        self._size = direct_pool_size(engine)
        self._opened = 0
        self._closed = False
        self._idle: list[asyncpg.Connection] = []
        # Each waiter gets a connection, or None: open one (its place is counted).
        self._waiting: deque[asyncio.Future[asyncpg.Connection | None]] = deque()
        event.listen(engine.sync_engine, "engine_disposed", lambda _: self.terminate())

    async def acquire(self) -> asyncpg.Connection:
        while self._idle:
            connection = self._idle.pop()
            if not connection.is_closed():
                return connection
            self._opened -= 1
        if self._opened < self._size:
            self._opened += 1
            return await self._open()
        waiter = asyncio.get_running_loop().create_future()
        self._waiting.append(waiter)
        try:
            given = await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                given = waiter.result()
                if given is None:
                    self._opened -= 1
                self._pass_on(given)
            raise
        return given if given is not None else await self._open()

    def release(self, connection: asyncpg.Connection) -> None:
        if self._closed or connection.is_closed() or connection.is_in_transaction():
            self.discard(connection)
        else:
            self._pass_on(connection)

    def discard(self, connection: asyncpg.Connection) -> None:
        connection.terminate()
        self._opened -= 1
        if not self._closed:
            self._pass_on(None)

    def _pass_on(self, connection: asyncpg.Connection | None) -> None:
        """To the first waiter, else back to the idle ones (a free place stays free)."""
        while self._waiting:
            waiter = self._waiting.popleft()
            if not waiter.done():
                if connection is None:
                    self._opened += 1
                waiter.set_result(connection)
                return
        if connection is not None:
            self._idle.append(connection)

    async def _open(self) -> asyncpg.Connection:
        """A new connection, in the place counted for it (given up if it fails)."""
        try:
            connection: asyncpg.Connection = await asyncpg.connect(**self._options)
        except BaseException:
            self._opened -= 1
            self._pass_on(None)
            raise
        return connection

    async def close(self) -> None:
        """Close the idle connections; those in use are closed when they are given back."""
        self._closed = True
        idle, self._idle = self._idle, []
        await asyncio.gather(*(c.close() for c in idle), return_exceptions=True)

    def terminate(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, []
        for connection in idle:
            connection.terminate()


# By SQLAlchemy's pool, which an engine's `execution_options` copies share: one direct pool each.
_POOLS: weakref.WeakKeyDictionary[Pool, _Pool] = weakref.WeakKeyDictionary()


def connect_args(engine: AsyncEngine) -> dict[str, Any]:
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
