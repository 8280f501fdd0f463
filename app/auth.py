"""API keys: `Authorization: Bearer <key>`, compared in constant time with `API_KEYS`."""

from __future__ import annotations

import hashlib
import hmac
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from app.errors import Unauthorized

# The scheme /openapi.json declares on every operation that takes `Caller` (Swagger UI's
# "Authorize"). It refuses nothing itself (`auto_error=False`): `_caller` answers with the
# service's own 401 envelope.
BEARER = HTTPBearer(
    auto_error=False,
    scheme_name="apiKey",
    bearerFormat="API key",
    description="One of the service's API keys (`API_KEYS`), as `Authorization: Bearer <key>`.",
)


def key_digest(key: str) -> str:
    """How a key is identified when stored (idempotency keys are scoped by it): SHA-256."""
    return hashlib.sha256(key.encode()).hexdigest()


async def _caller(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)],
) -> str:
    if credentials is None:
        raise Unauthorized(
            "No API key provided: send `Authorization: Bearer <key>`.", code="api_key_missing"
        )
    digest = key_digest(credentials.credentials)
    matched = False
    for known in request.app.state.api_key_digests:
        matched |= hmac.compare_digest(digest, known)
    if not matched:
        raise Unauthorized("Invalid API key.")
    return digest


# The caller, identified by the SHA-256 of its API key.
Caller = Annotated[str, Depends(_caller)]
