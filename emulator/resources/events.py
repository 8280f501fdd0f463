"""Events: `/v1/events`, retrieve and list with `type`, `types[]` and `created` filters."""

from __future__ import annotations

from typing import Any

from stripe.params import EventListParams, EventRetrieveParams

from emulator.context import Ctx
from emulator.routing import router
from emulator.store import paginate


@router.route("GET", "/v1/events/{id}", EventRetrieveParams)
def retrieve(ctx: Ctx, params: dict[str, Any]) -> dict[str, Any]:
    return ctx.coll("event").get(ctx.path["id"])


@router.route("GET", "/v1/events", EventListParams)
def list_(ctx: Ctx, params: dict[str, Any]) -> dict[str, Any]:
    types = set(params.get("types") or ())
    if "type" in params:
        types.add(params["type"])
    where = None
    if types:
        exact = {t for t in types if not t.endswith("*")}
        prefixes = tuple(t[:-1] for t in types if t.endswith("*"))

        def where(event: dict[str, Any]) -> bool:
            return event["type"] in exact or bool(prefixes and event["type"].startswith(prefixes))

    return paginate(ctx.coll("event"), params, "/v1/events", where)
