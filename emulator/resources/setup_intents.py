"""SetupIntents (`seti_…`): made by completed setup-mode checkout sessions; retrieve and list."""

from __future__ import annotations

from typing import Any

from stripe.params import SetupIntentListParams, SetupIntentRetrieveParams

from emulator.context import Ctx
from emulator.ids import new_id, secret_for
from emulator.objects import blank
from emulator.routing import router
from emulator.store import Obj, paginate


def create_succeeded_setup_intent(
    ctx: Ctx,
    *,
    customer: str | None,
    payment_method: Obj,
    description: str | None = None,
    metadata: dict[str, str] | None = None,
) -> Obj:
    """A SetupIntent that saved `payment_method` for off-session use.

    Emits `setup_intent.created` (as it was when Checkout made it) then `setup_intent.succeeded`.
    """
    seti_id = new_id("seti")
    seti = blank(
        "setup_intent",
        id=seti_id,
        automatic_payment_methods=None,
        client_secret=secret_for(seti_id),
        created=ctx.now(),
        customer=customer,
        description=description,
        metadata=dict(metadata or {}),
        payment_method=None,
        payment_method_options={
            "card": {
                "mandate_options": None,
                "network": None,
                "request_three_d_secure": "automatic",
            }
        },
        payment_method_types=["card"],
        status="requires_payment_method",
        usage="off_session",
    )
    ctx.coll("setup_intent").add(seti)
    ctx.emit("setup_intent.created", seti)
    seti["payment_method"] = payment_method["id"]
    seti["status"] = "succeeded"
    ctx.emit("setup_intent.succeeded", seti)
    return seti


@router.route("GET", "/v1/setup_intents/{intent}", SetupIntentRetrieveParams)
def retrieve(ctx: Ctx, params: dict[str, Any]) -> dict[str, Any]:
    return ctx.coll("setup_intent").get(ctx.path["intent"], param="id")


@router.route("GET", "/v1/setup_intents", SetupIntentListParams)
def list_(ctx: Ctx, params: dict[str, Any]) -> dict[str, Any]:
    checks = [(f, params[f]) for f in ("customer", "payment_method") if f in params]

    def where(seti: Obj) -> bool:
        return all(seti[field] == value for field, value in checks)

    return paginate(ctx.coll("setup_intent"), params, "/v1/setup_intents", where)
