"""Whether the process that claimed in-flight work is still alive, as other processes see it.

A request that claims an `Idempotency-Key` records this process's holder key in the claim. On
Postgres the process holds a session advisory lock on that key, on a connection of its own, for
as long as it lives: when the process dies (kill -9 included) its connection closes and Postgres
releases the lock at once. Another process that can take the lock (`pg_try_advisory_xact_lock`)
knows the claim's holder is dead and takes the claim over without waiting for its lease. On
SQLite (one process, the sandbox) there is no holder: the lease alone decides.

Should the lock's connection drop while the process lives, its claims look abandoned and a
retry may run beside the first request: both then send Stripe the same idempotency key (it is
derived from the order or row, not from the claim), so Stripe still acts once.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time

import asyncpg
from sqlalchemy.ext.asyncio import AsyncEngine

from app.db import is_postgres
from app.pg_direct import connect_args

log = logging.getLogger("app.liveness")
CONNECT_TIMEOUT_SECONDS = 5
# After a failed attempt, claims go without a holder for this long before the next attempt, so a
# database that is down does not make every request wait for a connection.
RETRY_AFTER_SECONDS = 5
_UNREACHABLE = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError)


class Holder:
    """This process's holder key, and on Postgres the connection that holds its lock."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self.key = secrets.randbits(62) + 1  # a positive bigint
        self._connection: asyncpg.Connection | None = None
        self._opening = asyncio.Lock()
        self._next_attempt = 0.0

    async def current(self) -> int | None:
        """The key to record in a claim: None on SQLite, or while the lock cannot be held (the
        database is unreachable; the claim then lives by its lease)."""
        if not is_postgres(self._engine):
            return None
        if self._connection is not None and not self._connection.is_closed():
            return self.key
        if time.monotonic() < self._next_attempt:
            return None
        async with self._opening:
            if self._connection is None or self._connection.is_closed():
                options = {"timeout": CONNECT_TIMEOUT_SECONDS, **connect_args(self._engine)}
                try:
                    connection = await asyncpg.connect(**options)
                    await connection.execute("SELECT pg_advisory_lock($1)", self.key)
                except _UNREACHABLE as exc:
                    log.warning("liveness lock not held: %s", type(exc).__name__)
                    self._next_attempt = time.monotonic() + RETRY_AFTER_SECONDS
                    return None
                self._connection = connection
        return self.key

    async def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None and not connection.is_closed():
            await connection.close()
