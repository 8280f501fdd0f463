"""API keys: `Authorization: Bearer <key>`, compared in constant time with `API_KEYS`."""

from __future__ import annotations

import hashlib
import hmac
from typing import Annotated

from fastapi import Depends, Request

from app.errors import Unauthorized


def key_digest(key: str) -> str:
    """How a key is identified when stored (idempotency keys are scoped by it): SHA-256."""
    return hashlib.sha256(key.encode()).hexdigest()


async def _caller(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, presented = header.partition(" ")
    if scheme.lower() != "bearer" or not presented:
        raise Unauthorized(
            "No API key provided: send `Authorization: Bearer <key>`.", code="api_key_missing"
        )
    digest = key_digest(presented.strip())
    matched = False
    for known in request.app.state.api_key_digests:
        matched |= hmac.compare_digest(digest, known)
    if not matched:
        raise Unauthorized("Invalid API key.")
    return digest


# The caller, identified by the SHA-256 of its API key.
Caller = Annotated[str, Depends(_caller)]
