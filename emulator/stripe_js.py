"""Stripe.js for pages that run offline: the script a page loads from `/v3` (also `/v3/`,
`/js/v3`) instead of `https://js.stripe.com/v3/`, and the card fields' frame it mounts.

The script (`static/stripe-v3.js`) implements the part of Stripe.js a Payment Element checkout
uses, with Stripe's names and result shapes; it calls this emulator's `/v1` with the page's
publishable key (`emulator.client_keys`). The card fields live in a frame served from here
(`static/elements-frame.html`), so the page's own code never sees a card number: the frame turns
the fields into a PaymentMethod (`POST /v1/payment_methods`) and hands the page its id.
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import Any

from emulator.context import Ctx
from emulator.routing import Response, router

SCRIPT_PATHS = ("/v3", "/v3/", "/js/v3", "/js/v3/")
FRAME_PATH = "/v3/elements-frame.html"


@cache
def _static(name: str) -> bytes:
    return resources.files("emulator").joinpath("static", name).read_bytes()


def script(ctx: Ctx, params: dict[str, Any]) -> Response:
    return Response(
        200,
        _static("stripe-v3.js"),
        content_type="application/javascript; charset=utf-8",
        headers={"Cache-Control": "no-cache"},
    )


for _path in SCRIPT_PATHS:
    router.route("GET", _path)(script)


@router.route("GET", FRAME_PATH)
def frame(ctx: Ctx, params: dict[str, Any]) -> Response:
    """The card fields of a mounted Element; its settings come in the URL's fragment."""
    return Response(200, _static("elements-frame.html"), headers={"Cache-Control": "no-cache"})
