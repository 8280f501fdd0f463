"""The emulator's state and the per-request context handed to every handler."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from emulator.config import Config
from emulator.events import Events
from emulator.faults import Faults
from emulator.idempotency import IdempotencyStore
from emulator.store import Collection, Store
from emulator.webhooks import Webhooks

Includer = Callable[["Emulator", dict[str, Any]], Any]
Listener = Callable[["Ctx", dict[str, Any]], None]


class Emulator:
    """Everything one running emulator holds. Reset by `DELETE /_emulator/data`."""

    seeders: list[Callable[[Emulator], None]] = []
    includers: dict[tuple[str, str], Includer] = {}
    # Called with every event a request records, after it is recorded (e.g. a checkout session
    # following its payment intent).
    listeners: list[Listener] = []

    def __init__(self, config: Config) -> None:
        self.config = config
        self.clock_offset = 0
        self.store = Store()
        self.idempotency = IdempotencyStore(self.now)
        self.faults = Faults()
        self.webhooks = Webhooks(config, self.now)
        self.webhooks.faults_source = self.faults.for_event
        self.events = Events(self.store, self.webhooks, self.now)
        self.seed()

    def now(self) -> int:
        return int(time.time()) + self.clock_offset

    def seed(self) -> None:
        if not self.config.empty:
            for seeder in self.seeders:
                seeder(self)

    def reset(self) -> None:
        self.store.clear()
        self.idempotency.clear()
        self.faults.clear()
        self.webhooks.clear()
        self.clock_offset = 0
        self.seed()

    def coll(self, object_name: str) -> Collection:
        return self.store.collection(object_name)


@dataclass(slots=True)
class Ctx:
    emu: Emulator
    path: dict[str, str]
    request_id: str
    idempotency_key: str | None

    @property
    def store(self) -> Store:
        return self.emu.store

    def coll(self, object_name: str) -> Collection:
        return self.emu.store.collection(object_name)

    def now(self) -> int:
        return self.emu.now()

    def emit(
        self, type_: str, obj: dict[str, Any], previous: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Record an event (and queue its webhook deliveries) for a change this request made."""
        event = self.emu.events.emit(
            type_, obj, previous, request_id=self.request_id, idempotency_key=self.idempotency_key
        )
        for listener in self.emu.listeners:
            listener(self, event)
        return event


def seeder(fn: Callable[[Emulator], None]) -> Callable[[Emulator], None]:
    """Register demo data to create at start and after each reset (unless `--empty`)."""
    Emulator.seeders.append(fn)
    return fn


def listener(fn: Listener) -> Listener:
    """Register a function called with every event recorded through `Ctx.emit`."""
    Emulator.listeners.append(fn)
    return fn


def includable(object_name: str, field: str) -> Callable[[Includer], Includer]:
    """Register a field that is absent unless expanded (a session's `line_items`)."""

    def register(fn: Includer) -> Includer:
        Emulator.includers[(object_name, field)] = fn
        return fn

    return register
