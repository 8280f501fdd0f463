"""The OpenAPI document `/docs` and `/openapi.json` show: FastAPI's, with every error status an
operation can answer declared with the error envelope and an example of its own, the operations'
tags described, and `Idempotency-Key` on every POST."""

from __future__ import annotations

from typing import Any, get_type_hints

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute, iter_route_contexts

from app import errors
from app.stripe_gateway import StripeGateway

DESCRIPTION = """
Payments in front of Stripe: customers, payment intents, checkout sessions and refunds, with an
order kept for every payment and moved through its lifecycle by Stripe's webhooks; subscriptions
and invoices mirrored from Stripe Billing, so that what a customer is entitled to is answered
without calling Stripe.

Authenticate with `Authorization: Bearer <API key>` (the keys in `API_KEYS`). Every POST accepts
an `Idempotency-Key` header. Errors share one envelope:
`{"error": {"type", "code", "message", "param"}}`.
"""
PUBLIC_PATH = "/api/create-payment-intent"
CONFIG_PATH = "/api/config"
WEBHOOK_PATH = "/webhooks/stripe"
# Operations without an API key (besides /docs and /openapi.json, which are not operations).
HEALTH_PATHS = frozenset({"/health", "/health/live", "/health/ready", "/metrics"})
PUBLIC_OPERATIONS = frozenset(
    {("post", PUBLIC_PATH), ("get", CONFIG_PATH), ("post", WEBHOOK_PATH)}
    | {("get", path) for path in HEALTH_PATHS}
)
ERROR_STATUSES = {
    400: "Invalid request: a parameter (`param` names it), card data in the body or query "
    "(`card_data_refused`), a body nested too deep (`json_too_deep`), or an `Idempotency-Key` "
    "reused with another body.",
    401: "No API key, or an unknown one.",
    402: "Stripe declined the card: `card_error` with Stripe's `code` and `decline_code`.",
    404: "No such object (`param` names the id).",
    409: "The object's state forbids it, or a request with this `Idempotency-Key` is still "
    "running (retry after `Retry-After`).",
    413: "The body is larger than this endpoint accepts.",
    429: "Too many requests from this address: retry after `Retry-After` seconds.",
    500: "An internal error.",
    502: "Stripe refused the service's own credentials (`stripe_auth_error`), or priced a "
    "Checkout Session otherwise than the service (`amount_mismatch`; it was expired): nothing "
    "payable was made.",
    503: "Stripe is unreachable or rate limiting the service, or the outcome of a call is "
    "unknown, or the database is unavailable: retry after `Retry-After` seconds with the same "
    "`Idempotency-Key`.",
}


# What one of each documented error looks like: the real envelope, with its real codes.
def _envelope(type_: str, code: str, message: str, param: str | None = None, **extra: Any) -> Any:
    return {"error": {"type": type_, "code": code, "message": message, "param": param, **extra}}


