"""The engine, and the session dependency: one transaction per request, committed before the
response is sent and rolled back on any error. Services flush; they never commit, except where
a write must be committed before Stripe is called or is one statement on its own (`autocommit`:
the Idempotency-Key rows; on Postgres those run on the driver directly, `app.pg_direct`). The
creates that call Stripe with a key derived from their own row (`POST /payment-intents`, the
public one, `POST /customers`, `POST /checkout-sessions`) and the webhook endpoint open no
request session: they take the sessionmaker (`Sessions`) and commit each of their steps
themselves, so that what they made outlives an unknown Stripe outcome."""

from __future__ import annotations

import weakref
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Annotated, Any

import orjson
from fastapi import Depends, Request
from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import Pool


def _json_default(value: Any) -> Any:
    # Stripe's `*_decimal` fields (`unit_amount_decimal`) arrive as Decimal; Stripe sends them
    # as strings, and so do we.
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def json_text(value: Any) -> str:
    """A JSON column's value as stored."""
    return orjson.dumps(value, default=_json_default).decode()


DIRECT_POOL_SIZE = 8  # `DATABASE_DIRECT_POOL_SIZE`'s default


def create_engine(
    url: str, pool_size: int = 20, direct_pool_size: int = DIRECT_POOL_SIZE
) -> AsyncEngine:
    """The engine, its pool of `pool_size` connections, and on Postgres the size of the direct
    pool that app.pg_direct opens beside it (`direct_pool_size`)."""
    # No pre-ping: it cost a round trip on every checkout. A connection the server dropped
    # fails its request with a 503 (a retry succeeds), and SQLAlchemy replaces the pool's
    # connections.
    options: dict[str, Any] = {"json_serializer": json_text}
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        options = {"connect_args": {"timeout": 30}, "json_serializer": json_text}
    else:
        # No overflow: connections opened past the pool's size are closed as soon as they are
        # returned, and opening them again under load cost more CPU than the requests did.
        # Past `pool_size` in use, a request waits for a connection (at most 30 s).
        options.update(pool_size=pool_size, max_overflow=0)
    engine = create_async_engine(url, **options)
    if parsed.get_backend_name() == "sqlite":
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    _DIRECT_POOL_SIZES[engine.sync_engine.pool] = direct_pool_size
    return engine


def direct_pool_size(engine: AsyncEngine) -> int:
    return _DIRECT_POOL_SIZES.get(engine.sync_engine.pool, DIRECT_POOL_SIZE)


# By SQLAlchemy's pool, which an engine's `execution_options` copies share.
_DIRECT_POOL_SIZES: weakref.WeakKeyDictionary[Pool, int] = weakref.WeakKeyDictionary()


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


async def _session(request: Request) -> AsyncIterator[AsyncSession]:
    sessionmaker: async_sessionmaker[AsyncSession] = request.app.state.sessionmaker
    async with sessionmaker() as session:
        try:
            yield session
        except BaseException:
            await session.rollback()
            raise
        else:
            if session.in_transaction():
                await session.commit()


# `scope="function"`: the commit runs when the endpoint returns, before the response is sent.
Session = Annotated[AsyncSession, Depends(_session, scope="function")]


async def _sessions(request: Request) -> async_sessionmaker[AsyncSession]:
    # `async`: FastAPI would run a plain function in its thread pool, a thread hop per request.
    sessions: async_sessionmaker[AsyncSession] = request.app.state.sessionmaker
    return sessions


# For an endpoint that commits on its own (`sessions.begin()` blocks, app.pg_direct): the app's
# sessionmaker, and no session opened for the request.
Sessions = Annotated[async_sessionmaker[AsyncSession], Depends(_sessions)]


def engine_of(sessions: async_sessionmaker[AsyncSession]) -> AsyncEngine:
    engine = sessions.kw["bind"]
    assert isinstance(engine, AsyncEngine)
    return engine


def is_postgres(executor: AsyncSession | AsyncConnection | AsyncEngine) -> bool:
    bind = executor.get_bind() if isinstance(executor, AsyncSession) else executor
    return bind.dialect.name == "postgresql"


def autocommit(engine: AsyncEngine) -> AsyncEngine:
    """The same pool, for work that is one statement: each statement commits on its own, with
    no BEGIN and COMMIT round trips around it. Made once per engine."""
    found = _AUTOCOMMIT.get(engine)
    if found is None:
        found = _AUTOCOMMIT[engine] = engine.execution_options(isolation_level="AUTOCOMMIT")
    return found


_AUTOCOMMIT: weakref.WeakKeyDictionary[AsyncEngine, AsyncEngine] = weakref.WeakKeyDictionary()
