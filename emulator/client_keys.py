"""Publishable keys (`pk_test_…`): what a browser's Stripe.js may call, and what it sees.

Stripe lets a publishable key make only the client-side calls: retrieve and confirm one
PaymentIntent whose `client_secret` it holds, and create a card PaymentMethod. Every other call
is refused with a 401 saying to use a secret key. Stripe.js sends the key in the `key` parameter
(form body or query string), so no preflight is needed; a `Bearer pk_…` header works too.

A PaymentIntent answered to a publishable key carries only the fields the API reference marks
"retrievable with publishable key" (no `metadata`, `customer` or charges); metadata is redacted
from every object (https://docs.stripe.com/metadata: "We redact metadata from objects in
response to publishable key requests").
"""

from __future__ import annotations

import hmac
from typing import TYPE_CHECKING, Any

from emulator.errors import StripeError, invalid_request

if TYPE_CHECKING:
    from emulator.context import Emulator
    from emulator.routing import Route

# Any test-mode publishable key is accepted (`emulator.config.PUBLISHABLE_KEY` is the one the
# service hands its pages in sandbox).
PREFIX = "pk_test_"
# Route names a publishable key may call.
CLIENT_ROUTES = frozenset(
    {
        "GET /v1/payment_intents/{intent}",
        "POST /v1/payment_intents/{intent}/confirm",
        "POST /v1/payment_methods",
    }
)
# The PaymentIntent fields Stripe's reference marks "retrievable with publishable key".
INTENT_FIELDS = frozenset(
    {
        "id",
        "object",
        "amount",
        "automatic_payment_methods",
        "canceled_at",
        "cancellation_reason",
        "capture_method",
        "client_secret",
        "confirmation_method",
        "created",
        "currency",
        "description",
        "last_payment_error",
        "livemode",
        "next_action",
        "payment_method",
        "payment_method_types",
        "processing",
        "receipt_email",
        "setup_future_usage",
        "shipping",
        "status",
    }
)
SECRET_KEY_NEEDED = (
    "This API call cannot be made with a publishable API key. Please use a secret API key. You "
    "can find a list of your API keys at https://dashboard.stripe.com/account/apikeys."
)
SECRET_MISMATCH = (
    "The client_secret provided does not match the client_secret associated with the PaymentIntent."
)


def is_publishable(key: str) -> bool:
    return key.startswith(PREFIX)


def check_route(route: Route) -> None:
    """Refuse a publishable key on a server-only call, as Stripe does (401)."""
    if route.name not in CLIENT_ROUTES:
        raise StripeError(401, "invalid_request_error", SECRET_KEY_NEEDED)


def check_params(emu: Emulator, path: dict[str, str], raw: dict[str, Any]) -> None:
    """Take `key` and `client_secret` out of a client-side call's parameters, checking that the
    secret is the intent's own (an unknown intent is left to the handler's 404)."""
    raw.pop("key", None)
    intent_id = path.get("intent")
    if intent_id is None:
        return
    secret = raw.pop("client_secret", None)
    intent = emu.coll("payment_intent").find(intent_id)
    if intent is None:
        return
    if secret in (None, ""):
        raise invalid_request(
            "Missing required param: client_secret.",
            param="client_secret",
            code="parameter_missing",
        )
    if not isinstance(secret, str) or not hmac.compare_digest(
        secret.encode(), str(intent["client_secret"]).encode()
    ):
        raise invalid_request(SECRET_MISMATCH, param="client_secret")


def view(value: Any) -> Any:
    """What a publishable key sees of an answer: an intent's client-side fields, and no object's
    metadata (nested objects too: an expanded payment method, an error's intent)."""
    if isinstance(value, list):
        return [view(item) for item in value]
    if not isinstance(value, dict):
        return value
    if value.get("object") == "payment_intent":
        return {k: view(v) for k, v in value.items() if k in INTENT_FIELDS}
    return {k: view(v) for k, v in value.items() if k != "metadata"}


def view_error(error: StripeError) -> StripeError:
    """The same error with the objects it carries (`payment_intent`, `payment_method`) seen
    through a publishable key."""
    error.extra = {k: view(v) for k, v in error.extra.items()}
    return error
