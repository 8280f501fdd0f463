"""`Idempotency-Key` on our own POST endpoints, as pure ASGI middleware.

The first request with a key claims it (a row committed at once, so every replica sees it), runs,
and stores its response; the same key and body later replay that response for 24 hours. The same
key with another body is a 400 `idempotency_error`; a key whose first request is still running is
a 409 the caller can retry.

As Stripe does, a result is kept only once the endpoint started executing: a 2xx, or a 4xx given
after the request called Stripe to change something (a decline, Stripe's refusal; the gateway
marks it with `started_executing`). A 4xx given before (a validation error, a refusal of our
own) is not kept, so a corrected request may reuse the key; nor is a 5xx (or 401/409/429): the
key is released, and the retry resumes what the first request left (its order, its row).

A claim whose request never finished is taken over by the same request: at once when the
process that claimed it is dead (app.liveness: on Postgres a claim names its holder, whose
advisory lock dies with it), else once it is older than the longest a request can run (the
Stripe timeout times its tries, plus a margin), so a retry is not refused for 24 hours.

On Postgres, an endpoint named in `deferred_paths` writes the claim itself, in the same statement
as its first write (one round trip fewer): it finds the `Claim` with `claim_of(request)`, adds
`CLAIM` (parameters `Claim.params`) to that statement and marks it `claimed`; it may store its
200 answer in its last statement too (`ANSWER`, parameters `Claim.answer`; marked `answered`),
returning exactly that body. When its first statement fails on a unique key, it raises
`ClaimTaken`: the middleware claims the key itself and answers as it would have (or runs the
endpoint again, the claim now written). An answer given before the claim was written (a refusal
before any write) is then claimed and kept as any other, or, when the key is another request's,
replaced by the key's answer.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

import orjson
from sqlalchemy import Executable, Table, bindparam, delete, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app import pg_direct
from app.auth import key_digest
from app.db import autocommit, is_postgres
from app.liveness import Holder
from app.models import IdempotencyKey
from app.models.base import aware, utcnow
from app.request_body import replay

NOT_KEPT = {401, 409, 429}
MAX_KEY_LENGTH = 255
LEASE_MARGIN_SECONDS = 30


@dataclass(slots=True)
class Claim:
    """This request's claim of its key, for an endpoint that writes it (see the module's doc)."""

    owner: str
    key: str
    fingerprint: str
    holder: int | None = None
    claimed: bool = False
    answered: bool = False

    def params(self) -> dict[str, Any]:
        """CLAIM's parameters."""
        return {
            "k_owner": self.owner,
            "k_key": self.key,
            "k_fingerprint": self.fingerprint,
            "k_created_at": utcnow(),
            "k_holder": self.holder,
        }

    def answer(
        self,
        body: bytes,
        status: int = 200,
        headers: Sequence[tuple[str, str]] = (("content-type", "application/json"),),
    ) -> dict[str, Any]:
        """ANSWER's parameters: this answer (by default a 200 with a JSON body), as kept."""
        stored = orjson.dumps({"headers": headers, "body": body.decode("utf-8")}).decode()
        return {**self.this_key(), "a_status_code": status, "a_response": stored}

    def this_key(self) -> dict[str, Any]:
        """The release's parameters (and the row ANSWER updates)."""
        return {"a_owner": self.owner, "a_key": self.key}


class ClaimTaken(Exception):
    """Raised by an endpoint whose statement with CLAIM failed on a unique key: the key's, or
    the endpoint's own (an earlier request's order with the key, whose claim may be gone)."""


@dataclass(slots=True)
class _Execution:
    started: bool = False


_EXECUTION: ContextVar[_Execution | None] = ContextVar("idempotency_execution", default=None)


def started_executing() -> None:
    """Mark the request as having started executing (it is about to ask Stripe to change
    something): from now on its answer is kept under its key, whatever it is, but a 5xx."""
    execution = _EXECUTION.get()
    if execution is not None:
        execution.started = True


def claim_of(request: Request) -> Claim | None:
    """The claim the endpoint is to write, if the middleware left it one."""
    claim = request.scope.get("state", {}).get(_CLAIM_STATE)
    return claim if isinstance(claim, Claim) and not claim.claimed else None


class IdempotencyMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        ttl_seconds: int = 24 * 60 * 60,
        deferred_paths: frozenset[str] = frozenset(),
    ) -> None:
        self.app = app
        self.ttl = timedelta(seconds=ttl_seconds)
        self.deferred_paths = deferred_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        key = headers.get(b"idempotency-key", b"").decode("latin-1").strip()
        if not key:
            await self.app(scope, receive, send)
            return
        if len(key) > MAX_KEY_LENGTH:
            await _error(send, 400, "Idempotency-Key is longer than 255 characters.")
            return
        body = await _read_body(receive)
        owner = _owner(headers.get(b"authorization", b""), scope.get("client"))
        fingerprint = hashlib.sha256(
            b"\n".join([scope["path"].encode(), scope.get("query_string", b""), body])
        ).hexdigest()
        state = scope["app"].state
        sessionmaker: async_sessionmaker[AsyncSession] = state.sessionmaker
        engine: AsyncEngine = state.engine
        lease = timedelta(
            seconds=state.settings.stripe_timeout_seconds
            * (state.settings.stripe_max_network_retries + 1)
            + LEASE_MARGIN_SECONDS
        )
        holder: Holder = state.holder
        claim = Claim(owner, key, fingerprint, await holder.current())

        async def claimed() -> bool:
            """Claim the key here; False when it is taken (and answered)."""
            taken, existing = await self._claim(engine, sessionmaker, claim, lease)
            if taken:
                claim.claimed = True
                return True
            assert existing is not None
            await _replay_or_refuse(send, existing, fingerprint, key)
            return False

        if scope["path"] in self.deferred_paths and is_postgres(engine):
            scope.setdefault("state", {})[_CLAIM_STATE] = claim
        elif not await claimed():
            return
        execution = _Execution()
        token = _EXECUTION.set(execution)
        try:
            try:
                captured = await self._respond(scope, body, receive)
            except ClaimTaken:
                if not await claimed():
                    return
                captured = await self._respond(scope, body, receive)
        except BaseException:
            if claim.claimed:
                await _write(engine, _RELEASE, claim.this_key())
            raise
        finally:
            _EXECUTION.reset(token)
        kept = 200 <= captured.status < 300 or (
            execution.started and captured.status < 500 and captured.status not in NOT_KEPT
        )
        if kept and not claim.claimed and not await claimed():
            # Answered before the endpoint wrote its claim, and the key is another request's:
            # answered as the key's (its stored answer, or a refusal), as if claimed first.
            return
        if claim.claimed and not claim.answered:
            if kept:
                answer = claim.answer(captured.body, captured.status, captured.kept_headers())
                await _write(engine, ANSWER, answer)
            else:
                await _write(engine, _RELEASE, claim.this_key())
        await captured.replay(send)

    async def _respond(self, scope: Scope, body: bytes, receive: Receive) -> _Captured:
        captured = _Captured()
        await self.app(scope, replay(body, receive), captured.send)
        return captured

    async def _claim(
        self,
        engine: AsyncEngine,
        sessionmaker: async_sessionmaker[AsyncSession],
        claim: Claim,
        lease: timedelta,
    ) -> tuple[bool, IdempotencyKey | None]:
        """Claim the key, or the row that holds it. A new key (the usual case) is one INSERT
        on its own; a key in use takes the slower path below."""
        owner, key, fingerprint = claim.owner, claim.key, claim.fingerprint
        try:
            await _write(engine, CLAIM, claim.params())
            return True, None
        except IntegrityError:
            pass
        async with sessionmaker() as session:
            for _ in range(2):
                try:
                    session.add(
                        IdempotencyKey(
                            owner=owner, key=key, fingerprint=fingerprint, holder=claim.holder
                        )
                    )
                    await session.commit()
                    return True, None
                except IntegrityError:
                    await session.rollback()
                existing = await session.scalar(
                    select(IdempotencyKey).where(
                        IdempotencyKey.owner == owner, IdempotencyKey.key == key
                    )
                )
                if existing is None:
                    continue
                if aware(existing.created_at) < utcnow() - self.ttl:
                    await session.delete(existing)
                    await session.commit()
                    continue
                if (
                    existing.status_code is None
                    and existing.fingerprint == fingerprint
                    and await self._take_over(session, existing, claim, utcnow() - lease)
                ):
                    return True, None
                return False, existing
        return False, None

    async def _take_over(
        self,
        session: AsyncSession,
        abandoned: IdempotencyKey,
        claim: Claim,
        started_before: datetime,
    ) -> bool:
        """Claim an in-flight key whose holder died or whose lease ran out; of two retries
        racing for it, one wins."""
        expired = IdempotencyKey.created_at < started_before
        if is_postgres(session):
            # The lock is free only if the process that holds it while it lives has died; taken
            # here, it is released when this transaction ends.
            dead = IdempotencyKey.holder.is_not(None) & func.pg_try_advisory_xact_lock(
                IdempotencyKey.holder
            )
            expired = or_(expired, dead)
        result = await session.execute(
            update(IdempotencyKey)
            .where(
                IdempotencyKey.id == abandoned.id,
                IdempotencyKey.status_code.is_(None),
                expired,
            )
            .values(created_at=utcnow(), holder=claim.holder)
            .execution_options(synchronize_session=False)
        )
        await session.commit()
        return bool(getattr(result, "rowcount", 0) == 1)