ERROR_EXAMPLES = {
    400: _envelope(
        "invalid_request_error",
        "parameter_invalid",
        "amount: Input should be greater than 0",
        "amount",
    ),
    401: _envelope(
        "authentication_error",
        "api_key_missing",
        "No API key provided: send `Authorization: Bearer <key>`.",
    ),
    402: _envelope(
        "card_error",
        "card_declined",
        "Your card has insufficient funds.",
        decline_code="insufficient_funds",
        payment_intent="pi_3PqKx2LkdIwHu7ix0xKZ8Qvq",
        order_id="ord_x6Yt0qJk3mZp9sLwQe2R",
    ),
    404: _envelope(
        "invalid_request_error", "resource_missing", "No such order: 'ord_missing'", "id"
    ),
    409: _envelope(
        "idempotency_error",
        "idempotency_key_in_use",
        "A request with this Idempotency-Key is still in progress; retry shortly.",
    ),
    413: _envelope(
        "invalid_request_error",
        "request_too_large",
        "The request body is larger than this endpoint accepts (1048576 bytes).",
    ),
    429: _envelope(
        "rate_limit_error",
        "rate_limited",
        "Too many requests from this address: at most 60 every 60 seconds. Retry after 3 seconds.",
    ),
    500: _envelope("api_error", "internal_error", "An internal error occurred."),
    502: _envelope(
        "api_error",
        "stripe_auth_error",
        "Stripe refused the service's credentials: Invalid API Key provided.",
    ),
    503: _envelope(
        "api_error",
        "stripe_outcome_unknown",
        "Stripe could not be reached; the outcome of this call is unknown. Retry with the same "
        "Idempotency-Key.",
        order_id="ord_x6Yt0qJk3mZp9sLwQe2R",
    ),
}
# The 503 of an operation that changes nothing on Stripe: Stripe unreachable on a read, the
# database unavailable where Stripe is not called at all.
STRIPE_UNAVAILABLE = _envelope("api_error", "stripe_unavailable", "Stripe could not be reached.")
DATABASE_UNAVAILABLE = _envelope(
    "api_error",
    "database_unavailable",
    "The database is unavailable or refused the change; nothing was saved. Retry shortly.",
)
# What a 503 of a write names, kept for the retry with the same Idempotency-Key (none: nothing).
OUTCOME_KEPT = {
    ("post", "/customers"): "customer_row",
    ("post", "/payment-intents"): "order_id",
    ("post", "/checkout-sessions"): "order_id",
    ("post", "/refunds"): "order_id",
    ("post", PUBLIC_PATH): "order_id",
    ("post", "/subscriptions"): "subscription_row",
}
KEPT_EXAMPLES: dict[str, Any] = {
    "order_id": "ord_x6Yt0qJk3mZp9sLwQe2R",
    "customer_row": 42,
    "subscription_row": 42,
}
WEBHOOK_EXAMPLES = {
    400: _envelope(
        "invalid_request_error",
        "webhook_signature_invalid",
        "Invalid Stripe-Signature: No signatures found matching the expected signature for payload",
    ),
    503: _envelope(
        "api_error",
        "order_not_ready",
        "Order 'ord_x6Yt0qJk3mZp9sLwQe2R' is not there yet; deliver this event again.",
    ),
}
RETRY_AFTER = {
    "Retry-After": {
        "description": "Seconds to wait before retrying.",
        "schema": {"type": "integer", "minimum": 1},
        "example": 1,
    }
}
# Operations whose body names other objects (a customer, a payment method, a price, an order):
# an unknown one is a 404. Any operation with an id in its path can be a 404 too.
NAMES_OBJECTS = frozenset(OUTCOME_KEPT)
# Operations that confirm or attach a card, which Stripe may decline (402); the decline of a
# payment intent names its order.
ORDER_PATHS = frozenset({"/payment-intents", "/payment-intents/{intent_id}/confirm"})
DECLINES = frozenset(
    {
        ("post", "/payment-intents"),
        ("post", "/payment-intents/{intent_id}/confirm"),
        ("post", "/customers/{customer_id}/payment-methods"),
        ("post", "/subscriptions"),
    }
)
TAGS = [
    {"name": "customers", "description": "Customers on Stripe, and what each is entitled to."},
    {"name": "payment intents", "description": "One-off payments, each paying an order."},
    {"name": "checkout sessions", "description": "Stripe-hosted payment and subscription pages."},
    {"name": "refunds", "description": "Money back on a paid order."},
    {"name": "orders", "description": "The service's record of every payment."},
    {
        "name": "subscriptions",
        "description": "Recurring billing on Stripe, mirrored locally from its webhooks.",
    },
    {"name": "invoices", "description": "Stripe's invoices, mirrored locally from its webhooks."},
    {
        "name": "events",
        "description": "The service's own events: every change of an order, subscription or "
        "invoice, written with the change.",
    },
    {
        "name": "webhook endpoints",
        "description": "Where subscribers take the service's events: signed HTTP deliveries, "
        "each attempt logged.",
    },
]
IDEMPOTENCY_KEY = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "schema": {"type": "string", "maxLength": 255},
    "example": "order-1234-attempt",
    "description": "Makes the request safe to retry (at most 255 characters, scoped to the API "
    "key, or to the address without one). The same key with the same method, path and body "
    "replays the first answer for 24 hours (`IDEMPOTENCY_TTL_SECONDS`; the replay has "
    "`Idempotent-Replayed: true`); with another body it "
    "is a 400 `idempotency_key_reused`; while the first request is still running, a 409 "
    "`idempotency_key_in_use` (retry after `Retry-After`). The key is not kept after a 5xx "
    "(nor a 401, 409 or 429) or after a refusal given before Stripe was called (a validation "
    "error): a retry with it runs again, resuming what the first request left.",
}


