"""Deliveries signed the way Stripe signs its webhooks: `Payments-Signature: t=<unix seconds>,
v1=<hex HMAC-SHA256 of "<t>." + body>`, one `v1` per active secret (two during a rotation's
grace period), so a subscriber holding either secret verifies."""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Sequence
from datetime import datetime

from app.models.base import aware

SIGNATURE_HEADER = "Payments-Signature"
DEFAULT_TOLERANCE_SECONDS = 300


class SignatureError(ValueError):
    """A delivery whose signature does not verify; the message says why."""


def _digest(secret: str, timestamp: int | str, body: bytes) -> str:
    signed = f"{timestamp}.".encode() + body
    return hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def sign(body: bytes, secrets: Sequence[str], timestamp: int) -> str:
    """The header's value for `body` sent at `timestamp`, with a `v1` per secret, in order."""
    if not secrets:
        raise ValueError("at least one secret is needed to sign")
    return ",".join([f"t={timestamp}", *(f"v1={_digest(s, timestamp, body)}" for s in secrets)])


def active_secrets(
    secret: str, previous: str | None, previous_expires: datetime | None, now: datetime
) -> list[str]:
    """An endpoint's secret, then its previous one while that is still within its grace."""
    found = [secret]
    if previous and previous_expires is not None and aware(previous_expires) > aware(now):
        found.append(previous)
    return found


def verify(
    body: bytes,
    header: str | None,
    secret: str,
    *,
    tolerance: int = DEFAULT_TOLERANCE_SECONDS,
    now: int | None = None,
) -> None:
    """Raise `SignatureError` unless `header` signs `body` with `secret` within `tolerance`
    seconds of `now` (the clock's time by default)."""
    if not header or not header.strip():
        raise SignatureError(f"no {SIGNATURE_HEADER} header")
    pairs = [part.strip().partition("=") for part in header.split(",")]
    if any(not sep or not key for key, sep, _ in pairs):
        raise SignatureError(f"malformed {SIGNATURE_HEADER} header: expected t=…,v1=…")
    timestamps = [value for key, _, value in pairs if key == "t"]
    signatures = [value for key, _, value in pairs if key == "v1"]
    if len(timestamps) != 1 or not (timestamps[0].isascii() and timestamps[0].isdigit()):
        raise SignatureError(f"malformed {SIGNATURE_HEADER} header: one numeric t= is needed")
    if not signatures:
        raise SignatureError(f"malformed {SIGNATURE_HEADER} header: no v1 signature")
    timestamp = int(timestamps[0])
    current = int(time.time()) if now is None else now
    if timestamp < current - tolerance:
        raise SignatureError(
            f"timestamp too old: signed {current - timestamp} s ago, tolerance {tolerance} s"
        )
    expected = _digest(secret, timestamps[0], body).encode()
    if not any(hmac.compare_digest(expected, candidate.encode()) for candidate in signatures):
        raise SignatureError("no v1 signature matches the body with this secret")
