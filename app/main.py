"""The application factory: settings, database, Stripe gateway, routers, middleware."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from app import docs, errors, openapi, pg_direct
from app.auth import key_digest
from app.checkout_sessions.router import router as checkout_sessions
from app.config import ConfigurationError, Settings
from app.customers.router import router as customers
from app.db import create_engine, create_sessionmaker
from app.demo.router import router as demo
from app.events.router import router as events
from app.health import router as health
from app.idempotency import IdempotencyMiddleware
from app.invoices.router import router as invoices
from app.liveness import Holder
from app.log import configure_logging
from app.observability import Metrics, ObservabilityMiddleware, current_metrics
from app.orders.router import router as orders
from app.payment_intents.router import router as payment_intents
from app.public.router import router as public
from app.refunds.router import router as refunds
from app.relay.runner import Relay
from app.security import SecurityMiddleware, make_rate_limiter
from app.startup import log_banner
from app.stripe_gateway import StripeGateway
from app.subscribers.router import event_deliveries
from app.subscribers.router import router as webhook_endpoints
from app.subscriptions.router import router as subscriptions
from app.webhooks.router import router as webhooks


def _tune_gc() -> None:
    """Move what start-up loaded out of the cyclic collector's reach and run it less often.

    Every in-flight request keeps ORM, Stripe and HTTP objects alive; with Python's default
    thresholds (700, 10, 10) the collections that walk them took 40% of the service's CPU at 200
    requests in flight (bench/README.md). Memory use grows by a few MB at most."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    redact = configure_logging(
        fmt=settings.log_format, level=settings.log_level, secrets=settings.secrets()
    )
    metrics = Metrics()
    limiter = make_rate_limiter(
        settings.rate_limit_redis_url.get_secret_value() if settings.rate_limit_redis_url else None
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = create_engine(
            settings.database_url,
            settings.database_pool_size,
            settings.database_direct_pool_size,
        )
        app.state.settings = settings
        app.state.engine = engine
        app.state.sessionmaker = create_sessionmaker(engine)
        app.state.holder = Holder(engine)
        app.state.stripe = StripeGateway(settings, metrics)
        app.state.api_key_digests = [key_digest(k.get_secret_value()) for k in settings.api_keys]
        # Tasks started from the lifespan record into this app's metrics too.
        token = current_metrics.set(metrics)
        relay = None
        if settings.events_relay == "in-process":
            relay = Relay(app.state.sessionmaker, settings, metrics)
            relay.start()
        _tune_gc()
        log_banner(settings)
        try:
            yield
        finally:
            if relay is not None:
                await relay.close()
            current_metrics.reset(token)
            await app.state.stripe.close()
            await limiter.close()
            await app.state.holder.close()
            await pg_direct.close(engine)
            await engine.dispose()

    app = FastAPI(
        title="Payments service",
        version="0.1.0",
        description=openapi.DESCRIPTION,
        lifespan=lifespan,
        # Served by app.docs from the service's own copy of their assets, not a CDN's.
        docs_url=None,
        redoc_url=None,
    )
    app.state.metrics = metrics
    errors.install(app)
    docs.install(app)
    for router in (
        customers,
        payment_intents,
        checkout_sessions,
        subscriptions,
        invoices,
        refunds,
        orders,
        events,
        event_deliveries,
        webhook_endpoints,
        public,
        webhooks,
        health,
        demo,
    ):
        app.include_router(router)
    # The last added is the outermost. From the outside in: observability, CORS, the security
    # checks, Idempotency-Key, the routes.
    app.add_middleware(
        IdempotencyMiddleware,
        ttl_seconds=settings.idempotency_ttl_seconds,
        deferred_paths=frozenset({"/payment-intents"}),
    )
    app.add_middleware(
        SecurityMiddleware,
        redact=redact,
        max_body=settings.max_body_bytes,
        public_paths=frozenset({openapi.PUBLIC_PATH}),
        public_max_body=settings.public_max_body_bytes,
        rate=settings.public_rate,
        limiter=limiter,
        card_exempt=frozenset({openapi.WEBHOOK_PATH}),
    )
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["POST", "OPTIONS"],
            allow_headers=["Content-Type", "Idempotency-Key"],
            expose_headers=["Retry-After"],
        )
    # The request id is set before, and the request logged after, everything else.
    app.add_middleware(ObservabilityMiddleware, metrics=metrics)
    app.openapi = lambda: openapi.document(app)  # type: ignore[method-assign]
    return app


try:
    app = create_app()
except ConfigurationError as error:
    # A clean exit for `uvicorn app.main:app`: the message, no traceback, no setting's value.
    raise SystemExit(f"payments service: refusing to start: {error}") from None
