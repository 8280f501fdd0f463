"""Events: every state change is recorded as a Stripe `event` and handed to the webhooks."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import orjson

from emulator.config import API_VERSION
from emulator.ids import new_id
from emulator.objects import blank
from emulator.store import Store

if TYPE_CHECKING:
    from emulator.webhooks import Webhooks


class Events:
    def __init__(self, store: Store, webhooks: Webhooks, now: Callable[[], int]) -> None:
        self.store = store
        self.webhooks = webhooks
        self.now = now

    def emit(
        self,
        type_: str,
        obj: dict[str, Any],
        previous: dict[str, Any] | None = None,
        *,
        request_id: str | None = None,
        idempotency_key: str | None = None,
        created: int | None = None,
    ) -> dict[str, Any]:
        """Record and dispatch an event; `created` is the time it happened (a test clock's time
        for a clocked customer's objects), the emulator's clock when omitted."""
        data: dict[str, Any] = {"object": orjson.loads(orjson.dumps(obj))}
        if previous:
            data["previous_attributes"] = previous
        event = blank(
            "event",
            id=new_id("evt"),
            api_version=API_VERSION,
            created=self.now() if created is None else created,
            data=data,
            pending_webhooks=0,
            request={"id": request_id, "idempotency_key": idempotency_key},
            type=type_,
        )
        self.store.collection("event").add(event)
        self.webhooks.dispatch(event, self.store)
        return event
