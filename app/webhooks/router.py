"""`POST /webhooks/stripe`: Stripe's deliveries, verified on the raw body, stored once."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, Field

from app.db import Sessions
from app.errors import InvalidRequest
from app.stripe_gateway import Gateway, SignatureError
from app.webhooks import handlers

log = logging.getLogger("app.webhooks")
router = APIRouter(tags=["webhooks"])
# The inbox's columns for the event's id, its type and its object's id.
MAX_ID = 255

EVENT_EXAMPLE: dict[str, Any] = {
    "id": "evt_3Nq8ZbHk2yW1xV0u",
    "object": "event",
    "type": "payment_intent.succeeded",
    "created": 1795694400,
    "data": {
        "object": {
            "id": "pi_3Nq8ZbHk2yW1xV0u",
            "object": "payment_intent",
            "amount": 2000,
            "currency": "usd",
            "status": "succeeded",
            "metadata": {"service_order_id": "ord_x6Yt0qJk3mZp9sLwQe2R"},
        }
    },
}


class WebhookReceipt(BaseModel):
    received: bool = True
    duplicate: bool = Field(description="True when this event had been received before.")
    outcome: handlers.Outcome | None = Field(
        default=None,
        description="What the event did: `applied`, `ignored` (a type or an object that is not "
        "ours), `stale` (behind what the order already says) or `unmatched` (it names one of our "
        "orders that is not there or belongs to another object, and is too old to be racing "
        "its commit: kept for `python -m app audit`). Absent on a duplicate.",
    )


def _rendered(duplicate: bool, outcome: handlers.Outcome | None) -> bytes:
    receipt = WebhookReceipt(duplicate=duplicate, outcome=outcome)
    return receipt.model_dump_json(exclude_none=True).encode()


# Every answer there can be, rendered once.
RECEIPTS: dict[tuple[bool, handlers.Outcome | None], bytes] = {
    (False, outcome): _rendered(False, outcome) for outcome in handlers.Outcome
}
RECEIPTS[True, None] = _rendered(True, None)


@router.post(
    "/webhooks/stripe",
    summary="Receive a Stripe event",
    response_model=WebhookReceipt,
    response_model_exclude_none=True,
    responses={
        400: {
            "description": "Missing, invalid or stale `Stripe-Signature`, or a signed body that "
            "is not a well-formed Stripe event: nothing is stored."
        },
        503: {
            "description": "The event names an order not committed yet (for up to "
            "`WEBHOOK_UNMATCHED_AFTER_SECONDS` after the event was created): delivered again."
        },
    },
    openapi_extra={
        "parameters": [
            {
                "name": "Stripe-Signature",
                "in": "header",
                "required": True,
                "schema": {"type": "string"},
                "example": "t=1795694400,v1=5257a869e7ecebeda32affa62cdca3fa51cad7e",
            }
        ],
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"type": "object"}, "example": EVENT_EXAMPLE}
            },
        },
    },
)
async def receive(request: Request, sessions: Sessions, stripe: Gateway) -> Response:
    """The endpoint to register with Stripe. `Stripe-Signature` is verified over the raw body
    with `STRIPE_WEBHOOK_SECRET`, allowing 300 seconds of clock difference; a missing, invalid
    or stale signature is a 400 and nothing is stored.

    Every event is stored once, keyed by its id, in the same transaction that applies it to its
    order: a repeat delivery answers `{"received": true, "duplicate": true}` and changes
    nothing. Events may arrive in any order; an order never moves backwards. Types the service
    does not act on are stored and acknowledged. An event for an order whose creation has not
    committed yet is answered with a 503, so Stripe delivers it again."""
    body = await request.body()
    signature = request.headers.get("stripe-signature")
    if not signature:
        raise InvalidRequest(
            "No Stripe-Signature header: this endpoint only accepts events signed by Stripe.",
            code="webhook_signature_missing",
        )
    try:
        payload = stripe.verify_event(body, signature)
    except SignatureError as exc:
        log.warning("webhook refused: %s", exc.user_message)
        raise InvalidRequest(
            f"Invalid Stripe-Signature: {exc.user_message or exc}",
            code="webhook_signature_invalid",
        ) from None
    except ValueError:
        raise InvalidRequest(
            "The signed body is not a JSON Stripe event.", code="webhook_payload_invalid"
        ) from None
    malformed = _malformed(payload)
    if malformed:
        raise InvalidRequest(
            f"The signed body is not a Stripe event: {malformed}.", code="webhook_payload_invalid"
        )
    receipt = await handlers.receive(sessions, stripe, payload)
    return Response(RECEIPTS[receipt.duplicate, receipt.outcome], media_type="application/json")


def _malformed(event: dict[str, Any]) -> str | None:
    """What in a signed event the inbox could not store or the handlers could not read, if
    anything. Refused rather than failing with a 5xx, which Stripe would deliver again and again.
    (A NUL character anywhere in it was refused by `app.security` already: Postgres cannot store
    one, and Stripe never sends one.)"""
    for name in ("id", "type"):
        if not _short_string(event.get(name)):
            return f"`{name}` is not a string of 1 to {MAX_ID} characters"
    data = event.get("data")
    if not isinstance(data, dict) or not isinstance(data.get("object"), dict):
        return "`data.object` is not an object"
    object_id = data["object"].get("id")
    # Some objects have no id (`balance.available`'s balance): fine for the types only stored.
    if object_id is None and event["type"] not in handlers.HANDLERS:
        return None
    if not _short_string(object_id):
        return f"`data.object.id` is not a string of 1 to {MAX_ID} characters"
    return None


def _short_string(value: Any) -> bool:
    return isinstance(value, str) and 0 < len(value) <= MAX_ID
