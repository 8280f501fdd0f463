"""Test clocks (`clock_…`): create, retrieve, list, delete and advance.

A customer created with `test_clock` lives on the clock's frozen time, and so does everything of
it: subscriptions, invoices, payments, and the `created` of their events. Advancing runs the
billing between the old and the new time (`emulator.billing.advance`) inside the request; the
clock answers `advancing` and turns `ready` on the event loop's next turn, so a client polling
for `ready` sees it at once. As Stripe: only forward, at most two intervals of the clock's
shortest subscription (two years without one), and deleting a clock deletes its customers and
their subscriptions. A clock deletes itself 30 days after it was made (`deletes_after`).
"""

from __future__ import annotations

import asyncio
from typing import Any

from stripe.params.test_helpers import (
    TestClockAdvanceParams,
    TestClockCreateParams,
    TestClockDeleteParams,
    TestClockListParams,
    TestClockRetrieveParams,
)

from emulator import billing
from emulator.context import Ctx
from emulator.errors import invalid_request, state_error
from emulator.ids import new_id
from emulator.objects import blank
from emulator.resources.customers import DELETED
from emulator.routing import router
from emulator.store import Obj, paginate

OBJECT = "test_helpers.test_clock"
LIFETIME = 30 * billing.DAY


def _clock(ctx: Ctx) -> Obj:
    return ctx.coll(OBJECT).get(ctx.path["test_clock"], param="test_clock")


@router.route("POST", "/v1/test_helpers/test_clocks", TestClockCreateParams)
def create(ctx: Ctx, params: dict[str, Any]) -> dict[str, Any]:
    now = ctx.now()
    clock = blank(
        OBJECT,
        id=new_id("clock"),
        created=now,
        deletes_after=now + LIFETIME,
        frozen_time=params["frozen_time"],
        name=params.get("name"),
        status="ready",
        status_details={},
    )
    ctx.coll(OBJECT).add(clock)
    ctx.emit("test_helpers.test_clock.created", clock)
    return clock


@router.route("GET", "/v1/test_helpers/test_clocks/{test_clock}", TestClockRetrieveParams)
def retrieve(ctx: Ctx, params: dict[str, Any]) -> dict[str, Any]:
    return _clock(ctx)


@router.route("GET", "/v1/test_helpers/test_clocks", TestClockListParams)
def list_(ctx: Ctx, params: dict[str, Any]) -> dict[str, Any]:
    return paginate(ctx.coll(OBJECT), params, "/v1/test_helpers/test_clocks")


@router.route("DELETE", "/v1/test_helpers/test_clocks/{test_clock}", TestClockDeleteParams)
def delete(ctx: Ctx, params: dict[str, Any]) -> dict[str, Any]:
    clock = _clock(ctx)
    at = ctx.at_time(clock["frozen_time"])
    for sub in list(ctx.coll("subscription").by_id.values()):
        if sub["test_clock"] == clock["id"]:
            if sub["status"] not in billing.ENDED:
                billing.cancel(at, sub, "cancellation_requested")
            ctx.coll("subscription").remove(sub["id"])
    for invoice in list(ctx.coll("invoice").by_id.values()):
        if invoice["test_clock"] == clock["id"]:
            ctx.coll("invoice").remove(invoice["id"])
    for customer in list(ctx.coll("customer").by_id.values()):
        if customer["test_clock"] == clock["id"]:
            ctx.coll("customer").remove(customer["id"])
            ctx.store.hidden_of(customer["id"])[DELETED] = True
            at.emit("customer.deleted", customer)
    ctx.coll(OBJECT).remove(clock["id"])
    ctx.emit("test_helpers.test_clock.deleted", clock)
    return {"id": clock["id"], "object": OBJECT, "deleted": True}


@router.route("POST", "/v1/test_helpers/test_clocks/{test_clock}/advance", TestClockAdvanceParams)
def advance(ctx: Ctx, params: dict[str, Any]) -> dict[str, Any]:
    clock = _clock(ctx)
    target = params["frozen_time"]
    if clock["status"] != "ready":
        raise state_error(
            f"The test clock {clock['id']} is currently {clock['status']}; wait until it is "
            "ready before advancing it again.",
            code="test_clock_not_ready",
        )
    if target <= clock["frozen_time"]:
        raise invalid_request(
            "The test clock can only be advanced forward: frozen_time must be after its current "
            f"frozen_time ({clock['frozen_time']}).",
            param="frozen_time",
        )
    limit, limiting = billing.advance_limit(ctx, clock["id"], clock["frozen_time"])
    if target > limit:
        reason = (
            f"two intervals of its shortest subscription ({limiting})"
            if limiting
            else "two years, as it has no subscription"
        )
        raise invalid_request(
            f"Cannot advance the test clock more than {reason} past its current frozen_time: "
            f"frozen_time must be at most {limit}.",
            param="frozen_time",
        )
    clock["status"] = "advancing"
    clock["status_details"] = {
        "advancing": {"target_frozen_time": target},
    }
    ctx.emit("test_helpers.test_clock.advancing", clock)
    billing.advance(ctx, clock["id"], target)
    clock["frozen_time"] = target
    answer = dict(clock)

    def ready() -> None:
        if ctx.coll(OBJECT).find(clock["id"]) is not clock or clock["status"] != "advancing":
            return
        clock["status"] = "ready"
        clock["status_details"] = {}
        ctx.emit("test_helpers.test_clock.ready", clock)

    try:
        asyncio.get_running_loop().call_soon(ready)
    except RuntimeError:  # no event loop (a handler called directly): ready at once
        ready()
    return answer
