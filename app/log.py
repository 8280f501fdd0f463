"""Logging for the service: one handler on stderr for `app.*`, plain text or JSON lines, and a
redaction filter on every handler the process logs through (ours, uvicorn's, the root's).

The filter removes what must never reach a log line: Stripe secret and restricted keys
(`sk_…`, `rk_…`), webhook secrets (`whsec_…`), client secrets (`pi_…_secret_…`), the value of an
`Authorization` header or a Bearer token, card numbers (13 to 19 digits passing Luhn), and
every secret the settings hold, wherever it appears (message, arguments, traceback, extras).
It finds them by their shapes, and by name only in structured fields (an extra, a dict, a header
pair, a quoted key in a repr or JSON: `authorization`, `api_key`, `client_secret`, `password`…),
never by a word of prose: "reauthorization, requires_confirmation" is logged as written.
"""

from __future__ import annotations

import base64
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

_TOKEN = r"[A-Za-z0-9._~+/=-]+"
# Names whose value is a secret, in structured fields (a record's extras, a dict argument, a
# header tuple or mapping) and as quoted keys in text (a dict's or a JSON object's repr).
SECRET_KEYS = frozenset(
    {"authorization", "proxy_authorization", "api_key", "apikey", "api_keys", "secret",
     "password", "passwd", "client_secret", "clientsecret", "secret_key", "stripe_secret_key",
     "webhook_secret", "stripe_webhook_secret", "signing_secret", "token", "access_token",
     "refresh_token", "cookie", "set_cookie", "x_api_key"}
)  # fmt: skip
_QUOTED_KEY = "|".join(
    sorted({re.escape(k).replace("_", "[_-]?") for k in SECRET_KEYS}, key=len, reverse=True)
)


def _basic(match: re.Match[str]) -> str:
    """`Basic <base64 of user:password>`: only a real credential is redacted, not `Basic plan`."""
    try:
        decoded = base64.b64decode(match.group(2), validate=True).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        return match.group()
    return f"{match.group(1)} {REDACTED}" if ":" in decoded else match.group()


# Words that follow "Bearer" in prose (Stripe's "using Bearer auth (e.g. 'Authorization: Bearer
# YOUR_SECRET_KEY')"), not credentials: these, placeholders in capitals, short plain words.
_NOT_TOKENS = frozenset({"auth", "authentication", "token", "tokens", "scheme", "header"})


def _bearer(match: re.Match[str]) -> str:
    token = match.group(2)
    prose = token.lower() in _NOT_TOKENS or (token.isalpha() and len(token) < 6)
    if prose or re.fullmatch(r"[A-Z][A-Z_]*", token):
        return match.group()
    return f"{match.group(1)} {REDACTED}"


# Secrets by their shapes, never by a word that prose also uses: `reauthorization`,
# `requires_confirmation` or `The authorization of this payment` come out unchanged.
_PATTERNS: list[tuple[re.Pattern[str], Any]] = [
    # A client secret (`pi_…_secret_…`, `seti_…`, `cs_test_…`): keep the object id, drop the secret.
    (
        re.compile(r"\b([a-z]+_(?:(?:live|test)_)?[A-Za-z0-9]+_secret_)[A-Za-z0-9]+"),
        rf"\1{REDACTED}",
    ),
    (re.compile(r"\b([sr]k_(?:live|test)_)[A-Za-z0-9_]+"), rf"\1{REDACTED}"),
    (re.compile(r"\b([sr]k_)[A-Za-z0-9]{16,}"), rf"\1{REDACTED}"),
    (re.compile(r"\b(whsec_)[A-Za-z0-9_+/=]+"), rf"\1{REDACTED}"),
    # A secret key's value in a dict's, a JSON object's or a header tuple's repr:
    # `{'Authorization': 'Basic …'}`, `(b'authorization', b'Bearer …')`, `"client_secret": "…"`.
    (
        re.compile(
            rf"""(?i)((?<![A-Za-z0-9_])b?["'](?:{_QUOTED_KEY})["']\s*[:,]\s*\(?\s*b?(["']))(?:\\.|(?!\2).)*"""
        ),
        rf"\1{REDACTED}",
    ),
    # The same in a query string or form: `client_secret=…`, `clientSecret=…`.
    (re.compile(r"(?i)(\bclient_?secret=)[^\s&\"']+"), rf"\1{REDACTED}"),
    # A header line `Authorization: <credential>` with no scheme (a scheme is handled below):
    # only a value that looks like a credential (a digit in 8 or more token characters).
    (
        re.compile(
            rf"(?i)(\bauthorization:\s*)(?!(?:bearer|basic)\b)(?=\S*\d){_TOKEN}(?<=\S{{8}})"
        ),
        rf"\1{REDACTED}",
    ),
    # `Bearer <token>`: as HTTP writes it, or any case when the token has a digit or a symbol.
    (re.compile(rf"(\bBearer|\b(?i:bearer)(?=\s+[A-Za-z]*[0-9._~+/=-]))\s+({_TOKEN})"), _bearer),
    (re.compile(r"(?i)\b(basic)\s+([A-Za-z0-9+/]{4,}={0,2})(?![A-Za-z0-9+/=])"), _basic),
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
            record.args = {key: self._field(key, arg) for key, arg in record.args.items()}
        if record.exc_info and not record.exc_text:
            record.exc_text = self._formatter.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        for key, value in list(record.__dict__.items()):
            if key not in _STANDARD:
                setattr(record, key, self._field(key, value))
        return True

    def _argument(self, value: object) -> object:
        if isinstance(value, int | float | bool) or value is None:
            return value
        if isinstance(value, dict | list | tuple):
            value = self._structure(value)
        text = str(value)
        redacted = self.redact(text)
        return value if redacted == text else redacted

    def _field(self, key: object, value: object) -> object:
        """A structured field: its whole value when its name is a secret's, else its content
        (a structure's fields by name, then its text by shape)."""
        if isinstance(key, str | bytes) and secret_key(key):
            return value if value is None or value == "" else REDACTED
        if isinstance(value, str):
            return self.redact(value)
        if isinstance(value, int | float | bool) or value is None:
            return value
        return self._argument(value)

    def _structure(self, value: dict[Any, Any] | list[Any] | tuple[Any, ...]) -> object:
        if isinstance(value, dict):
            return {k: self._field(k, v) for k, v in value.items()}
        items = list(value)
        # A header as a (name, value) pair: `(b"authorization", b"Bearer …")`.
        if len(items) == 2 and isinstance(items[0], str | bytes) and secret_key(items[0]):
            items[1] = REDACTED
        else:
            items = [self._field(None, item) for item in items]
        return tuple(items) if isinstance(value, tuple) else items


def secret_key(name: str | bytes) -> bool:
    """Whether a field of this name holds a secret (`Authorization`, `api_key`, `X-Api-Key`…)."""
    text = name.decode("latin-1") if isinstance(name, bytes) else name
    return text.lower().replace("-", "_") in SECRET_KEYS


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

    With `json`, uvicorn's handlers write JSON lines too. In either format uvicorn's access log
    is off: the `app.http` line of each request replaces it (with the request id in JSON, the
    route and the duration), so each request is logged once, however uvicorn was started
    (`python -m app run`, the image's `uvicorn app.main:app`, `--log-level debug`)."""
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
    logging.getLogger("uvicorn.access").disabled = True
    if logging.lastResort is not None:
        handlers.append(logging.lastResort)
    for each in handlers:
        for old in [f for f in each.filters if isinstance(f, RedactionFilter)]:
            each.removeFilter(old)
        each.addFilter(RedactionFilter(redactor))
    return redactor