async def _write(engine: AsyncEngine, statement: Executable, params: dict[str, Any]) -> None:
    """One statement, in autocommit: no BEGIN and COMMIT round trips around it."""
    if is_postgres(engine):
        await pg_direct.execute(engine, statement, params)
        return
    async with autocommit(engine).connect() as connection:
        await connection.execute(statement, params)


_KEYS = cast(Table, IdempotencyKey.__table__)
_CLAIMED = ("owner", "key", "fingerprint", "created_at", "holder")
# The claim, the answer and the release of a key, the middleware's and (in a statement of its
# own) a deferred endpoint's, parameters from `Claim`; the claim is left to such an endpoint in
# the request's state under `_CLAIM_STATE`.
_CLAIM_STATE = "idempotency_claim"
CLAIM = insert(_KEYS).values({name: bindparam(f"k_{name}") for name in _CLAIMED})
_THIS_KEY = (_KEYS.c.owner == bindparam("a_owner")) & (_KEYS.c.key == bindparam("a_key"))
ANSWER = (
    update(_KEYS)
    .where(_THIS_KEY)
    .values(status_code=bindparam("a_status_code"), response=bindparam("a_response"))
)
_RELEASE = delete(_KEYS).where(_THIS_KEY, _KEYS.c.status_code.is_(None))


class _Captured:
    """A response held back until the key has stored it."""

    def __init__(self) -> None:
        self.status = 500
        self.headers: list[tuple[bytes, bytes]] = []
        self.body = b""

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
            self.headers = list(message.get("headers", []))
        elif message["type"] == "http.response.body":
            self.body += message.get("body", b"")

    def kept_headers(self) -> list[tuple[str, str]]:
        return [
            (k.decode("latin-1"), v.decode("latin-1"))
            for k, v in self.headers
            if k.lower() in (b"content-type", b"retry-after")
        ]

    async def replay(self, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status, "headers": self.headers})
        await send({"type": "http.response.body", "body": self.body})


def _owner(authorization: bytes, client: tuple[str, int] | None) -> str:
    """Whose key it is: the caller's API key digest, or for an anonymous caller (the public
    endpoint) its address, so one browser's stored answer is never replayed to another."""
    token = authorization.decode("latin-1").partition(" ")[2].strip()
    if token:
        return key_digest(token)
    return key_digest("anonymous:" + (client[0] if client else ""))


async def _read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


async def _replay_or_refuse(send: Send, row: IdempotencyKey, fingerprint: str, key: str) -> None:
    if row.fingerprint != fingerprint:
        await _error(
            send,
            400,
            f"Idempotency-Key '{key}' was already used with another request; a key can only be "
            "reused with the same method, path and body.",
            code="idempotency_key_reused",
        )
        return
    if row.status_code is None or row.response is None:
        await _error(
            send,
            409,
            "A request with this Idempotency-Key is still in progress; retry shortly.",
            code="idempotency_key_in_use",
            headers=[(b"retry-after", b"1")],
        )
        return
    stored: dict[str, Any] = orjson.loads(row.response)
    headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in stored["headers"]]
    headers.append((b"idempotent-replayed", b"true"))
    await send({"type": "http.response.start", "status": row.status_code, "headers": headers})
    await send({"type": "http.response.body", "body": stored["body"].encode("utf-8")})


async def _error(
    send: Send,
    status: int,
    message: str,
    *,
    code: str = "idempotency_error",
    headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    body = json.dumps(
        {"error": {"type": "idempotency_error", "code": code, "message": message, "param": None}}
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), *(headers or [])],
        }
    )
    await send({"type": "http.response.body", "body": body})
