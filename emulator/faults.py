"""Injected faults (`POST /_emulator/faults`): API errors, latency, dropped connections, and
webhook duplicates, reordering, delays and drops."""

from __future__ import annotations

import itertools
import random
from dataclasses import asdict, dataclass
from typing import Any, Literal

from emulator.errors import invalid_request

ApiDrop = Literal["before", "after"]
WebhookMode = Literal["duplicate", "reorder", "delay", "drop"]


@dataclass(slots=True)
class Fault:
    id: str
    # "POST /v1/payment_intents": a route template or a concrete path; None: every /v1 call
    route: str | None = None
    status: int | None = None
    retry_after: int | None = None
    latency_ms: int = 0
    drop: ApiDrop | None = None
    webhook: WebhookMode | None = None
    event_type: str | None = None
    copies: int = 2
    batch: int = 2
    delay_ms: int = 0
    times: int | None = None  # None: until cleared
    probability: float = 1.0  # the chance that a matching request or event is hit
    hits: int = 0  # how often it has fired

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


_API_FIELDS = ("status", "latency_ms", "drop")
_INT_FIELDS = frozenset(
    ("status", "retry_after", "latency_ms", "copies", "batch", "delay_ms", "times")
)
_STR_FIELDS = frozenset(("route", "drop", "webhook", "event_type"))


class Faults:
    def __init__(self) -> None:
        self.active: list[Fault] = []
        self._ids = itertools.count(1)

    def clear(self) -> None:
        self.active.clear()

    def add(self, spec: dict[str, Any]) -> Fault:
        allowed = set(Fault.__dataclass_fields__) - {"id", "hits"}
        unknown = set(spec) - allowed
        if unknown:
            raise invalid_request(f"Unknown fault fields: {', '.join(sorted(unknown))}")
        spec = dict(spec)
        for name, value in spec.items():
            if name == "probability":
                continue
            wanted = _INT_FIELDS if name in _INT_FIELDS else _STR_FIELDS
            kind = int if wanted is _INT_FIELDS else str
            if value is not None and (type(value) is not kind):
                raise invalid_request(f"Invalid fault: {name} must be a {kind.__name__}.")
        probability = spec.pop("probability", 1.0)
        if type(probability) not in (int, float) or not 0 < probability <= 1:
            raise invalid_request("Invalid fault: probability must be a number in (0, 1].")
        fault = Fault(id=f"fault_{next(self._ids)}", probability=float(probability), **spec)
        if fault.webhook is None and not any(getattr(fault, f) for f in _API_FIELDS):
            raise invalid_request("A fault needs one of status, latency_ms, drop or webhook.")
        if fault.webhook not in (None, "duplicate", "reorder", "delay", "drop"):
            raise invalid_request("webhook must be one of duplicate, reorder, delay, drop.")
        if fault.drop not in (None, "before", "after"):
            raise invalid_request("drop must be 'before' or 'after'.")
        if fault.status is not None and not 400 <= fault.status <= 599:
            raise invalid_request("status must be an HTTP error status (400-599).")
        self.active.append(fault)
        return fault

    def remove(self, fault_id: str) -> bool:
        before = len(self.active)
        self.active = [f for f in self.active if f.id != fault_id]
        return len(self.active) != before

    def for_request(self, method: str, template: str, path: str) -> list[Fault]:
        """Faults that apply to this API request; each use counts against its `times`."""
        if not self.active:
            return []
        names = (f"{method} {template}", f"{method} {path}")
        hits = [
            f
            for f in self.active
            if f.webhook is None and (f.route is None or f.route in names) and _fires(f)
        ]
        self._use(hits)
        return hits

    def for_event(self, event_type: str) -> Fault | None:
        for f in self.active:
            if f.webhook is not None and f.event_type in (None, event_type) and _fires(f):
                self._use([f])
                return f
        return None

    def _use(self, hits: list[Fault]) -> None:
        for f in hits:
            f.hits += 1
            if f.times is not None:
                f.times -= 1
                if f.times <= 0:
                    self.active.remove(f)


def _fires(fault: Fault) -> bool:
    return fault.probability >= 1 or random.random() < fault.probability
