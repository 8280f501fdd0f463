"""Stripe's form encoding: `a[b][0][c]=1&expand[]=x` into nested dicts and lists."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qsl

from emulator.errors import invalid_request

_KEY = re.compile(r"^([^\[\]]+)((?:\[[^\[\]]*\])*)$")
_PART = re.compile(r"\[([^\[\]]*)\]")
MAX_DEPTH = 12


def decode(body: bytes | str) -> dict[str, Any]:
    """Decode a form body or query string; malformed input is Stripe's 400, never a crash."""
    if isinstance(body, bytes):
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise invalid_request("Invalid request body: it is not valid UTF-8.") from None
    else:
        text = body
    try:
        pairs = parse_qsl(text, keep_blank_values=True, strict_parsing=False, errors="strict")
    except (ValueError, UnicodeDecodeError):
        raise invalid_request("Invalid request body: it could not be decoded.") from None
    root: dict[str, Any] = {}
    for key, value in pairs:
        _insert(root, key, value)
    return root


def _insert(root: dict[str, Any], key: str, value: str) -> None:
    match = _KEY.match(key)
    if match is None:
        raise invalid_request(f"Invalid parameter name: {key[:100]}", param=key[:100])
    parts = [match.group(1), *_PART.findall(match.group(2))]
    if len(parts) > MAX_DEPTH:
        raise invalid_request(f"Invalid parameter name: {key[:100]} is nested too deeply")
    node: Any = root
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        name = parts[0] + "".join(f"[{p}]" for p in parts[1:i])
        if part == "":
            if not isinstance(node, list):
                raise invalid_request(f"Invalid array: {name}", param=name)
            if last:
                node.append(value)
                return
            node.append({})
            node = node[-1]
            continue
        if not isinstance(node, dict):
            raise invalid_request(f"Invalid hash: {name}", param=name)
        if last:
            if isinstance(node.get(part), dict | list):
                raise invalid_request(f"Invalid hash: {key}", param=key)
            node[part] = value
            return
        nxt = node.get(part)
        if nxt is None:
            nxt = [] if parts[i + 1] == "" else {}
            node[part] = nxt
        elif isinstance(nxt, str):
            raise invalid_request(f"Invalid hash: {key}", param=key)
        node = nxt
