"""`expand[]`: replace ids in a response by the objects they name, up to four levels deep."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from emulator.errors import invalid_request

if TYPE_CHECKING:
    from emulator.context import Emulator

MAX_DEPTH = 4


def expand(emu: Emulator, obj: dict[str, Any], paths: list[str]) -> dict[str, Any]:
    """A copy of `obj` with each dotted path expanded; the stored object is left as it was."""
    for path in paths:
        parts = path.split(".")
        if len([p for p in parts if p != "data"]) > MAX_DEPTH:
            raise invalid_request(
                f"You cannot expand more than {MAX_DEPTH} levels of a property. Property: {path}",
                param="expand",
            )
        obj = _expand(emu, obj, parts, path)
    return obj


def _expand(emu: Emulator, node: Any, parts: list[str], path: str) -> Any:
    if not parts or node is None:
        return node
    if isinstance(node, list):
        return [_expand(emu, item, parts, path) for item in node]
    if not isinstance(node, dict):
        raise _cannot(path)
    head, rest = parts[0], parts[1:]
    if node.get("object") in ("list", "search_result") and head == "data":
        return {**node, "data": [_expand(emu, item, rest, path) for item in node["data"]]}
    includer = emu.includers.get((node.get("object", ""), head))
    if includer is not None:
        value: Any = includer(emu, node)
    elif head not in node:
        raise _cannot(path)
    else:
        value = node[head]
        if isinstance(value, str):
            found = emu.store.lookup(value)
            if found is None:
                raise _cannot(path)
            value = found
        elif value is not None and not isinstance(value, dict | list):
            raise _cannot(path)
    return {**node, head: _expand(emu, value, rest, path)}


def _cannot(path: str) -> Exception:
    return invalid_request(f"This property cannot be expanded ({path}).", param="expand")
