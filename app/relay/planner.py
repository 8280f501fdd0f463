"""The relay's transactions on Postgres, planned as walks of the indexes they were written for.

Every statement the relay runs in a burst is a lookup by key or an ordered walk of an index
that stops at a `LIMIT`. A burst is exactly when the planner's statistics lag: on a table
analysed while it was small (a new one, or one between autovacuum's passes), it took tens of
thousands of rows for a few dozen and chose full scans, bitmap scans and sorts. Each lease, read
and settle then scanned every delivery, and each hand-on sorted every unpublished event, so that
the cost of a batch grew with the backlog (bench/README.md, "Events out"). Turning those plan
types off for the transaction leaves the planner the index walks only; statistics then decide
nothing the relay depends on.
"""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.db import is_postgres

INDEX_WALKS = select(
    func.set_config("enable_seqscan", "off", True),
    func.set_config("enable_bitmapscan", "off", True),
    func.set_config("enable_sort", "off", True),
    # A full scan that no index can replace (the endpoints by status) still runs, at a cost
    # inflated past JIT's threshold: compiling it took 30 ms.
    func.set_config("jit", "off", True),
)


async def walk_indexes(session: AsyncSession) -> None:
    """For the rest of the session's transaction, on Postgres: no full scan, no bitmap scan, no
    sort where an index can serve, and no JIT."""
    if is_postgres(session):
        await session.execute(INDEX_WALKS)
