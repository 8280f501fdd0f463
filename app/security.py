"""Hostile input, refused before any endpoint runs, as pure ASGI middleware:

- a per-client-IP rate limit on the public endpoint (fixed windows, counted in Redis when
  `RATE_LIMIT_REDIS_URL` is set so every replica shares them, else in this process) → 429;
- a cap on the request body, checked on `Content-Length` and again while the body streams in
  (never more than the cap is held) → 413;
- a body nested deeper than any request needs, and a NUL character (U+0000) in the path, the
  query string or the body → 400 (`app.request_checks`), on every endpoint: before any parser
  recurses, and before anything is written or sent to Stripe;
- card data: a value (or key) in the body or the query string that is a card number (13 to
  19 digits, spaces or dashes allowed between them, passing Luhn) → 400 `card_data_refused`
  naming its parameter, and the body is neither processed nor logged. Key names are not card
  data: a metadata key `number` or `card` is accepted, while `card[number]=4242…` is refused
  for its value. The service never handles card numbers: Stripe.js sends them to Stripe
  directly. Stripe's own webhook deliveries are exempt (they describe cards by brand and last
  four digits);
- every error body the service sends passes through the log redaction, so no secret it might
  quote leaves in a response.
"""

from __future__ import annotations

import json
import logging
import math
import time
from typing import Protocol

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.log import Redactor
from app.request_body import replay
from app.request_checks import Refusal, check_body, check_path, check_query

log = logging.getLogger("app.security")

BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class RateLimiter(Protocol):
    async def hit(self, key: str, limit: int, window: int) -> float | None:
        """Count one request; the seconds until the window ends if it is over `limit`."""

    async def close(self) -> None: ...


