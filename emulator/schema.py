"""Request parameter schemas, compiled from the pinned SDK's own params TypedDicts.

The `stripe` package ships a TypedDict for every call's parameters (`stripe/params/*`), generated
from Stripe's OpenAPI spec for the API version it pins. Compiling those into validators once at
start-up gives the emulator exactly Stripe's parameter surface: every known field accepted, every
unknown one refused, required fields, integer and boolean types and enums checked.
"""

from __future__ import annotations

import sys
import types
import typing
from dataclasses import dataclass, field
from typing import Any, ForwardRef, Literal, Union

import typing_extensions
from stripe._request_options import RequestOptions

from emulator.errors import invalid_request

MAX_STRING = 5000
MAX_INTEGER = 2**63 - 1
_REQUEST_OPTION_KEYS = frozenset(RequestOptions.__annotations__)


@dataclass(slots=True)
class Scalar:
    kind: str  # "string" | "integer" | "boolean" | "number" | "any"
    enum: tuple[str, ...] | None = None


@dataclass(slots=True)
class Hash:
    fields: dict[str, Node]
    required: frozenset[str]


@dataclass(slots=True)
class Map:
    value: Node


@dataclass(slots=True)
class Array:
    item: Node


@dataclass(slots=True)
class OneOf:
    options: list[Node]
    allow_empty: bool = False


@dataclass(slots=True)
class Empty:
    """`Literal['']`: the empty string, which Stripe reads as "unset this field"."""


Node = Scalar | Hash | Map | Array | OneOf | Empty


@dataclass(slots=True)
class _Compiler:
    cache: dict[type, Hash] = field(default_factory=dict)

    def typeddict(self, cls: type) -> Hash:
        if cls in self.cache:
            return self.cache[cls]
        node = Hash(fields={}, required=frozenset())
        self.cache[cls] = node
        namespace = vars(sys.modules[cls.__module__])
        required: set[str] = set()
        for base in reversed(cls.__mro__):
            if base is RequestOptions or not hasattr(base, "__annotations__"):
                continue
            base_ns = vars(sys.modules[base.__module__])
            for name, annotation in base.__dict__.get("__annotations__", {}).items():
                if name in _REQUEST_OPTION_KEYS:
                    continue
                hint, is_required = self._unwrap_required(annotation, base_ns | namespace)
                node.fields[name] = self.node(hint, base_ns | namespace)
                if is_required:
                    required.add(name)
        node.required = frozenset(required)
        return node

    def _unwrap_required(self, annotation: Any, ns: dict[str, Any]) -> tuple[Any, bool]:
        hint = _evaluate(annotation, ns)
        origin = typing.get_origin(hint)
        name = getattr(origin, "__name__", "") or getattr(origin, "_name", "")
        if name == "NotRequired" or str(origin).endswith("NotRequired"):
            return _evaluate(typing.get_args(hint)[0], ns), False
        return hint, True

    def node(self, hint: Any, ns: dict[str, Any]) -> Node:
        hint = _evaluate(hint, ns)
        if hint is str:
            return Scalar("string")
        if hint is int:
            return Scalar("integer")
        if hint is bool:
            return Scalar("boolean")
        if hint is float:
            return Scalar("number")
        if hint is Any or hint is object:
            return Scalar("any")
        if isinstance(hint, type) and typing_extensions.is_typeddict(hint):
            return self.typeddict(hint)
        origin = typing.get_origin(hint)
        args = typing.get_args(hint)
        if origin is Literal:
            values = tuple(str(a).lower() if isinstance(a, bool) else str(a) for a in args)
            if values == ("",):
                return Empty()
            return Scalar("string", enum=values)
        if origin in (list, typing.List):  # noqa: UP006
            return Array(self.node(args[0], ns))
        if origin in (dict, typing.Dict):  # noqa: UP006
            return Map(self.node(args[1], ns))
        if origin in (Union, types.UnionType):
            return self._union([self.node(a, ns) for a in args if a is not type(None)])
        if getattr(origin, "__name__", "") == "UntypedStripeObject":
            return Map(Scalar("string"))
        return Scalar("any")

    def _union(self, options: list[Node]) -> Node:
        allow_empty = any(isinstance(o, Empty) for o in options)
        options = [o for o in options if not isinstance(o, Empty)]
        enums = [o for o in options if isinstance(o, Scalar) and o.enum is not None]
        plain = [o for o in options if isinstance(o, Scalar) and o.enum is None]
        # `Literal['a', 'b'] | str` is the SDK leaving room for future values; the API itself
        # accepts only the listed ones, so the enum wins over the bare string.
        if enums and any(p.kind == "string" for p in plain):
            plain = [p for p in plain if p.kind != "string"]
        merged: list[Node] = [*plain]
        if enums:
            values: list[str] = []
            for e in enums:
                values.extend(v for v in e.enum or () if v not in values)
            merged.append(Scalar("string", enum=tuple(values)))
        merged.extend(o for o in options if not isinstance(o, Scalar))
        if len(merged) == 1 and not allow_empty:
            return merged[0]
        return OneOf(merged, allow_empty=allow_empty)


def _evaluate(hint: Any, ns: dict[str, Any]) -> Any:
    if isinstance(hint, str):
        hint = ForwardRef(hint)
    if isinstance(hint, ForwardRef):
        return eval(hint.__forward_arg__, dict(ns))
    return hint


