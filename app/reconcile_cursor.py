"""Where `reconcile` has got to in Stripe's lists (`reconcile_cursors`), and the lock that lets
one reconcile run at a time."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.db import engine_of, is_postgres
from app.models.infrastructure import ReconcileCursor

EVENTS = "events"
ORPHANS = "orphans"
# The two-key form of Postgres's advisory locks: a key space of its own, apart from the bigint
# keys the service's processes hold (app.liveness). "reco", "ncil".
LOCK_KEYS = (0x7265636F, 0x6E63696C)


@dataclass(frozen=True)
class Position:
    """A place in one of Stripe's lists: the object there (if it names one) and its `created`."""

    stripe_id: str | None
    created: int


async def load(sessionmaker: async_sessionmaker[AsyncSession], name: str) -> Position | None:
    async with sessionmaker() as session:
        row = await session.get(ReconcileCursor, name)
        return None if row is None else Position(row.stripe_id, row.created)


async def save(
    sessionmaker: async_sessionmaker[AsyncSession], name: str, position: Position
) -> None:
    async with sessionmaker() as session, session.begin():
        row = await session.get(ReconcileCursor, name)
        if row is None:
            session.add(
                ReconcileCursor(name=name, stripe_id=position.stripe_id, created=position.created)
            )
        else:
            row.stripe_id, row.created = position.stripe_id, position.created


@asynccontextmanager
async def exclusive(sessionmaker: async_sessionmaker[AsyncSession]) -> AsyncIterator[bool]:
    """Whether this run holds reconcile's lock, held until the block ends: on Postgres a session
    advisory lock on a connection of its own (it dies with the process); SQLite has one writer
    on one machine and no such lock, so there every run holds it."""
    engine = engine_of(sessionmaker)
    if not is_postgres(engine):
        yield True
        return
    async with engine.connect() as connection:
        held = bool(await connection.scalar(select(func.pg_try_advisory_lock(*LOCK_KEYS))))
        await connection.commit()
        try:
            yield held
        finally:
            if held:
                await connection.scalar(select(func.pg_advisory_unlock(*LOCK_KEYS)))
                await connection.commit()