class MemoryRateLimiter:
    """Fixed windows in this process: right for one process, not for replicas."""

    def __init__(self) -> None:
        self._counts: dict[tuple[str, int, int], int] = {}
        self._slot: dict[int, int] = {}

    async def hit(self, key: str, limit: int, window: int) -> float | None:
        now = time.time()
        slot = int(now // window)
        if self._slot.get(window) != slot:
            self._slot[window] = slot
            self._counts = {k: v for k, v in self._counts.items() if k[1] != window or k[2] == slot}
        counted = (key, window, slot)
        self._counts[counted] = self._counts.get(counted, 0) + 1
        if self._counts[counted] > limit:
            return (slot + 1) * window - now
        return None

    async def close(self) -> None:
        self._counts.clear()


class RedisRateLimiter:
    """Fixed windows in Redis (INCR, then EXPIRE with the window): shared by every replica.
    When Redis cannot be reached the request is let through and the failure logged: a payment
    is not refused because the limiter is down."""

    def __init__(self, url: str, prefix: str = "payments:ratelimit") -> None:
        import redis.asyncio

        self._redis = redis.asyncio.Redis.from_url(
            url, socket_timeout=1.0, socket_connect_timeout=1.0
        )
        self._prefix = prefix

    async def hit(self, key: str, limit: int, window: int) -> float | None:
        import redis

        now = time.time()
        slot = int(now // window)
        name = f"{self._prefix}:{window}:{slot}:{key}"
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.incr(name)
                pipe.expire(name, window + 1)
                count, _ = await pipe.execute()
        except redis.RedisError as error:
            log.error("rate limit backend unavailable; request let through: %s", type(error))
            return None
        if int(count) > limit:
            return (slot + 1) * window - now
        return None

    async def close(self) -> None:
        await self._redis.aclose()


def make_rate_limiter(redis_url: str | None) -> RateLimiter:
    return RedisRateLimiter(redis_url) if redis_url else MemoryRateLimiter()


class SecurityMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        redact: Redactor,
        max_body: int,
        public_paths: frozenset[str] = frozenset(),
        public_max_body: int | None = None,
        rate: tuple[int, int] | None = None,
        limiter: RateLimiter | None = None,
        card_exempt: frozenset[str] = frozenset(),
    ) -> None:
        self.app = app
        self.redact = redact
        self.max_body = max_body
        self.public_paths = public_paths
        self.public_max_body = public_max_body or max_body
        self.rate = rate
        self.limiter = limiter
        self.card_exempt = card_exempt

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        send = _RedactErrors(send, self.redact)
        path: str = scope["path"]
        method: str = scope["method"]
        public = path in self.public_paths
        if public and method == "POST" and self.rate and self.limiter:
            client = scope.get("client")
            retry = await self.limiter.hit(client[0] if client else "unknown", *self.rate)
            if retry is not None:
                log.warning("rate limited", extra={"path": path, "client": _ip(scope)})
                seconds = str(max(1, math.ceil(retry)))
                await _error(
                    send,
                    429,
                    "rate_limit_error",
                    "rate_limited",
                    f"Too many requests from this address: at most {self.rate[0]} every "
                    f"{self.rate[1]} seconds. Retry after {seconds} seconds.",
                    headers=[(b"retry-after", seconds.encode())],
                )
                return
        cards = path not in self.card_exempt
        refusal = check_path(path) or check_query(scope.get("query_string", b""), cards=cards)
        if refusal:
            await _refuse(scope, send, refusal)
            return
        if method not in BODY_METHODS:
            await self.app(scope, receive, send)
            return
        cap = self.public_max_body if public else self.max_body
        headers = dict(scope["headers"])
        declared = headers.get(b"content-length", b"").strip()
        if declared.isdigit() and int(declared) > cap:
            await _too_large(send, cap)
            return
        body = await _read_capped(receive, cap)
        if body is None:
            await _too_large(send, cap)
            return
        content_type = headers.get(b"content-type", b"").decode("latin-1").lower()
        refusal = check_body(body, content_type, cards=cards)
        if refusal:
            await _refuse(scope, send, refusal)
            return
        await self.app(scope, replay(body, receive), send)


class _RedactErrors:
    """Holds an error response's body until it is complete, then sends it redacted."""

    def __init__(self, send: Send, redact: Redactor) -> None:
        self.send = send
        self.redact = redact
        self.start: Message | None = None
        self.chunks: list[bytes] = []

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start" and message["status"] >= 400:
            self.start = message
            return
        if self.start is None or message["type"] != "http.response.body":
            await self.send(message)
            return
        self.chunks.append(message.get("body", b""))
        if message.get("more_body"):
            return
        body = self.redact(b"".join(self.chunks).decode("utf-8", errors="replace")).encode()
        headers = [(k, v) for k, v in self.start.get("headers", []) if k != b"content-length"]
        headers.append((b"content-length", str(len(body)).encode()))
        await self.send({**self.start, "headers": headers})
        await self.send({"type": "http.response.body", "body": body})


async def _refuse(scope: Scope, send: Send, refusal: Refusal) -> None:
    log.warning(
        "request refused: %s", refusal.reason, extra={"path": scope["path"], "client": _ip(scope)}
    )
    await _error(
        send, 400, "invalid_request_error", refusal.code, refusal.message, param=refusal.param
    )


def _ip(scope: Scope) -> str:
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


async def _read_capped(receive: Receive, cap: int) -> bytes | None:
    """The body, or None as soon as it exceeds `cap` bytes (the rest is not read)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > cap:
            return None
        chunks.append(chunk)
        if not message.get("more_body"):
            break
    return b"".join(chunks)


async def _too_large(send: Send, cap: int) -> None:
    await _error(
        send,
        413,
        "invalid_request_error",
        "request_too_large",
        f"The request body is larger than this endpoint accepts ({cap} bytes).",
    )


async def _error(
    send: Send,
    status: int,
    error_type: str,
    code: str,
    message: str,
    *,
    param: str | None = None,
    headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    body = json.dumps(
        {"error": {"type": error_type, "code": code, "message": message, "param": param}}
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
