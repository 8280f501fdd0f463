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
    # The simulated time this context acts at (billing over a test clock), else the emulator's.
    at: int | None = None
    # Called with a publishable key (Stripe.js): `emulator.client_keys` decides what it sees.
    client: bool = False

    @property
    def store(self) -> Store:
        return self.emu.store

    def coll(self, object_name: str) -> Collection:
        return self.emu.store.collection(object_name)

    def now(self) -> int:
        return self.emu.now() if self.at is None else self.at

    def at_time(self, at: int | None) -> Ctx:
        """This request's context acting at `at` (None: the emulator's clock)."""
        return Ctx(self.emu, self.path, self.request_id, self.idempotency_key, at, self.client)

    def clock_time(self, obj: dict[str, Any]) -> int | None:
        """The frozen time of the test clock `obj` lives on: its own `test_clock`, else its
        customer's; None for an object on real time."""
        clock_id = obj.get("test_clock")
        if clock_id is None:
            customer_id = obj.get("customer")
            if isinstance(customer_id, str):
                customer = self.emu.store.collection("customer").find(customer_id)
                clock_id = customer.get("test_clock") if customer else None
        if not isinstance(clock_id, str):
            return None
        clock = self.emu.store.collection("test_helpers.test_clock").find(clock_id)
        return int(clock["frozen_time"]) if clock else None

    def emit(
        self, type_: str, obj: dict[str, Any], previous: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Record an event (and queue its webhook deliveries) for a change this request made,
        stamped with the time it happened: the simulated time, or the object's test clock."""
        created = self.at if self.at is not None else self.clock_time(obj)
        event = self.emu.events.emit(
            type_,
            obj,
            previous,
            request_id=self.request_id,
            idempotency_key=self.idempotency_key,
            created=created,
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
