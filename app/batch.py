"""What a batch command (`reconcile`, `audit`, `replay-event`) runs with: the database's sessions
and the Stripe gateway, opened for the run and closed after it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.config import Settings
from app.db import create_engine, create_sessionmaker
from app.stripe_gateway import StripeGateway


@asynccontextmanager
async def connected(
    settings: Settings,
) -> AsyncIterator[tuple[async_sessionmaker[AsyncSession], StripeGateway]]:
    engine = create_engine(
        settings.database_url, settings.database_pool_size, settings.database_direct_pool_size
    )
    gateway = StripeGateway(settings)
    try:
        yield create_sessionmaker(engine), gateway
    finally:
        await gateway.close()
        await engine.dispose()
