"""What `app.security` refuses in a request's path, query string and body, each a 400 in the
error envelope, found without recursion so that no input can exhaust the stack:

- a body whose objects and arrays nest deeper than MAX_DEPTH → `json_too_deep`. The raw bytes
  are scanned before any parser sees them: `json`, orjson and pydantic all recurse, and a body
  nested a thousand deep made them raise RecursionError. The deepest legitimate bodies nest 6
  levels (Checkout's `line_items[][price_data][product_data][metadata]`) and Stripe's events 8
  (a subscription's `data.object.items.data[].price.recurring`); MAX_DEPTH is four times that;
- U+0000 in any key or value, in the path or in the query string → `parameter_invalid`, naming
  the parameter (`metadata[k]`, `email`, `id`). Postgres stores no NUL in text or JSON, and
  refused it as if the database were down; nothing legitimate carries one. Stripe's webhook
  deliveries too: Stripe never sends U+0000, so a signed event holding one is refused (not
  altered to fit the inbox, which keeps events as sent) rather than answered with a 503 on
  every delivery;
- an unpaired surrogate (a `\\ud800` escape alone: no character, so no UTF-8) in a JSON string
  or key → `parameter_invalid`, naming it: it cannot be encoded for the database or for
  Stripe, and was a 500;
- a card number (13 to 19 digits, spaces or dashes between them, passing Luhn: `app.log`'s
  test) in any value or key → `card_data_refused`, naming the parameter. Key names alone
  (`number`, `card`) are ordinary metadata keys and never refused.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from app.log import card_numbers

MAX_DEPTH = 32
CARD_DATA_MESSAGE = (
    "This request carries card data. The service never accepts card numbers or security "
    "codes: collect them with Stripe.js (Stripe Elements), which sends them to Stripe "
    "directly, and pass the resulting `payment_method` id."
)
# A JSON string, escapes included (a `\"` does not end it). In UTF-8 the bytes of `"`, `\`
# and the brackets never occur inside a multibyte character, so the scan can work on bytes.
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_OPENING = frozenset(b"[{")
_SURROGATE = re.compile(r"[\ud800-\udfff]")

Params = Iterable[tuple[str | None, str]]


@dataclass(frozen=True)
class Refusal:
    code: str
    reason: str  # for the log line, which names neither the parameter nor its value
    message: str
    param: str | None = None


TOO_DEEP = Refusal(
    "json_too_deep",
    "body nested too deep",
    f"The body nests objects and arrays deeper than {MAX_DEPTH} levels: no request to this "
    "service nests more than a few.",
)
NUL_BYTE = Refusal(
    "parameter_invalid",
    "NUL character",
    "The body contains a NUL byte (U+0000): bodies are UTF-8 JSON, and no parameter may hold "
    "U+0000.",
)


def nested_too_deep(body: bytes, limit: int = MAX_DEPTH) -> bool:
    """Whether more than `limit` objects or arrays are open at once anywhere in `body`, strings
    aside. Conservative on a body that is not JSON (whose parser fails where the scan goes on)."""
    if body.count(b"[") + body.count(b"{") <= limit:
        return False
    depth = 0
    for byte in _STRING.sub(b"", body).translate(None, _NOT_BRACKETS):
        if byte in _OPENING:
            depth += 1
            if depth > limit:
                return True
        else:
            depth -= 1
    return False


def check_path(path: str) -> Refusal | None:
    # Every variable part of this service's paths is an object's id.
    return _nul("id") if "\x00" in path else None


def check_query(query_string: bytes, *, cards: bool) -> Refusal | None:
    pairs = parse_qsl(query_string.decode("latin-1"), keep_blank_values=True)
    return _first(((name, text) for name, value in pairs for text in (name, value)), cards=cards)


def check_body(body: bytes, content_type: str, *, cards: bool) -> Refusal | None:
    # A NUL byte first: JSON in UTF-16 or UTF-32 (which `json.loads` would decode, and the scan
    # below cannot read) always has one.
    if b"\x00" in body:
        return NUL_BYTE
    if nested_too_deep(body):
        return TOO_DEEP
    if not cards and b"\\u0000" not in body:
        return None
    return _first(_params(body, content_type), cards=cards)


def _params(body: bytes, content_type: str) -> Params:
    """Every key and value of the body with its parameter: a JSON body parsed as the endpoints
    parse it, a form's fields, else the whole text (its parameter unknown)."""
    try:
        return _json_params(json.loads(body))
    except ValueError:
        pass
    text = body.decode("utf-8", errors="replace")
    if "x-www-form-urlencoded" in content_type:
        pairs = parse_qsl(text, keep_blank_values=True)
        return ((name, each) for name, value in pairs for each in (name, value))
    return [(None, text)]


def _json_params(value: Any) -> Iterator[tuple[str | None, str]]:
    """Every key and scalar in `value`, in document order, with its parameter in Stripe's
    bracket form (`metadata[k]`, `line_items[0][price]`)."""
    stack: list[tuple[str | None, str | None, Any]] = [(None, None, value)]
    while stack:
        param, key, item = stack.pop()
        if key is not None:
            yield param, key
        if isinstance(item, dict):
            stack.extend(reversed([(_child(param, k), k, v) for k, v in item.items()]))
        elif isinstance(item, list):
            stack.extend(reversed([(_child(param, str(i)), None, v) for i, v in enumerate(item)]))
        elif isinstance(item, str):
            yield param, item
        elif isinstance(item, int) and not isinstance(item, bool):
            yield param, str(item)


def _child(param: str | None, name: str) -> str:
    return name if param is None else f"{param}[{name}]"


def _first(params: Params, *, cards: bool) -> Refusal | None:
    for param, text in params:
        if cards and card_numbers(text):
            return Refusal(
                "card_data_refused", "card data in the request", CARD_DATA_MESSAGE, param
            )
        if "\x00" in text:
            return _nul(param)
        if _SURROGATE.search(text):
            return _unstorable(
                param, "an unpaired surrogate (U+D800 to U+DFFF)", "unpaired surrogate"
            )
    return None


def _nul(param: str | None) -> Refusal:
    return _unstorable(param, "the NUL character (U+0000)", "NUL character")


def _unstorable(param: str | None, what: str, reason: str) -> Refusal:
    subject = "The body" if param is None else "`" + param.replace("\x00", "\\u0000") + "`"
    return Refusal("parameter_invalid", reason, f"{subject} must not contain {what}.", param)