def _error_statuses(method: str, path: str, calls_stripe: bool = True) -> list[int]:
    """The error statuses an operation can answer (`calls_stripe`: it has the Stripe gateway)."""
    if path in ("/health/live", "/metrics"):
        return [500]
    if path in HEALTH_PATHS:
        return [500, 503]
    if path == CONFIG_PATH:
        return [400, 500]  # settings only: a bad query (card data, NUL) or an internal error
    # 400: its parameters, or card data in the query; 503: the database (or Stripe) unavailable.
    statuses = {400, 500, 503}
    if (method, path) not in PUBLIC_OPERATIONS:
        statuses.add(401)
    if "{" in path or (method, path) in NAMES_OBJECTS:
        statuses.add(404)
    if (method, path) in DECLINES:
        statuses.add(402)
    if method == "post":
        statuses.add(409)  # an Idempotency-Key still in flight
    if method in ("post", "put", "patch"):
        statuses.add(413)
    if calls_stripe:
        statuses.add(502)
    if path == PUBLIC_PATH:
        statuses.add(429)
    return sorted(statuses)


def _error_example(method: str, path: str, status: int, calls_stripe: bool) -> Any:
    if path == WEBHOOK_PATH and status in WEBHOOK_EXAMPLES:
        return WEBHOOK_EXAMPLES[status]
    if path in HEALTH_PATHS and status == 503:
        return DATABASE_UNAVAILABLE
    if status == 402 and path not in ORDER_PATHS:
        # A decline outside a payment intent (attaching a card, a subscription's first invoice)
        # names no order.
        error = dict(ERROR_EXAMPLES[402]["error"])
        del error["order_id"]
        return {"error": error}
    if status != 503:
        return ERROR_EXAMPLES[status]
    if not calls_stripe:
        return DATABASE_UNAVAILABLE
    if method == "get":
        return STRIPE_UNAVAILABLE
    error = {k: v for k, v in ERROR_EXAMPLES[503]["error"].items() if k not in KEPT_EXAMPLES}
    if kept := OUTCOME_KEPT.get((method, path)):
        error[kept] = KEPT_EXAMPLES[kept]
    return {"error": error}


def _calls_stripe(app: FastAPI) -> dict[tuple[str, str], bool]:
    """Which operations have the Stripe gateway among their parameters."""
    calls: dict[tuple[str, str], bool] = {}
    for context in iter_route_contexts(app.routes):
        route = context.original_route
        if isinstance(route, APIRoute) and context.path_format:
            gateway = StripeGateway in get_type_hints(route.endpoint).values()
            for method in route.methods or ():
                calls[(method.lower(), context.path_format)] = gateway
    return calls


def document(app: FastAPI) -> dict[str, Any]:
    """FastAPI's document, with every error status an operation can answer declared with the
    envelope's schema and an example of its own (and FastAPI's 422, which this service never
    sends, removed), and `Idempotency-Key` on every POST. The API key's scheme comes from
    `Caller` (app.auth), on exactly the operations that take it."""
    if app.openapi_schema:
        return app.openapi_schema
    spec = get_openapi(
        title=app.title,
        version=app.version,
        description=app.description,
        routes=app.routes,
        tags=_tags(app),
    )
    schemas = spec.setdefault("components", {}).setdefault("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    envelope = errors.ErrorEnvelope.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas.update(envelope.pop("$defs", {}))
    schemas["ErrorEnvelope"] = envelope
    schema = {"$ref": "#/components/schemas/ErrorEnvelope"}
    calls_stripe = _calls_stripe(app)
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            stripe = calls_stripe.get((method, path), False)
            if method == "post":
                parameters = operation.setdefault("parameters", [])
                parameters.append(dict(IDEMPOTENCY_KEY))
            responses: dict[str, Any] = operation.setdefault("responses", {})
            responses.pop("422", None)
            for status in _error_statuses(method, path, stripe):
                responses.setdefault(str(status), {"description": ERROR_STATUSES[status]})
            for code, response in responses.items():
                if code[0] not in "45" or (path, code) == ("/health/ready", "503"):
                    continue
                example = _error_example(method, path, int(code), stripe)
                response["content"] = {"application/json": {"schema": schema, "example": example}}
                if code in ("409", "429") or (code == "503" and path not in HEALTH_PATHS):
                    response["headers"] = RETRY_AFTER
    app.openapi_schema = spec
    return spec


def _tags(app: FastAPI) -> list[dict[str, Any]]:
    """TAGS described, in their order, and any other tag the routes use after them."""
    used = {tag for route in app.routes for tag in getattr(route, "tags", [])}
    described = [tag for tag in TAGS if tag["name"] in used]
    named = {tag["name"] for tag in described}
    return described + [{"name": name} for name in sorted(used - named)]
