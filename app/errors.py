"""The service's errors and the one envelope they render as:
`{"error": {"type", "code", "message", "param"}}`, modelled on Stripe's. Nothing answers with a
traceback."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.exc import DBAPIError
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger("app.errors")


class ErrorDetail(BaseModel):
    model_config = ConfigDict(extra="allow")

    type: str = Field(examples=["invalid_request_error"])
    code: str | None = Field(examples=["parameter_invalid"])
    message: str = Field(examples=["amount: Input should be greater than 0"])
    param: str | None = Field(examples=["amount"])


class ErrorEnvelope(BaseModel):
    """Every error the service answers: Stripe's envelope. Card errors add `decline_code`,
    `payment_intent` and `order_id`."""

    error: ErrorDetail


class AppError(Exception):
    status = 400
    type = "invalid_request_error"
    code: str | None = None

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        status: int | None = None,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status
        self.param = param
        self.headers = headers or {}
        self.extra = extra

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {
            "type": self.type,
            "code": self.code,
            "message": self.message,
            "param": self.param,
        }
        error.update(self.extra)
        return {"error": error}


class InvalidRequest(AppError):
    """Our own validation, or Stripe's invalid-request error passed through (400)."""


class IdempotencyKeyReused(InvalidRequest):
    """The caller's `Idempotency-Key` already made something with other parameters."""

    type = "idempotency_error"
    code = "idempotency_key_reused"


class NotFound(AppError):
    status = 404
    code = "resource_missing"


class Conflict(AppError):
    status = 409


class CardDeclined(AppError):
    """Stripe's card error: 402 with Stripe's code (`card_declined`, …) and decline code."""

    status = 402
    type = "card_error"


class StripeUnavailable(AppError):
    """Stripe rate limited us or could not be reached: retry later (503 with Retry-After)."""

    status = 503
    type = "api_error"
    code = "stripe_unavailable"


class OutcomeUnknown(StripeUnavailable):
    """The call may or may not have taken effect on Stripe (a timeout, a dropped connection, a
    5xx, a 409 `idempotency_key_in_use`): never a reason to fail or discard what it was for."""

    code = "stripe_outcome_unknown"


class StripeFailure(AppError):
    """Stripe refused the service itself (its key or permissions), or answered with what the
    service cannot accept: nothing to retry until an operator acts."""

    status = 502
    type = "api_error"
    code = "stripe_error"


class Unauthorized(AppError):
    status = 401
    type = "authentication_error"
    code = "api_key_invalid"


def _render(
    status: int, body: dict[str, Any], headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(status_code=status, content=body, headers=headers)


SEND_JSON = "send a JSON object with `Content-Type: application/json`"


def _body_problem(error: dict[str, Any], body: Any, content_type: str | None) -> str | None:
    """What is wrong with the request body as a whole, in words, when FastAPI's first error is
    about the body itself rather than one of its parameters; None otherwise.

    FastAPI reports invalid JSON as `json_invalid` at `("body", <character offset>)`, an empty
    body as the body `missing`, and a body it did not parse as JSON (its Content-Type is not
    JSON) as the raw bytes failing the model."""
    loc = tuple(error.get("loc", ()))
    if not loc or loc[0] != "body":
        return None
    kind = error.get("type")
    if kind == "json_invalid":
        text = body if isinstance(body, str) else None
        if text is not None and not text.strip():
            return f"The request body is empty: {SEND_JSON}."
        position = loc[1] if len(loc) > 1 and isinstance(loc[1], int) else None
        reason = str((error.get("ctx") or {}).get("error") or "not valid JSON")
        if position is None or text is None:
            return f"The request body is not valid JSON: {reason}."
        line = text.count("\n", 0, position) + 1
        column = position - (text.rfind("\n", 0, position) + 1) + 1
        return f"The request body is not valid JSON: {reason} at line {line}, column {column}."
    if len(loc) != 1:
        return None
    if kind == "missing" or body in (None, b"", ""):
        return f"The request body is empty: {SEND_JSON}."
    if isinstance(body, bytes | bytearray):
        media = (content_type or "").split(";")[0].strip()
        given = f"`{media}`" if media else "no Content-Type"
        return f"The request body was not read as JSON: expected application/json, got {given}."
    if kind in ("model_attributes_type", "dict_type") and not isinstance(body, dict):
        return f"The request body must be a JSON object, not {_json_kind(body)}: {SEND_JSON}."
    return None


def _json_kind(value: Any) -> str:
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    return "null"


def install(app: FastAPI) -> None:
    """Register the handlers that render every error in the envelope."""

    @app.exception_handler(AppError)
    async def app_error(_request: Request, exc: AppError) -> JSONResponse:
        return _render(exc.status, exc.body(), exc.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        first = errors[0] if errors else {}
        described = _body_problem(first, exc.body, request.headers.get("content-type"))
        if described is not None:
            return _render(400, InvalidRequest(described, code="parameter_invalid").body())
        location = [str(p) for p in first.get("loc", ())[1:]]  # [0] is body, query or path
        param = location[0] + "".join(f"[{p}]" for p in location[1:]) if location else None
        message = str(first.get("msg", "Invalid request."))
        if param:
            message = f"{param}: {message}"
        body = InvalidRequest(message, code="parameter_invalid", param=param).body()
        return _render(400, body)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "route_not_found", 405: "method_not_allowed"}.get(exc.status_code)
        error = AppError(str(exc.detail), code=code, status=exc.status_code)
        return _render(exc.status_code, error.body(), dict(exc.headers or {}))

    @app.exception_handler(DBAPIError)
    async def database_error(_request: Request, exc: DBAPIError) -> JSONResponse:
        # Handled here rather than by the catch-all, which Starlette re-raises (closing the
        # client's keep-alive connection): the transaction was rolled back, so a retry is safe.
        log.warning("database error: %s", type(exc.orig).__name__ if exc.orig else type(exc))
        error = AppError(
            "The database is unavailable or refused the change; nothing was saved. Retry shortly.",
            code="database_unavailable",
            status=503,
            headers={"Retry-After": "1"},
        )
        error.type = "api_error"
        return _render(503, error.body(), error.headers)

    @app.exception_handler(Exception)
    async def unexpected(_request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", exc_info=exc)
        error = AppError("An internal error occurred.", code="internal_error", status=500)
        error.type = "api_error"
        return _render(500, error.body())
