"""Webhook delivery: signed POSTs to every endpoint, retried with backoff, never on the API path.

Each endpoint has one worker that sends its events in the order they happened; a failed delivery
is rescheduled with exponential backoff without holding up the ones behind it. Injected webhook
faults duplicate, reorder, delay or drop deliveries.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import orjson

from emulator.config import Config
from emulator.faults import Fault
from emulator.store import Store

log = logging.getLogger("emulator.webhooks")
MAX_BACKOFF_S = 60.0


def sign(payload: bytes, secret: str, timestamp: int) -> str:
    """The `Stripe-Signature` header value for a payload, as Stripe computes it."""
    signed = f"{timestamp}.".encode() + payload
    digest = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


@dataclass(slots=True)
class Delivery:
    event: dict[str, Any]
    payload: bytes
    url: str
    secret: str
    generation: int
    attempt: int = 1


class Webhooks:
    def __init__(self, config: Config, now: Callable[[], int]) -> None:
        self.config = config
        self.now = now
        self.faults_source: Callable[[str], Fault | None] = lambda _type: None
        self.log: deque[dict[str, Any]] = deque(maxlen=5000)
        self.generation = 0
        # POSTs sent and not yet answered; a reset does not recall them.
        self.in_flight = 0
        self._queues: dict[str, asyncio.Queue[Delivery]] = {}
        self._workers: list[asyncio.Task[None]] = []
        self._held: list[list[Delivery]] = []
        self._hold_for = 0
        self._client: httpx.AsyncClient | None = None

    def clear(self) -> None:
        self.generation += 1
        self.log.clear()
        self._held.clear()
        self._hold_for = 0

    def targets(self, event_type: str, store: Store) -> list[tuple[str, str]]:
        found = [(url, self.config.webhook_secret) for url in self.config.webhook_urls]
        for endpoint in store.collection("webhook_endpoint").by_id.values():
            enabled = endpoint["enabled_events"]
            if endpoint["status"] == "enabled" and ("*" in enabled or event_type in enabled):
                found.append((endpoint["url"], store.hidden_of(endpoint["id"])["secret"]))
        return found

    def dispatch(self, event: dict[str, Any], store: Store) -> None:
        targets = self.targets(event["type"], store)
        if not targets:
            return
        event["pending_webhooks"] = len(targets)
        payload = orjson.dumps(event, option=orjson.OPT_INDENT_2)
        deliveries = [
            Delivery(event, payload, url, secret, self.generation) for url, secret in targets
        ]
        if self._hold_for:
            self._hold(deliveries)
            return
        fault = self.faults_source(event["type"])
        if fault is None:
            self._enqueue(deliveries)
        elif fault.webhook == "drop":
            self._record(deliveries[0], status=None, error="dropped by fault")
        elif fault.webhook == "duplicate":
            self._enqueue([d for d in deliveries for _ in range(max(1, fault.copies))])
        elif fault.webhook == "delay":
            loop = asyncio.get_running_loop()
            loop.call_later(fault.delay_ms / 1000, self._enqueue, deliveries)
        elif fault.webhook == "reorder":
            self._hold_for = max(2, fault.batch)
            self._hold(deliveries)

    def _hold(self, deliveries: list[Delivery]) -> None:
        """Keep events back until a reorder fault's batch is full, then send them newest first."""
        self._held.append(deliveries)
        if len(self._held) >= self._hold_for:
            held, self._held, self._hold_for = self._held, [], 0
            for group in reversed(held):
                self._enqueue(group)

    def _enqueue(self, deliveries: list[Delivery]) -> None:
        for delivery in deliveries:
            queue = self._queues.get(delivery.url)
            if queue is None:
                queue = self._queues[delivery.url] = asyncio.Queue()
                self._workers.append(asyncio.create_task(self._worker(queue)))
            queue.put_nowait(delivery)

    async def _worker(self, queue: asyncio.Queue[Delivery]) -> None:
        while True:
            delivery = await queue.get()
            batch = [delivery]
            # Duplicates of one event (a fault) go out together, as parallel deliveries.
            while not queue.empty() and queue._queue[0].event is delivery.event:  # type: ignore[attr-defined]
                batch.append(queue.get_nowait())
            await asyncio.gather(*(self._send(d, queue) for d in batch))

    async def _send(self, delivery: Delivery, queue: asyncio.Queue[Delivery]) -> None:
        if delivery.generation != self.generation:
            return  # queued before a reset
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self.config.webhook_timeout_s)
        header = sign(delivery.payload, delivery.secret, self.now())
        status: int | None = None
        error: str | None = None
        self.in_flight += 1
        try:
            response = await self._client.post(
                delivery.url,
                content=delivery.payload,
                headers={
                    "Content-Type": "application/json; charset=utf-8",
                    "Stripe-Signature": header,
                    "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
                },
            )
            status = response.status_code
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"
        finally:
            self.in_flight -= 1
        self._record(delivery, status=status, error=error)
        if status is not None and 200 <= status < 300:
            delivery.event["pending_webhooks"] = max(0, delivery.event["pending_webhooks"] - 1)
            return
        if delivery.attempt >= self.config.webhook_max_attempts:
            log.warning("webhook %s to %s given up", delivery.event["id"], delivery.url)
            return
        backoff = min(
            MAX_BACKOFF_S, self.config.webhook_retry_base_ms / 1000 * 2 ** (delivery.attempt - 1)
        )
        delivery.attempt += 1
        asyncio.get_running_loop().call_later(backoff, queue.put_nowait, delivery)

    def _record(self, delivery: Delivery, *, status: int | None, error: str | None) -> None:
        self.log.append(
            {
                "event": delivery.event["id"],
                "type": delivery.event["type"],
                "url": delivery.url,
                "attempt": delivery.attempt,
                "status": status,
                "error": error,
                "at": self.now(),
            }
        )

    async def close(self) -> None:
        for task in self._workers:
            task.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        self._workers.clear()
        self._queues.clear()
        if self._client is not None:
            await self._client.aclose()
            self._client = None
