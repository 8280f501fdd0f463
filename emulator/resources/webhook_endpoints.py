"""Webhook endpoints registered through the API (`/v1/webhook_endpoints`), each with its secret."""

from __future__ import annotations

import secrets
from typing import Any

from stripe.params import (
    WebhookEndpointCreateParams,
    WebhookEndpointDeleteParams,
    WebhookEndpointListParams,
    WebhookEndpointRetrieveParams,
    WebhookEndpointUpdateParams,
)

from emulator.config import API_VERSION
from emulator.context import Ctx
from emulator.ids import new_id
from emulator.metadata import checked, merged
from emulator.objects import blank
from emulator.routing import router
from emulator.store import paginate


@router.route("POST", "/v1/webhook_endpoints", WebhookEndpointCreateParams)
def create(ctx: Ctx, params: dict[str, Any]) -> dict[str, Any]:
    endpoint = blank(
        "webhook_endpoint",
        id=new_id("we"),
        api_version=params.get("api_version") or API_VERSION,
        created=ctx.now(),
        description=params.get("description"),
        enabled_events=params["enabled_events"],
        metadata=checked(params.get("metadata")),
        status="enabled",
        url=params["url"],
    )
    secret = "whsec_" + secrets.token_hex(16)
    ctx.coll("webhook_endpoint").add(endpoint)
    ctx.store.hidden_of(endpoint["id"])["secret"] = secret
    return {**endpoint, "secret": secret}


@router.route("GET", "/v1/webhook_endpoints/{id}", WebhookEndpointRetrieveParams)
def retrieve(ctx: Ctx, params: dict[str, Any]) -> dict[str, Any]:
    return ctx.coll("webhook_endpoint").get(ctx.path["id"], param="webhook_endpoint")


@router.route("POST", "/v1/webhook_endpoints/{id}", WebhookEndpointUpdateParams)
def update(ctx: Ctx, params: dict[str, Any]) -> dict[str, Any]:
    endpoint = ctx.coll("webhook_endpoint").get(ctx.path["id"], param="webhook_endpoint")
    for field in ("url", "enabled_events", "description"):
        if field in params:
            endpoint[field] = params[field]
    if "disabled" in params:
        endpoint["status"] = "disabled" if params["disabled"] else "enabled"
    if "metadata" in params:
        endpoint["metadata"] = merged(endpoint["metadata"], params["metadata"])
    return endpoint


@router.route("DELETE", "/v1/webhook_endpoints/{id}", WebhookEndpointDeleteParams)
def delete(ctx: Ctx, params: dict[str, Any]) -> dict[str, Any]:
    coll = ctx.coll("webhook_endpoint")
    endpoint = coll.get(ctx.path["id"], param="webhook_endpoint")
    coll.remove(endpoint["id"])
    return {"id": endpoint["id"], "object": "webhook_endpoint", "deleted": True}


@router.route("GET", "/v1/webhook_endpoints", WebhookEndpointListParams)
def list_(ctx: Ctx, params: dict[str, Any]) -> dict[str, Any]:
    return paginate(ctx.coll("webhook_endpoint"), params, "/v1/webhook_endpoints")
