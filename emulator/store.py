"""In-memory state: one ordered collection per object type, O(1) by id.

Objects are kept as the plain dicts the API returns (unexpanded), so a response is one JSON dump.
State the API does not show (a card's test behaviour, a session's line items) lives in `hidden`.
Every handler runs synchronously on the event loop, so a request's reads and writes are atomic.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from emulator.errors import invalid_request, not_found

Obj = dict[str, Any]


class Collection:
    """Objects of one type in creation order; deleted ones leave a hole that listing skips."""

    def __init__(self, object_name: str) -> None:
        self.object_name = object_name
        self.by_id: dict[str, Obj] = {}
        self.order: list[str | None] = []
        self.position: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self.by_id)

    def add(self, obj: Obj) -> Obj:
        self.by_id[obj["id"]] = obj
        self.position[obj["id"]] = len(self.order)
        self.order.append(obj["id"])
        return obj

    def get(self, object_id: str, *, param: str = "id") -> Obj:
        obj = self.by_id.get(object_id)
        if obj is None:
            raise not_found(self.object_name, object_id, param=param)
        return obj

    def find(self, object_id: str) -> Obj | None:
        return self.by_id.get(object_id)

    def remove(self, object_id: str) -> None:
        self.by_id.pop(object_id, None)
        pos = self.position.pop(object_id, None)
        if pos is not None:
            self.order[pos] = None

    def newest_first(
        self, *, starting_after: str | None = None, ending_before: str | None = None
    ) -> Iterator[Obj]:
        """Iterate newest to oldest from a cursor, as Stripe's list endpoints page."""
        if ending_before is not None:
            start = self._cursor(ending_before, "ending_before")
            for pos in range(start + 1, len(self.order)):
                object_id = self.order[pos]
                if object_id is not None:
                    yield self.by_id[object_id]
            return
        start = len(self.order)
        if starting_after is not None:
            start = self._cursor(starting_after, "starting_after")
        for pos in range(start - 1, -1, -1):
            object_id = self.order[pos]
            if object_id is not None:
                yield self.by_id[object_id]

    def _cursor(self, object_id: str, param: str) -> int:
        pos = self.position.get(object_id)
        if pos is None:
            raise invalid_request(
                f"No such {self.object_name}: '{object_id}'", param=param, code="resource_missing"
            )
        return pos


# The id prefix of every object type the emulator stores, for looking an id up by its shape.
PREFIXES = {
    "ch": "charge",
    "clock": "test_helpers.test_clock",
    "cs": "checkout.session",
    "cus": "customer",
    "evt": "event",
    "il": "line_item",
    "in": "invoice",
    "inpay": "invoice_payment",
    "li": "item",
    "pi": "payment_intent",
    "pm": "payment_method",
    "price": "price",
    "prod": "product",
    "re": "refund",
    "seti": "setup_intent",
    "sub": "subscription",
    "we": "webhook_endpoint",
}


class Store:
    def __init__(self) -> None:
        self.collections: dict[str, Collection] = {}
        self.hidden: dict[str, dict[str, Any]] = {}

    def collection(self, object_name: str) -> Collection:
        coll = self.collections.get(object_name)
        if coll is None:
            coll = self.collections[object_name] = Collection(object_name)
        return coll

    def lookup(self, object_id: str) -> Obj | None:
        """Any stored object by id, found through its prefix (used by `expand`)."""
        object_name = PREFIXES.get(object_id.split("_", 1)[0])
        if object_name is None:
            return None
        return self.collection(object_name).find(object_id)

    def hidden_of(self, object_id: str) -> dict[str, Any]:
        return self.hidden.setdefault(object_id, {})

    def clear(self) -> None:
        for coll in self.collections.values():
            coll.by_id.clear()
            coll.order.clear()
            coll.position.clear()
        self.hidden.clear()


def paginate(
    coll: Collection,
    params: dict[str, Any],
    url: str,
    where: Callable[[Obj], bool] | None = None,
) -> Obj:
    """A Stripe list object from `limit`, `starting_after`, `ending_before` and `created`."""
    limit = int(params.get("limit", 10))
    if limit < 1 or limit > 100:
        raise invalid_request(
            "This value must be greater than or equal to 1 and less than or equal to 100.",
            param="limit",
        )
    created = params.get("created")
    predicate = _and(where, _created_filter(created) if created not in (None, "") else None)
    ending_before = params.get("ending_before")
    it = coll.newest_first(starting_after=params.get("starting_after"), ending_before=ending_before)
    data: list[Obj] = []
    has_more = False
    for obj in it:
        if predicate is not None and not predicate(obj):
            continue
        if len(data) == limit:
            has_more = True
            break
        data.append(obj)
    if ending_before is not None:
        # Walking forward from `ending_before` found the oldest first; Stripe shows the page
        # nearest the cursor, newest first.
        data.reverse()
    return {"object": "list", "data": data, "has_more": has_more, "url": url}


def _and(
    a: Callable[[Obj], bool] | None, b: Callable[[Obj], bool] | None
) -> Callable[[Obj], bool] | None:
    if a is None:
        return b
    if b is None:
        return a
    return lambda obj: a(obj) and b(obj)


def _created_filter(created: Any) -> Callable[[Obj], bool]:
    if not isinstance(created, dict):
        value = int(created)
        return lambda obj: bool(obj.get("created") == value)
    bounds = {k: int(v) for k, v in created.items()}

    def check(obj: Obj) -> bool:
        at = obj.get("created") or 0
        return (
            ("gt" not in bounds or at > bounds["gt"])
            and ("gte" not in bounds or at >= bounds["gte"])
            and ("lt" not in bounds or at < bounds["lt"])
            and ("lte" not in bounds or at <= bounds["lte"])
        )

    return check
