"""A subscriber's endpoint that answers 200 at once and keeps each event id's arrival time
(`GET /_received`), for bench/events_out.py. Run by uvicorn: `bench.receiver_fast:app`."""

from __future__ import annotations

import json
import time
from typing import Any

from starlette.types import Receive, Scope, Send

arrived: dict[str, float] = {}


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        return
    body = b""
    more = True
    while more:
        message: Any = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    if scope["method"] == "POST":
        arrived.setdefault(json.loads(body)["id"], time.time())
        answer = b'{"ok":true}'
    else:
        answer = json.dumps(arrived).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": answer})
