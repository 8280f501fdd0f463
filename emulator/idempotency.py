"""`Idempotency-Key`, as Stripe keeps it: replay, conflict, in-flight, expiry after 24 hours.

A result is saved only once the call has started executing: a request refused by parameter
validation, or by an injected fault before execution, saves nothing and may be retried with the
same key.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from emulator.errors import StripeError

TTL_SECONDS = 24 * 60 * 60


@dataclass(slots=True)
class Saved:
    fingerprint: tuple[str, str, Any]
    created: int
    status: int = 0
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def in_flight(self) -> bool:
        return self.status == 0


class IdempotencyStore:
    def __init__(self, now: Callable[[], int]) -> None:
        self.now = now
        self.saved: dict[tuple[str, str], Saved] = {}
        self.expiry: deque[tuple[int, tuple[str, str]]] = deque()
        # Answers given so far (`GET /_emulator/health`): 409 `idempotency_key_in_use`, replays.
        self.in_use = 0
        self.replayed = 0

    def clear(self) -> None:
        self.saved.clear()
        self.expiry.clear()
        self.in_use = self.replayed = 0

    def begin(self, account: str, key: str, method: str, path: str, params: Any) -> Saved | None:
        """The saved result to replay, or None after marking this key as in flight."""
        self._expire()
        fingerprint = (method, path, params)
        saved = self.saved.get((account, key))
        if saved is not None:
            if saved.in_flight:
                self.in_use += 1
                raise StripeError(
                    409,
                    "idempotency_error",
                    "There is currently another in-progress request using this Idempotency Key "
                    "(that probably means you submitted twice, and the other request is still "
                    f"going through): {key}. Please try again later.",
                    code="idempotency_key_in_use",
                )
            if saved.fingerprint != fingerprint:
                raise StripeError(
                    400,
                    "idempotency_error",
                    "Keys for idempotent requests can only be used with the same parameters they "
                    f"were first used with. Try using a key other than '{key}' if you meant to "
                    "execute a different request.",
                )
            self.replayed += 1
            return saved
        created = self.now()
        self.saved[(account, key)] = Saved(fingerprint=fingerprint, created=created)
        self.expiry.append((created, (account, key)))
        return None

    def finish(
        self, account: str, key: str, status: int, body: bytes, headers: dict[str, str]
    ) -> None:
        saved = self.saved.get((account, key))
        if saved is not None:
            saved.status, saved.body, saved.headers = status, body, headers

    def abandon(self, account: str, key: str) -> None:
        """Forget a key whose request never executed (refused by a fault before the call)."""
        saved = self.saved.get((account, key))
        if saved is not None and saved.in_flight:
            del self.saved[(account, key)]

    def _expire(self) -> None:
        cutoff = self.now() - TTL_SECONDS
        while self.expiry and self.expiry[0][0] <= cutoff:
            _, key = self.expiry.popleft()
            saved = self.saved.get(key)
            if saved is not None and saved.created <= cutoff:
                del self.saved[key]
