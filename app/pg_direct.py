"""The hot paths' statements on Postgres, run on the asyncpg connection itself.

SQLAlchemy Core's execution (parameter processing, execution context, result wrapping, the
greenlet hop into the async driver) cost more CPU than the statement's round trip: 0.13 ms per
one-row INSERT against 0.08 ms here (bench/README.md). Each statement is still written with
Core (so its SQL follows the models) and compiled once for asyncpg; it runs on a connection of
the engine's own pool, in autocommit or in a `transaction`. Errors come out as SQLAlchemy's, as
from its `execute`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, cast

import asyncpg
from sqlalchemy import JSON, Executable
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ClauseElement

from app.db import autocommit, json_text


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


@asynccontextmanager
async def _driver(engine: AsyncEngine) -> AsyncIterator[asyncpg.Connection]:
    """A connection of the engine's pool, as the driver's own, in autocommit; the driver's
    errors raised as SQLAlchemy's."""
    async with autocommit(engine).connect() as connection:
        raw = await connection.get_raw_connection()
        try:
            yield cast(asyncpg.Connection, raw.driver_connection)
        except asyncpg.IntegrityConstraintViolationError as exc:
            raise IntegrityError(None, None, exc) from exc
        except asyncpg.PostgresError as exc:
            raise DBAPIError(None, None, exc) from exc
        except (asyncpg.InterfaceError, OSError) as exc:
            # The connection is broken: the pool must not hand it out again.
            await connection.invalidate()
            raise DBAPIError(None, None, exc, connection_invalidated=True) from exc
