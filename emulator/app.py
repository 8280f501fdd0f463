"""The emulator's ASGI application: Stripe's wire protocol around the route table.

One request: route → API key → `Stripe-Version` (`emulator.versions`) → injected faults →
parameters decoded and validated → the idempotency key checked → Stripe's latency → the handler →
`expand` → the response, with Stripe's headers. Any failure becomes Stripe's error envelope;
nothing answers with a traceback.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import secrets
from typing import Any

import orjson

from emulator import client_keys, resources, stripe_js, versions  # noqa: F401 - routes
from emulator.config import Config
from emulator.context import Ctx, Emulator
from emulator.errors import StripeError, invalid_request, unrecognized_url
from emulator.expand import expand
from emulator.forms import decode
from emulator.resources import controls
from emulator.routing import Response, Route, router
from emulator.schema import validate

log = logging.getLogger("emulator")
MAX_BODY = 1024 * 1024
_JSON = b"application/json"

Scope = dict[str, Any]
Receive = Any
Send = Any


class DropConnection(Exception):
    """Raised after the response has started, so the server closes the socket mid-response."""


class DropFilter(logging.Filter):
    """Keeps uvicorn from logging a traceback for a connection the emulator drops on purpose."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, DropConnection)


class EmulatorApp:
    def __init__(self, config: Config) -> None:
        self.emu = Emulator(config)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        request_id = "req_" + secrets.token_urlsafe(10).replace("-", "a").replace("_", "b")
        cors = scope["path"].startswith("/v1/") and _header(scope, b"origin") is not None
        if cors and scope["method"] == "OPTIONS":
            await _preflight(scope, send)
            return
        try:
            status, body, content_type, headers, drop = await self._handle(
                scope, receive, request_id
            )
        except StripeError as exc:
            status, content_type, drop = exc.status, _JSON, False
            body = orjson.dumps(exc.body(request_id))
            headers = exc.headers
        except Exception:
            log.exception("emulator error on %s %s", scope["method"], scope["path"])
            status, content_type, headers, drop = 500, _JSON, {}, False
            body = orjson.dumps(
                StripeError(500, "api_error", "An unknown error occurred.").body(request_id)
            )
        raw_headers = [
            (b"content-type", content_type),
            (b"request-id", request_id.encode()),
            (b"stripe-version", versions.answered(_version_header(scope)).encode("latin-1")),
        ]
        raw_headers.extend((k.lower().encode(), v.encode()) for k, v in headers.items())
        if cors:
            # Stripe's API answers browsers (Stripe.js) from any origin.
            raw_headers.append((b"access-control-allow-origin", b"*"))
            raw_headers.append((b"access-control-expose-headers", b"Request-Id, Stripe-Version"))
        if drop:
            raw_headers.append((b"content-length", str(len(body) + 1024).encode()))
            await send({"type": "http.response.start", "status": status, "headers": raw_headers})
            await send(
                {"type": "http.response.body", "body": body[: len(body) // 2], "more_body": True}
            )
            raise DropConnection
        raw_headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": raw_headers})
        await send({"type": "http.response.body", "body": body})

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                freezer = asyncio.create_task(_freeze_old_objects())
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                freezer.cancel()
                await self.emu.webhooks.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _handle(
        self, scope: Scope, receive: Receive, request_id: str
    ) -> tuple[int, bytes, bytes, dict[str, str], bool]:
        method: str = scope["method"]
        path: str = scope["path"]
        found = router.match(method, path)
        if found is None:
            raise unrecognized_url(method, path)
        route, path_params = found
        body = await _read_body(receive)
        emu = self.emu
        account, client = _api_key(scope, route, body) if route.api else ("", False)
        if route.api:
            controls.count_request(emu, route.name)
            versions.check(_version_header(scope))
        key = (_header(scope, b"idempotency-key") or b"").decode() or None
        faults = emu.faults.for_request(method, route.template, path) if route.api else []
        drop_after = False
        latency_ms = emu.config.latency_ms if route.api else 0
        for fault in faults:
            if fault.drop == "before":
                return 500, b"", _JSON, {}, True
            if fault.status is not None:
                raise _fault_error(fault.status, fault.retry_after)
            latency_ms += fault.latency_ms
            drop_after = drop_after or fault.drop == "after"
        params = _params(route, scope, body, (emu, path_params) if client else None)
        if not (route.api and method == "POST"):
            key = None
        if key is not None:
            saved = emu.idempotency.begin(account, key, method, path, params)
            if saved is not None:
                headers = {**saved.headers, "Idempotent-Replayed": "true"}
                return saved.status, saved.body, _JSON, headers, drop_after
        try:
            # After the key is marked in flight, so a concurrent retry with it sees a 409.
            if latency_ms:
                await asyncio.sleep(latency_ms / 1000)
            ctx = Ctx(
                emu=emu, path=path_params, request_id=request_id, idempotency_key=key, client=client
            )
            status, out, content_type, headers = _run(route, ctx, params)
        except StripeError as exc:
            if client:
                client_keys.view_error(exc)
            if key is not None:
                error_body = orjson.dumps(exc.body(request_id))
                emu.idempotency.finish(account, key, exc.status, error_body, exc.headers)
            raise
        except BaseException:
            if key is not None:
                emu.idempotency.abandon(account, key)
            raise
        if key is not None:
            headers = {**headers, "Idempotency-Key": key}
            emu.idempotency.finish(account, key, status, out, headers)
        return status, out, content_type, headers, drop_after


async def _freeze_old_objects() -> None:
    """Keep the cyclic GC from walking the whole store.

    The store holds millions of small dicts that live until a reset; a full collection walks
    them all and stalls every request for hundreds of milliseconds once 100,000 objects are
    stored. Moving what survived into the permanent generation each second keeps collections
    proportional to the last second's garbage (stored dicts are freed by reference counting).
    """
    while True:
        await asyncio.sleep(1)
        gc.freeze()


def _run(
    route: Route, ctx: Ctx, params: dict[str, Any]
) -> tuple[int, bytes, bytes, dict[str, str]]:
    result = route.handler(ctx, params)
    if isinstance(result, Response):
        return result.status, result.body, result.content_type.encode(), result.headers
    paths = params.get("expand")
    if paths:
        result = expand(ctx.emu, result, paths)
    if ctx.client:
        result = client_keys.view(result)
    return 200, orjson.dumps(result), _JSON, {}


def _params(
    route: Route,
    scope: Scope,
    body: bytes,
    client: tuple[Emulator, dict[str, str]] | None = None,
) -> dict[str, Any]:
    """The request's parameters, validated against the route's schema; for a publishable key
    (`client`: the emulator and the path's parameters), its `key` and client secret checked and
    removed first."""
    if route.body == "json":
        if not body:
            return {}
        try:
            parsed = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise invalid_request("Invalid JSON body.") from None
        if not isinstance(parsed, dict):
            raise invalid_request("The JSON body must be an object.")
        return parsed
    raw = _raw_params(route, scope, body)
    if client is not None:
        client_keys.check_params(client[0], client[1], raw)
    return validate(route.schema, raw) if route.api else raw


def _raw_params(route: Route, scope: Scope, body: bytes) -> dict[str, Any]:
    raw = decode(scope.get("query_string", b""))
    if route.body == "form" and body:
        raw.update(decode(body))
    return raw


async def _read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY:
            raise invalid_request(f"Request body too large: the limit is {MAX_BODY} bytes.")
        chunks.append(chunk)
        if not message.get("more_body"):
            return b"".join(chunks)


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value)
    return None


def _version_header(scope: Scope) -> str | None:
    raw = _header(scope, b"stripe-version")
    return None if raw is None else raw.decode("latin-1").strip()


def _api_key(scope: Scope, route: Route, body: bytes) -> tuple[str, bool]:
    """The caller's key, from `Authorization` or, for a publishable key as Stripe.js sends it, the
    `key` parameter; and whether it is a publishable key (allowed on client-side calls only)."""
    key = _header_key(scope)
    if not key:
        given = _raw_params(route, scope, body).get("key")
        if isinstance(given, str) and client_keys.is_publishable(given):
            key = given
    if not key:
        raise StripeError(
            401,
            "invalid_request_error",
            "You did not provide an API key. You need to provide your API key in the "
            "Authorization header, using Bearer auth (e.g. 'Authorization: Bearer "
            "YOUR_SECRET_KEY'). See https://stripe.com/docs/api#authentication for details, "
            "or we can help at https://support.stripe.com/.",
        )
    if client_keys.is_publishable(key):
        client_keys.check_route(route)
        return key, True
    if not key.startswith(("sk_test_", "rk_test_")):
        shown = key[:8] + "*" * 12 + key[-4:] if len(key) > 12 else "*" * len(key)
        raise StripeError(
            401,
            "invalid_request_error",
            f"Invalid API Key provided: {shown}",
            code="api_key_invalid"
            if not key.startswith(("sk_live_", "pk_live_"))
            else "livemode_mismatch",
        )
    return key, False


def _header_key(scope: Scope) -> str:
    auth = (_header(scope, b"authorization") or b"").decode("latin-1")
    if auth.startswith("Bearer "):
        return auth[7:].strip()
    if auth.startswith("Basic "):
        import base64
        import binascii

        try:
            return base64.b64decode(auth[6:]).decode().split(":", 1)[0]
        except (binascii.Error, UnicodeDecodeError):
            return ""
    return ""


async def _preflight(scope: Scope, send: Send) -> None:
    """A browser's CORS preflight for `/v1`: every origin, the methods and headers Stripe's API
    takes."""
    requested = _header(scope, b"access-control-request-headers") or b""
    headers = [
        (b"access-control-allow-origin", b"*"),
        (b"access-control-allow-methods", b"GET, POST, DELETE"),
        (b"access-control-allow-headers", requested or b"Authorization, Content-Type"),
        (b"access-control-max-age", b"300"),
        (b"content-length", b"0"),
    ]
    await send({"type": "http.response.start", "status": 204, "headers": headers})
    await send({"type": "http.response.body", "body": b""})


def _fault_error(status: int, retry_after: int | None) -> StripeError:
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
    if status == 402:
        return StripeError(
            402,
            "card_error",
            "Your card was declined.",
            code="card_declined",
            decline_code="generic_decline",
            headers=headers,
        )
    if status == 429:
        return StripeError(
            429,
            "invalid_request_error",
            "Too many requests hit the API too quickly. We recommend an exponential backoff of "
            "your requests.",
            code="rate_limit",
            headers=headers,
        )
    if status >= 500:
        return StripeError(status, "api_error", "An unknown error occurred.", headers=headers)
    return StripeError(status, "invalid_request_error", "Injected error.", headers=headers)


def create_app(config: Config) -> EmulatorApp:
    return EmulatorApp(config)