_compiler = _Compiler()


def compile_params(cls: type) -> Hash:
    """The validator for one SDK params TypedDict (cached)."""
    return _compiler.typeddict(cls)


EMPTY_HASH = Hash(fields={}, required=frozenset())


def validate(schema: Hash, raw: dict[str, Any]) -> dict[str, Any]:
    """Check decoded form parameters against a schema and convert scalars to their types.

    Raises Stripe's invalid-request errors with Stripe's wording and the offending `param`.
    """
    return _hash(schema, raw, "")


def _path(prefix: str, key: str) -> str:
    return f"{prefix}[{key}]" if prefix else key


def _hash(schema: Hash, raw: Any, prefix: str) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise invalid_request(f"Invalid hash: {prefix}", param=prefix)
    out: dict[str, Any] = {}
    for key, value in raw.items():
        node = schema.fields.get(key)
        name = _path(prefix, key)
        if node is None:
            raise invalid_request(
                f"Received unknown parameter: {name}", param=name, code="parameter_unknown"
            )
        out[key] = _value(node, value, name)
    for key in schema.required:
        if key not in raw:
            name = _path(prefix, key)
            raise invalid_request(
                f"Missing required param: {name}.", param=name, code="parameter_missing"
            )
    return out


def _value(node: Node, raw: Any, name: str) -> Any:
    if isinstance(node, Scalar):
        return _scalar(node, raw, name)
    if isinstance(node, Hash):
        if raw == "":
            raise _empty(name)
        return _hash(node, raw, name)
    if isinstance(node, Map):
        if raw == "":
            return ""
        if not isinstance(raw, dict):
            raise invalid_request(f"Invalid hash: {name}", param=name)
        return {str(k): _value(node.value, v, _path(name, str(k))) for k, v in raw.items()}
    if isinstance(node, Array):
        items = _as_list(raw, name)
        return [_value(node.item, v, _path(name, str(i))) for i, v in enumerate(items)]
    if isinstance(node, Empty):
        if raw != "":
            raise invalid_request(f"Invalid value for {name}: must be empty", param=name)
        return ""
    return _one_of(node, raw, name)


def _one_of(node: OneOf, raw: Any, name: str) -> Any:
    if raw == "" and node.allow_empty:
        return ""
    first_error: Exception | None = None
    for option in node.options:
        if isinstance(raw, dict) and not isinstance(option, Hash | Map | Array):
            continue
        if isinstance(raw, str) and isinstance(option, Hash | Map):
            continue
        try:
            return _value(option, raw, name)
        except Exception as exc:
            first_error = first_error or exc
    if first_error is not None:
        raise first_error
    raise invalid_request(f"Invalid value for {name}.", param=name)


def _as_list(raw: Any, name: str) -> list[Any]:
    if isinstance(raw, list):
        return raw
    if raw == "":
        return []
    if isinstance(raw, dict) and all(k.isdigit() for k in raw):
        return [raw[k] for k in sorted(raw, key=int)]
    raise invalid_request(f"Invalid array: {name}", param=name)


def _scalar(node: Scalar, raw: Any, name: str) -> Any:
    if isinstance(raw, dict | list):
        raise invalid_request(f"Invalid {_kind_word(node)}: {name}", param=name)
    text = str(raw)
    if node.kind == "integer":
        if text == "":
            raise _empty(name)
        try:
            value = int(text)
        except ValueError:
            raise invalid_request(
                f"Invalid integer: {text[:100]}", param=name, code="parameter_invalid_integer"
            ) from None
        if abs(value) > MAX_INTEGER or not text.lstrip("-").isdigit():
            raise invalid_request(
                f"Invalid integer: {text[:100]}", param=name, code="parameter_invalid_integer"
            )
        return value
    if node.kind == "boolean":
        if text in ("true", "false"):
            return text == "true"
        raise invalid_request(f"Invalid boolean: {text[:100]}", param=name)
    if node.kind == "number":
        try:
            return float(text)
        except ValueError:
            raise invalid_request(f"Invalid decimal: {text[:100]}", param=name) from None
    if node.enum is not None:
        if text not in node.enum:
            choices = _or_list(node.enum)
            raise invalid_request(f"Invalid {name}: must be one of {choices}", param=name)
        return text
    if len(text) > MAX_STRING:
        raise invalid_request(
            f"Invalid string: {text[:20]}...; must be at most {MAX_STRING} characters",
            param=name,
            code="parameter_invalid_string",
        )
    return text


def _kind_word(node: Scalar) -> str:
    words = {"integer": "integer", "boolean": "boolean", "number": "decimal"}
    return words.get(node.kind, "string")


def _or_list(values: tuple[str, ...]) -> str:
    if len(values) == 1:
        return values[0]
    return ", ".join(values[:-1]) + ", or " + values[-1]


def _empty(name: str) -> Exception:
    return invalid_request(
        f"You passed an empty string for '{name}'. We assume empty values are an attempt to "
        f"unset a parameter; however '{name}' cannot be unset. You should remove '{name}' from "
        "your request or supply a non-empty value.",
        param=name,
        code="parameter_invalid_empty",
    )
