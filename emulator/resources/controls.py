"""Test controls under `/_emulator/…`: faults, reset, clock, webhook delivery log, health, and the
count of `/v1` requests served per route.

Resource-specific controls (completing a checkout session, finishing 3-D Secure) live beside
their resource.
"""

from __future__ import annotations

from collections import Counter
from typing import Any
from weakref import WeakKeyDictionary

from emulator import billing
from emulator.context import Ctx, Emulator
from emulator.errors import invalid_request, not_found
from emulator.routing import router

_requests: WeakKeyDictionary[Emulator, Counter[str]] = WeakKeyDictionary()


def count_request(emu: Emulator, route: str) -> None:
    """Count one `/v1` request `emu` received for `route` ("GET /v1/events"), faulted or not."""
    _requests.setdefault(emu, Counter())[route] += 1


@router.route("POST", "/_emulator/faults", body="json")
def add_fault(ctx: Ctx, params: dict[str, Any]) -> dict[str, Any]:
    """Inject a fault. Body: `route` ("POST /v1/payment_intents", a template or a path; omit for
    every /v1 call), then `status` (+ `retry_after`), `latency_ms`, `drop` ("before"/"after"), or
    `webhook` ("duplicate" + `copies`, "reorder" + `batch`, "delay" + `delay_ms`, "drop"), with an
    optional `event_type`; `times` limits how many requests or events it applies to."""
    return ctx.emu.faults.add(params).as_dict()


@router.route("GET", "/_emulator/faults")
def list_faults(ctx: Ctx, params: dict[str, Any]) -> dict[str, Any]:
    return {"object": "list", "data": [f.as_dict() for f in ctx.emu.faults.active]}


@router.route("DELETE", "/_emulator/faults")
def clear_faults(ctx: Ctx, params: dict[str, Any]) -> dict[str, Any]:
    ctx.emu.faults.clear()
    return {"deleted": True}


@router.route("DELETE", "/_emulator/faults/{id}")
def remove_fault(ctx: Ctx, params: dict[str, Any]) -> dict[str, Any]:
    if not ctx.emu.faults.remove(ctx.path["id"]):
        raise not_found("fault", ctx.path["id"])
    return {"id": ctx.path["id"], "deleted": True}


@router.route("DELETE", "/_emulator/data")
def reset(ctx: Ctx, params: dict[str, Any]) -> dict[str, Any]:
    """Forget every object, key, fault, pending delivery and request count; reload the demo
    catalogue."""
    ctx.emu.reset()
    _requests.pop(ctx.emu, None)
    return {"deleted": True}


@router.route("POST", "/_emulator/clock", body="json")
def advance_clock(ctx: Ctx, params: dict[str, Any]) -> dict[str, Any]:
    """Move the emulator's clock forward by `advance_seconds` (idempotency expiry, `created`),
    running the billing that falls due meanwhile for subscriptions not on a test clock."""
    seconds = params.get("advance_seconds")
    if not isinstance(seconds, int) or seconds < 0:
        raise invalid_request("advance_seconds must be a non-negative integer.")
    ctx.emu.clock_offset += seconds
    billing.advance(ctx, None, ctx.now())
    return {"now": ctx.now(), "offset": ctx.emu.clock_offset}


@router.route("GET", "/_emulator/webhooks/deliveries")
def deliveries(ctx: Ctx, params: dict[str, Any]) -> dict[str, Any]:
    """Every webhook delivery attempt, oldest first: event, url, attempt, status or error."""
    return {"object": "list", "data": list(ctx.emu.webhooks.log)}


@router.route("GET", "/_emulator/health")
def health(ctx: Ctx, params: dict[str, Any]) -> dict[str, Any]:
    """Objects stored by kind; the idempotency keys' answers since the last reset: 409s
    `idempotency_key_in_use` (`in_use`) and replayed results (`replayed`); and the webhook POSTs
    sent and not yet answered (`webhooks.in_flight`, which a reset does not recall)."""
    keys = ctx.emu.idempotency
    return {
        "status": "ok",
        "objects": {k: len(c) for k, c in ctx.store.collections.items()},
        "idempotency": {"keys": len(keys.saved), "in_use": keys.in_use, "replayed": keys.replayed},
        "webhooks": {"in_flight": ctx.emu.webhooks.in_flight},
    }


@router.route("GET", "/_emulator/requests")
def requests(ctx: Ctx, params: dict[str, Any]) -> dict[str, Any]:
    """The `/v1` requests received since start or the last reset, each attempt counted (an SDK
    retry is a second request): `total`, and `by_route` keyed by "METHOD /template"."""
    counts = _requests.get(ctx.emu, Counter())
    return {"total": counts.total(), "by_route": dict(sorted(counts.items()))}


@router.route("GET", "/_emulator/routes")
def routes(ctx: Ctx, params: dict[str, Any]) -> dict[str, Any]:
    """Every route the emulator serves, as "METHOD /template"."""
    return {"object": "list", "data": [r.name for r in router.routes]}
