"""Logging for the service: one handler on stderr for `app.*`, plain text or JSON lines, and a
redaction filter on every handler the process logs through (ours, uvicorn's, the root's).

The filter removes what must never reach a log line: Stripe secret and restricted keys
(`sk_…`, `rk_…`), webhook secrets (`whsec_…`), client secrets (`pi_…_secret_…`), the value of an
`Authorization` header or a Bearer token, card numbers (13 to 19 digits passing Luhn), and
every secret the settings hold, wherever it appears (message, arguments, traceback, extras).
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Iterable
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

REDACTED = "[REDACTED]"
# The id of the request being served (set by app.observability), on every JSON line it logs.
request_id: ContextVar[str | None] = ContextVar("request_id", default=None)
LOGGERS = ("app", "uvicorn", "uvicorn.error", "uvicorn.access", "stripe", "")
_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}

_PATTERNS: list[tuple[re.Pattern[str], str]] = [
    # A client secret: keep the object id, drop the secret part.
    (re.compile(r"(_secret_)[A-Za-z0-9]+"), rf"\1{REDACTED}"),
    (re.compile(r"\b([sr]k_(?:live|test)_)[A-Za-z0-9_]+"), rf"\1{REDACTED}"),
    (re.compile(r"\b([sr]k_)[A-Za-z0-9]{16,}"), rf"\1{REDACTED}"),
    (re.compile(r"\b(whsec_)[A-Za-z0-9_+/=]+"), rf"\1{REDACTED}"),
    (
        re.compile(r"""(?i)((?:client_?secret|clientSecret)["']?\s*[:=]\s*["']?)[^"'\s,&}]+"""),
        rf"\1{REDACTED}",
    ),
    (
        re.compile(
            r"""(?i)(authorization["']?\s*[:=,]\s*\(?\s*(?:b?["'])?)"""
            r"(?:(?:bearer|basic)\s+[A-Za-z0-9._~+/=-]+|(?!(?:bearer|basic)\b)[A-Za-z0-9._~+/=-]+)"
        ),
        rf"\1{REDACTED}",
    ),
    (re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]+"), rf"\1 {REDACTED}"),
]
# 13 to 19 digits, single spaces or dashes allowed between them.
PAN = re.compile(r"(?<![\d.])\d(?:[ -]?\d){12,18}(?![\d.])")


def luhn(digits: str) -> bool:
    total = 0
    for i, char in enumerate(reversed(digits)):
        n = int(char)
        if i % 2:
            n = n * 2 - 9 if n > 4 else n * 2
        total += n
    return total % 10 == 0


def card_numbers(text: str) -> list[str]:
    """The PAN-like digit strings in `text`, as written."""
    found = []
    for match in PAN.finditer(text):
        digits = re.sub(r"[ -]", "", match.group())
        if 13 <= len(digits) <= 19 and luhn(digits):
            found.append(match.group())
    return found


class Redactor:
    """Removes secrets from text: the known shapes, plus the literal values it is given."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self.secrets = sorted({s for s in secrets if s}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, REDACTED)
        for pattern, replacement in _PATTERNS:
            text = pattern.sub(replacement, text)
        for number in card_numbers(text):
            text = text.replace(number, "[REDACTED CARD NUMBER]")
        return text


class RedactionFilter(logging.Filter):
    """Rewrites each record in place before any handler formats it."""

    _formatter = logging.Formatter()

    def __init__(self, redact: Redactor) -> None:
        super().__init__()
        self.redact = redact

    def filter(self, record: logging.LogRecord) -> bool:
        # Message and arguments are redacted apart, keeping the arguments' shape: some
        # formatters read them (uvicorn's access log takes a 5-tuple).
        record.msg = self.redact(str(record.msg))
        if isinstance(record.args, tuple):
            record.args = tuple(self._argument(arg) for arg in record.args)
        elif isinstance(record.args, dict):
            record.args = {key: self._argument(arg) for key, arg in record.args.items()}
        if record.exc_info and not record.exc_text:
            record.exc_text = self._formatter.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        for key, value in list(record.__dict__.items()):
            if key not in _STANDARD and isinstance(value, str):
                setattr(record, key, self.redact(value))
        return True

    def _argument(self, value: object) -> object:
        if isinstance(value, int | float | bool) or value is None:
            return value
        text = str(value)
        redacted = self.redact(text)
        return value if redacted == text else redacted


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, the record's extras, exc."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        rid = request_id.get()
        if rid is not None:
            entry["request_id"] = rid
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_") and key != "color_message":
                entry[key] = value
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exc"] = record.exc_text
        return json.dumps(entry, default=str)


def configure_logging(
    *, fmt: str = "text", level: str = "INFO", secrets: Iterable[str] = ()
) -> Redactor:
    """Give `app.*` its stderr handler (once) and put the redaction filter on every handler of
    the loggers the process writes through. Returns the redactor (error bodies use it too).

    With `json`, uvicorn's handlers write JSON lines too, and uvicorn's access log is off: the
    `app.http` line of each request replaces it (with the request id, route and duration)."""
    redactor = Redactor(secrets)
    logger = logging.getLogger("app")
    handler = next((h for h in logger.handlers if getattr(h, "_payments", False)), None)
    if handler is None:
        handler = logging.StreamHandler(sys.stderr)
        handler._payments = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
    handler.setFormatter(
        JsonFormatter()
        if fmt == "json"
        else logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s")
    )
    logger.setLevel(level)
    logger.propagate = False
    handlers = [h for name in LOGGERS for h in logging.getLogger(name).handlers]
    if fmt == "json":
        for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
            for each in logging.getLogger(name).handlers:
                each.setFormatter(JsonFormatter())
    logging.getLogger("uvicorn.access").disabled = fmt == "json"
    if logging.lastResort is not None:
        handlers.append(logging.lastResort)
    for each in handlers:
        for old in [f for f in each.filters if isinstance(f, RedactionFilter)]:
            each.removeFilter(old)
        each.addFilter(RedactionFilter(redactor))
    return redactor
