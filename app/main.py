"""The application factory: settings, database, Stripe gateway, routers, middleware."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from app import errors
from app.auth import key_digest
from app.checkout_sessions.router import router as checkout_sessions
from app.config import Settings
from app.customers.router import router as customers
from app.db import create_engine, create_sessionmaker
from app.health import router as health
from app.idempotency import IdempotencyMiddleware
from app.orders.router import router as orders
from app.payment_intents.router import router as payment_intents
from app.public.router import router as public
from app.refunds.router import router as refunds
from app.stripe_gateway import StripeGateway
from app.webhooks.router import router as webhooks

DESCRIPTION = """
Payments in front of Stripe: customers, payment intents, checkout sessions and refunds, with an
order kept for every payment and moved through its lifecycle by Stripe's webhooks.

Authenticate with `Authorization: Bearer <API key>` (the keys in `API_KEYS`). Every POST accepts
an `Idempotency-Key` header. Errors share one envelope:
`{"error": {"type", "code", "message", "param"}}`.
"""


def _configure_logging() -> None:
    """One line per event from `app.*` on stderr (structured JSON logs arrive with issue 5)."""
    logger = logging.getLogger("app")
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    _configure_logging()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = create_engine(settings.database_url)
        app.state.settings = settings
        app.state.engine = engine
        app.state.sessionmaker = create_sessionmaker(engine)
        app.state.stripe = StripeGateway(settings)
        app.state.api_key_digests = [key_digest(k.get_secret_value()) for k in settings.api_keys]
        try:
            yield
        finally:
            await app.state.stripe.close()
            await engine.dispose()

    app = FastAPI(
        title="Payments service",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    errors.install(app)
    for router in (
        customers,
        payment_intents,
        checkout_sessions,
        refunds,
        orders,
        public,
        webhooks,
        health,
    ):
        app.include_router(router)
    app.add_middleware(IdempotencyMiddleware, ttl_seconds=settings.idempotency_ttl_seconds)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["POST", "OPTIONS"],
            allow_headers=["Content-Type", "Idempotency-Key"],
        )
    return app


app = create_app()
