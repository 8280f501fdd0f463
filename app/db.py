"""The engine, and the session dependency: one transaction per request, committed before the
response is sent and rolled back on any error. Services flush; they never commit."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Annotated, Any

from fastapi import Depends, Request
from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)


def _json_default(value: Any) -> Any:
    # Stripe's `*_decimal` fields (`unit_amount_decimal`) arrive as Decimal; Stripe sends them
    # as strings, and so do we.
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _json_serializer(value: Any) -> str:
    return json.dumps(value, default=_json_default)


def create_engine(url: str) -> AsyncEngine:
    options: dict[str, Any] = {"pool_pre_ping": True, "json_serializer": _json_serializer}
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        options = {"connect_args": {"timeout": 30}, "json_serializer": _json_serializer}
    else:
        options.update(pool_size=20, max_overflow=20)
    engine = create_async_engine(url, **options)
    if parsed.get_backend_name() == "sqlite":
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    return engine


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
            await session.commit()


# `scope="function"`: the commit runs when the endpoint returns, before the response is sent.
Session = Annotated[AsyncSession, Depends(_session, scope="function")]


def is_postgres(session: AsyncSession) -> bool:
    return session.get_bind().dialect.name == "postgresql"
