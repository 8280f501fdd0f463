"""Request ids, one log line per request, and the Prometheus metrics of one app.

Each app owns a `Metrics` (its own `CollectorRegistry`, so apps started in one process do not
collide). `ObservabilityMiddleware`, the outermost layer, gives every request an id (the
caller's `X-Request-Id` when it is a sane token, else a new one), returns it in the response's
`X-Request-Id`, makes it and the app's metrics available to all code the request runs
(`request_id`, `current_metrics` context variables), then logs one `request` line and counts the
request by route template and status.

Code that has no handle on the app (webhook handlers, `orders.service.move`) records through
`record_webhook` and `record_transition`, which do nothing outside a request or the app's
lifespan.

Batch commands (`reconcile`, `audit`) have no server to scrape: `write_job_metrics` leaves their
counts in a file for node_exporter's textfile collector.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from contextvars import ContextVar
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    write_to_textfile,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.log import request_id

__all__ = [
    "CONTENT_TYPE_LATEST",
    "Metrics",
    "ObservabilityMiddleware",
    "current_metrics",
    "record_transition",
    "record_webhook",
    "request_id",
]

log = logging.getLogger("app.http")
order_log = logging.getLogger("app.orders")
REQUEST_ID_HEADER = "x-request-id"
_VALID_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
# Path label of a request no route matched: never the raw path (unbounded label values).
UNMATCHED = "unmatched"
WEBHOOK_OUTCOMES = ("applied", "duplicate", "ignored", "stale", "failed")


class Metrics:
    """The app's metrics, in a registry of its own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "http_requests", "HTTP requests answered.", ["method", "route", "status"], registry=r
        )
        self.request_seconds = Histogram(
            "http_request_duration_seconds",
            "Time to answer an HTTP request.",
            ["method", "route", "status"],
            registry=r,
        )
        self.stripe_seconds = Histogram(
            "stripe_request_duration_seconds",
            "Time of each Stripe API attempt, by operation and outcome (ok or the SDK's error).",
            ["operation", "outcome"],
            registry=r,
        )
        self.stripe_errors = Counter(
            "stripe_errors", "Stripe API attempts that failed.", ["operation", "error"], registry=r
        )
        self.webhooks = Counter(
            "webhook_events",
            "Webhook deliveries by event type and outcome: applied, duplicate, ignored, stale, "
            "failed (answered 503 so that Stripe delivers it again).",
            ["type", "outcome"],
            registry=r,
        )
        self.transitions = Counter(
            "order_transitions",
            "Order status transitions applied (counted when written, before the commit).",
            ["from_status", "to_status"],
            registry=r,
        )
        self.inbox_age = Gauge(
            "webhook_inbox_oldest_unprocessed_age_seconds",
            "Age of the oldest stored webhook event not yet applied (0 when none). Events are "
            "stored and applied in one transaction, so this stays 0 unless that changes.",
            registry=r,
        )

        self.events_handed_on = Counter(
            "events_handed_on",
            "Outbox events handed on by this process's relay (to RabbitMQ when configured, and "
            "into one delivery per listening endpoint).",
            registry=r,
        )
        self.deliveries = Counter(
            "event_deliveries",
            "Delivery attempts to subscribers' endpoints by endpoint and outcome: succeeded, "
            "retry (failed, tried again later), failed (failed, retry window over).",
            ["endpoint", "outcome"],
            registry=r,
        )
        self.outbox_depth = Gauge(
            "outbox_unpublished_events", "Events not yet handed on by a relay.", registry=r
        )
        self.outbox_age = Gauge(
            "outbox_oldest_unpublished_age_seconds",
            "Age of the oldest event not yet handed on (0 when none).",
            registry=r,
        )
        self.deliveries_pending = Gauge(
            "event_deliveries_pending", "Deliveries not yet succeeded nor given up.", registry=r
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)


current_metrics: ContextVar[Metrics | None] = ContextVar("current_metrics", default=None)


def write_job_metrics(path: str, job: str, counts: dict[str, int]) -> None:
    """A batch command's counts of its last run, in Prometheus's text format, written to `path`
    atomically (`payments_<job>_last_run{count=…}` and its end time)."""
    registry = CollectorRegistry()
    gauge = Gauge(
        f"payments_{job}_last_run", f"Counts of the last `{job}` run.", ["count"], registry=registry
    )
    for name, value in counts.items():
        gauge.labels(name).set(value)
    Gauge(
        f"payments_{job}_last_run_timestamp_seconds",
        f"When the last `{job}` run ended.",
        registry=registry,
    ).set_to_current_time()
    write_to_textfile(path, registry)


def record_webhook(event_type: str, outcome: str) -> None:
    metrics = current_metrics.get()
    if metrics is not None:
        metrics.webhooks.labels(event_type, outcome).inc()


def record_transition(order_id: str, from_status: str, to_status: str, source: str) -> None:
    """Log and count an order's status change (from `orders.service.move`)."""
    order_log.info(
        "order %s %s -> %s (%s)",
        order_id,
        from_status,
        to_status,
        source,
        extra={
            "order_id": order_id,
            "from_status": from_status,
            "to_status": to_status,
            "source": source,
        },
    )
    metrics = current_metrics.get()
    if metrics is not None:
        metrics.transitions.labels(from_status, to_status).inc()


def _route(scope: Scope) -> str:
    route: Any = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else UNMATCHED


class ObservabilityMiddleware:
    """Pure ASGI: request id in and out, one log line and the metrics of every HTTP request."""

    def __init__(self, app: ASGIApp, *, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"x-request-id"), "")
        rid = given if _VALID_ID.fullmatch(given) else uuid.uuid4().hex
        id_token = request_id.set(rid)
        metrics_token = current_metrics.set(self.metrics)
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = [(k, v) for k, v in message.get("headers", []) if k != b"x-request-id"]
                headers.append((b"x-request-id", rid.encode("latin-1")))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            duration = time.perf_counter() - started
            method, route = scope["method"], _route(scope)
            self.metrics.requests.labels(method, route, str(status)).inc()
            self.metrics.request_seconds.labels(method, route, str(status)).observe(duration)
            log.info(
                "%s %s %s",
                method,
                scope["path"],
                status,
                extra={
                    "method": method,
                    "path": scope["path"],
                    "route": route,
                    "status": status,
                    "duration_ms": round(duration * 1000, 1),
                },
            )
            current_metrics.reset(metrics_token)
            request_id.reset(id_token)
