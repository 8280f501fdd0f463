"""The application factory: settings, database, Stripe gateway, routers, middleware."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.utils import get_openapi

from app import docs, errors, pg_direct
from app.auth import key_digest
from app.checkout_sessions.router import router as checkout_sessions
from app.config import ConfigurationError, Settings
from app.customers.router import router as customers
from app.db import create_engine, create_sessionmaker
from app.demo.router import router as demo
from app.health import router as health
from app.idempotency import IdempotencyMiddleware
from app.liveness import Holder
from app.log import configure_logging
from app.observability import Metrics, ObservabilityMiddleware, current_metrics
from app.orders.router import router as orders
from app.payment_intents.router import router as payment_intents
from app.public.router import router as public
from app.refunds.router import router as refunds
from app.security import SecurityMiddleware, make_rate_limiter
from app.stripe_gateway import StripeGateway
from app.webhooks.router import router as webhooks

DESCRIPTION = """
Payments in front of Stripe: customers, payment intents, checkout sessions and refunds, with an
order kept for every payment and moved through its lifecycle by Stripe's webhooks.

Authenticate with `Authorization: Bearer <API key>` (the keys in `API_KEYS`). Every POST accepts
an `Idempotency-Key` header. Errors share one envelope:
`{"error": {"type", "code", "message", "param"}}`.
"""
PUBLIC_PATH = "/api/create-payment-intent"
WEBHOOK_PATH = "/webhooks/stripe"
# Operations without an API key (besides /docs and /openapi.json, which are not operations).
HEALTH_PATHS = frozenset({"/health", "/health/live", "/health/ready", "/metrics"})
PUBLIC_OPERATIONS = frozenset(
    {("post", PUBLIC_PATH), ("post", WEBHOOK_PATH)} | {("get", path) for path in HEALTH_PATHS}
)
ERROR_STATUSES = {
    400: "Invalid request: a parameter (`param` names it), card data in the body or query "
    "(`card_data_refused`), a body nested too deep (`json_too_deep`), or an `Idempotency-Key` "
    "reused with another body.",
    401: "No API key, or an unknown one.",
    404: "No such object (`param` names the id).",
    409: "The object's state forbids it, or a request with this `Idempotency-Key` is still "
    "running (retry after `Retry-After`).",
    413: "The body is larger than this endpoint accepts.",
    429: "Too many requests from this address: retry after `Retry-After` seconds.",
    500: "An internal error.",
    502: "Stripe answered with an error the service did not expect.",
    503: "Stripe is unreachable or rate limiting the service, or the outcome of a call is "
    "unknown: retry after `Retry-After` seconds with the same `Idempotency-Key`.",
}


def _error_statuses(method: str, path: str) -> list[int]:
    if path in ("/health/live", "/metrics"):
        return [500]
    if path in HEALTH_PATHS:
        return [500, 503]
    statuses = [400, 404, 500, 502, 503]
    if (method, path) not in PUBLIC_OPERATIONS:
        statuses.append(401)
    if method in ("post", "put", "patch", "delete"):
        statuses += [409, 413]
    if path == PUBLIC_PATH:
        statuses.append(429)
    return statuses


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's document, with every error status an operation can answer declared with the
    envelope's schema (and FastAPI's 422, which this service never sends, removed)."""
    if app.openapi_schema:
        return app.openapi_schema
    spec = get_openapi(
        title=app.title, version=app.version, description=app.description, routes=app.routes
    )
    schemas = spec.setdefault("components", {}).setdefault("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    envelope = errors.ErrorEnvelope.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas.update(envelope.pop("$defs", {}))
    schemas["ErrorEnvelope"] = envelope
    content = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorEnvelope"}}}
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            responses: dict[str, Any] = operation.setdefault("responses", {})
            responses.pop("422", None)
            for status in _error_statuses(method, path):
                responses.setdefault(str(status), {"description": ERROR_STATUSES[status]})
            for code, response in responses.items():
                if code[0] in "45" and (path, code) != ("/health/ready", "503"):
                    response["content"] = content
    app.openapi_schema = spec
    return spec


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
        _tune_gc()
        try:
            yield
        finally:
            current_metrics.reset(token)
            await app.state.stripe.close()
            await limiter.close()
            await app.state.holder.close()
            await pg_direct.close(engine)
            await engine.dispose()

    app = FastAPI(
        title="Payments service",
        version="0.1.0",
        description=DESCRIPTION,
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
        refunds,
        orders,
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
        public_paths=frozenset({PUBLIC_PATH}),
        public_max_body=settings.public_max_body_bytes,
        rate=settings.public_rate,
        limiter=limiter,
        card_exempt=frozenset({WEBHOOK_PATH}),
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
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


try:
    app = create_app()
except ConfigurationError as error:
    # A clean exit for `uvicorn app.main:app`: the message, no traceback, no setting's value.
    raise SystemExit(f"payments service: refusing to start: {error}") from None
