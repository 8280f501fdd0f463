"""Stripe's Search Query Language over stored objects, answered as `search_result` pages.

A query is parsed once per request into clauses (`[-]field op value`, joined by spaces, `AND` or
`OR`), each compiled into a predicate over the stored dicts; the collection is then scanned newest
first. Positions in error messages are 0-based character offsets into the query.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import orjson

from emulator.context import includable
from emulator.errors import StripeError, invalid_request
from emulator.store import Collection

if TYPE_CHECKING:
    from emulator.context import Emulator

Obj = dict[str, Any]
Predicate = Callable[[Obj], bool]
FieldType = Literal["token", "string", "numeric"]

# Stripe's documented query fields for each searchable resource the emulator stores.
FIELDS: dict[str, dict[str, FieldType]] = {
    "payment_intent": {
        "amount": "numeric",
        "created": "numeric",
        "currency": "token",
        "customer": "token",
        "metadata": "token",
        "status": "token",
    },
    "charge": {
        "amount": "numeric",
        "billing_details.address.postal_code": "token",
        "created": "numeric",
        "currency": "token",
        "customer": "token",
        "metadata": "token",
        "payment_method_details.card.brand": "token",
        "payment_method_details.card.exp_month": "token",
        "payment_method_details.card.exp_year": "token",
        "payment_method_details.card.fingerprint": "token",
        "payment_method_details.card.last4": "token",
        "status": "token",
    },
    "customer": {
        "created": "numeric",
        "email": "string",
        "metadata": "token",
        "name": "string",
        "phone": "string",
    },
    "price": {
        "active": "token",
        "currency": "token",
        "lookup_key": "string",
        "metadata": "token",
        "product": "string",
        "type": "token",
    },
    "product": {
        "active": "token",
        "description": "string",
        "metadata": "token",
        "name": "string",
        "shippable": "token",
        "url": "string",
    },
    "subscription": {"created": "numeric", "metadata": "token", "status": "token"},
}

MAX_CLAUSES = 10
MIN_SUBSTRING = 3
OPERATORS = (">=", "<=", ":", "~", ">", "<", "=")
ALLOWED: dict[FieldType, tuple[str, ...]] = {
    "token": (":",),
    "string": (":", "~"),
    "numeric": (":", "=", ">", "<", ">=", "<="),
}
_COMPARE: dict[str, Callable[[float, float], bool]] = {
    ":": operator.eq,
    "=": operator.eq,
    ">": operator.gt,
    "<": operator.lt,
    ">=": operator.ge,
    "<=": operator.le,
}
_IDENT = re.compile(r"[A-Za-z0-9_.]+")
_NUMBER = re.compile(r"-?\d+(\.\d+)?")
_WORD = re.compile(r"\w+")
_HINT = (
    'Try using the format `metadata["key"]:"value"` to query for metadata or key:"value" '
    "to query for other fields."
)


@dataclass(frozen=True, slots=True)
class Clause:
    field: str
    key: str | None  # the metadata key, for `metadata['key']`
    op: str
    value: str | None  # None for `null`
    negated: bool


def search(coll: Collection, params: dict[str, Any], url: str) -> dict[str, Any]:
    """A `search_result` page for `params["query"]`, `limit` and `page`."""
    query = params.get("query")
    if not isinstance(query, str):
        raise invalid_request("Missing required param: query.", param="query")
    limit = int(params.get("limit", 10))
    if limit < 1 or limit > 100:
        raise invalid_request(
            "This value must be greater than or equal to 1 and less than or equal to 100.",
            param="limit",
        )
    predicate = compile_query(query, coll.object_name)
    start = len(coll.order)
    page = params.get("page")
    if page:
        start = min(start, _page_position(page, query))
    counting = "total_count" in (params.get("expand") or ())
    data: list[Obj] = []
    has_more = False
    last = total = 0
    # One pass: the page is taken below the cursor; `total_count` needs every match.
    for pos in range(len(coll.order) - 1 if counting else start - 1, -1, -1):
        object_id = coll.order[pos]
        if object_id is None:
            continue
        if not predicate(coll.by_id[object_id]):
            continue
        total += 1
        if pos >= start:
            continue
        if len(data) == limit:
            has_more = True
            if not counting:
                break
            continue
        data.append(coll.by_id[object_id])
        last = pos
    result: dict[str, Any] = {
        "object": "search_result",
        "data": data,
        "has_more": has_more,
        "next_page": _page_token(query, last) if has_more else None,
        "url": url,
    }
    if counting:
        result["total_count"] = total
    return result


@includable("search_result", "total_count")
def _total_count(emu: Emulator, result: dict[str, Any]) -> Any:
    """`search` fills `total_count` itself when asked; this lets `expand[]=total_count` through."""
    return result.get("total_count")


def compile_query(query: str, object_name: str) -> Predicate:
    """Parse `query` for the resource `object_name` into one predicate over stored objects."""
    fields = FIELDS.get(object_name, {})
    clauses, joiner = _Parser(query, fields, object_name).parse()
    predicates = [_compile(clause, fields[clause.field]) for clause in clauses]
    if len(predicates) == 1:
        return predicates[0]
    if joiner == "OR":
        return lambda obj: any(p(obj) for p in predicates)
    return lambda obj: all(p(obj) for p in predicates)


class _Parser:
    """A hand-written scanner: one pass over the query, every error naming its position."""

    def __init__(self, text: str, fields: dict[str, FieldType], object_name: str) -> None:
        self.text = text
        self.i = 0
        self.fields = fields
        self.resource = object_name + "s"
        self.clause_start = 0

    def parse(self) -> tuple[list[Clause], str]:
        self._spaces()
        if self._end():
            raise self._error("The query is empty", 0, "")
        clauses = [self._clause()]
        joiner: str | None = None
        while True:
            spaced = self._spaces()
            if self._end():
                break
            if not spaced:
                raise self._error(
                    "Expected a space, AND or OR after the clause", self.i, self._word_at(self.i)
                )
            word = self._keyword()
            this = "AND"
            if word is not None:
                at = self.i
                self.i += len(word)
                self._spaces()
                if self._end():
                    raise self._error(
                        f"Expected a clause after `{word}`, found the end of the query", at, word
                    )
                this = word.upper()
                if joiner is not None and this != joiner:
                    raise self._mixed(at, word)
            elif joiner == "OR":
                raise self._mixed(self.i, self._word_at(self.i))
            joiner = this
            clauses.append(self._clause())
            if len(clauses) > MAX_CLAUSES:
                raise invalid_request(
                    f"We were unable to parse your search query. A query can combine at most "
                    f"{MAX_CLAUSES} clauses; clause {len(clauses)} starts at position "
                    f"{self.clause_start}.",
                    param="query",
                )
        return clauses, joiner or "AND"

    def _clause(self) -> Clause:
        text = self.text
        self.clause_start = self.i
        word = self._keyword()
        if word is not None:
            raise self._error(f"Expected a clause, found `{word}`", self.i, word)
        negated = text[self.i] == "-"
        if negated:
            self.i += 1
        field_at = self.i
        if self._end():
            raise self._error("Expected a field after `-`", field_at - 1, "-")
        if text[self.i] in "()":
            raise self._error("Parentheses are not supported", self.i, text[self.i])
        match = _IDENT.match(text, self.i)
        if match is None:
            raise self._error("Expected a field name", self.i, self._word_at(self.i))
        field = match.group()
        self.i = match.end()
        key = None
        if field == "metadata":
            key = self._metadata_key(field_at)
        elif self._peek("["):
            raise self._error(
                "Only metadata takes a key in brackets", field_at, self._word_at(field_at)
            )
        field_type = self.fields.get(field)
        if field_type is None:
            raise invalid_request(
                f"Field `{field}` is an unsupported search field for resource "
                f"`{self.resource}` (at position {field_at}). See "
                f"http://stripe.com/docs/search#query-fields-for-"
                f"{self.resource.replace('_', '-')} for a list of supported fields.",
                param="query",
            )
        op_at = self.i
        op = next((op for op in OPERATORS if text.startswith(op, self.i)), None)
        if op is None:
            raise self._error(
                f"Expected an operator (`:`, `~`, `>`, `<`, `>=`, `<=` or `=`) after `{field}`",
                op_at,
                self._word_at(op_at),
            )
        self.i += len(op)
        value_at = self.i
        value, quoted = self._value(op)
        if op not in ALLOWED[field_type]:
            allowed = ", ".join(f"`{o}`" for o in ALLOWED[field_type])
            raise self._error(
                f"The `{op}` operator is not supported on the {field_type} field `{field}`; "
                f"it supports {allowed}",
                op_at,
                op,
            )
        shown = self.text[value_at : self.i]
        if value is None and op != ":":
            raise self._error(f"`null` can only be used with `:`, not `{op}`", value_at, shown)
        if value is not None and field_type == "numeric" and _NUMBER.fullmatch(value) is None:
            raise self._error(f"The numeric field `{field}` needs a number", value_at, shown)
        if value is not None and field_type != "numeric" and not quoted:
            if _NUMBER.fullmatch(value) is None:
                raise self._error("String values must be in quotes", value_at, shown)
        if op == "~" and value is not None and len(value) < MIN_SUBSTRING:
            raise self._error(
                f"A substring search needs at least {MIN_SUBSTRING} characters", value_at, shown
            )
        return Clause(field=field, key=key, op=op, value=value, negated=negated)

    def _metadata_key(self, field_at: int) -> str:
        if not self._peek("["):
            raise self._error(
                "metadata needs a key, as in metadata['key']", field_at, self._word_at(field_at)
            )
        self.i += 1
        if self._end() or self.text[self.i] not in "'\"":
            raise self._error(
                "Expected a quoted metadata key after `metadata[`", self.i, self._word_at(self.i)
            )
        key = self._quoted()
        if not self._peek("]"):
            raise self._error("Expected `]` after the metadata key", self.i, self._word_at(self.i))
        self.i += 1
        return key

    def _value(self, op: str) -> tuple[str | None, bool]:
        text = self.text
        if self._end():
            raise self._error(
                f"Expected a value after `{op}`, found the end of the query", self.i - len(op), op
            )
        char = text[self.i]
        if char in "'\"":
            return self._quoted(), True
        if char in "()":
            raise self._error("Parentheses are not supported", self.i, char)
        if char.isspace():
            raise self._error(f"Expected a value after `{op}`", self.i - len(op), op)
        start = self.i
        while not self._end() and not text[self.i].isspace() and text[self.i] not in "()'\"":
            self.i += 1
        bare = text[start : self.i]
        if bare.lower() == "null":
            return None, False
        return bare, False

    def _quoted(self) -> str:
        text = self.text
        quote_at = self.i
        quote = text[quote_at]
        self.i += 1
        out: list[str] = []
        while not self._end():
            char = text[self.i]
            if char == "\\" and self.i + 1 < len(text):
                out.append(text[self.i + 1])
                self.i += 2
                continue
            if char == quote:
                self.i += 1
                return "".join(out)
            out.append(char)
            self.i += 1
        raise self._error(
            f"Unterminated string: the opening {quote} is never closed",
            quote_at,
            text[quote_at:],
        )

    def _keyword(self) -> str | None:
        for word in ("AND", "OR"):
            end = self.i + len(word)
            if self.text[self.i : end].upper() == word and (
                end == len(self.text) or self.text[end].isspace()
            ):
                return self.text[self.i : end]
        return None

    def _spaces(self) -> bool:
        start = self.i
        while not self._end() and self.text[self.i].isspace():
            self.i += 1
        return self.i > start

    def _peek(self, char: str) -> bool:
        return not self._end() and self.text[self.i] == char

    def _end(self) -> bool:
        return self.i >= len(self.text)

    def _word_at(self, pos: int) -> str:
        """The text from `pos` up to the next space, to show in an error."""
        end = pos
        while end < len(self.text) and not self.text[end].isspace():
            end += 1
        return self.text[pos:end] or self.text[pos : pos + 1]

    def _mixed(self, at: int, word: str) -> StripeError:
        return self._error(
            "AND and OR cannot be combined in one query (clauses separated only by a space "
            "are joined with AND)",
            at,
            word,
        )

    def _error(self, detail: str, at: int, shown: str) -> StripeError:
        if len(shown) > 40:
            shown = shown[:40] + "…"
        near = ": a space" if shown.isspace() else f": `{shown}`" if shown else ""
        return invalid_request(
            f"We were unable to parse your search query. {detail} (at position {at}{near}). "
            + _HINT,
            param="query",
        )


def _compile(clause: Clause, field_type: FieldType) -> Predicate:
    get = _getter(clause)
    predicate: Predicate
    value = clause.value
    if value is None:

        def predicate(obj: Obj) -> bool:
            return get(obj) in (None, "")

    elif field_type == "numeric":
        compare, number = _COMPARE[clause.op], float(value)

        def predicate(obj: Obj) -> bool:
            found = get(obj)
            return (
                isinstance(found, int | float)
                and not isinstance(found, bool)
                and compare(found, number)
            )

    elif clause.op == "~":
        part = value.casefold()

        def predicate(obj: Obj) -> bool:
            found = get(obj)
            return isinstance(found, str) and part in found.casefold()

    elif field_type == "string":
        words = _WORD.findall(value.casefold())

        def predicate(obj: Obj) -> bool:
            found = get(obj)
            return isinstance(found, str) and _has_phrase(_WORD.findall(found.casefold()), words)

    else:
        wanted = value.casefold()

        def predicate(obj: Obj) -> bool:
            found = get(obj)
            return found is not None and _token(found) == wanted

    if clause.negated:
        positive = predicate
        return lambda obj: not positive(obj)
    return predicate


def _getter(clause: Clause) -> Callable[[Obj], Any]:
    key = clause.key
    if key is not None:
        return lambda obj: (obj.get("metadata") or {}).get(key)
    parts = clause.field.split(".")
    if len(parts) == 1:
        name = parts[0]
        return lambda obj: obj.get(name)

    def walk(obj: Obj) -> Any:
        node: Any = obj
        for part in parts:
            if not isinstance(node, dict):
                return None
            node = node.get(part)
        return node

    return walk


def _token(found: Any) -> str:
    if isinstance(found, bool):
        return "true" if found else "false"
    return str(found).casefold()


def _has_phrase(haystack: list[str], words: list[str]) -> bool:
    """Whether `words` appear consecutively, in order, in `haystack` (Stripe's string match)."""
    if not words:
        return not haystack
    n = len(words)
    return any(haystack[i : i + n] == words for i in range(len(haystack) - n + 1))


def _query_digest(query: str) -> str:
    return hashlib.sha256(query.encode()).hexdigest()[:16]


def _page_token(query: str, position: int) -> str:
    raw = orjson.dumps({"q": _query_digest(query), "p": position})
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _page_position(page: str, query: str) -> int:
    """The stored position a `next_page` token resumes before; refused if not for this query."""
    try:
        decoded = orjson.loads(base64.urlsafe_b64decode(page + "=" * (-len(page) % 4)))
    except (binascii.Error, ValueError):
        decoded = None
    if (
        not isinstance(decoded, dict)
        or not isinstance(decoded.get("p"), int)
        or decoded.get("q") != _query_digest(query)
    ):
        raise invalid_request(
            f"Invalid page: {page[:100]}. Pass the next_page value of a previous search with "
            "the same query.",
            param="page",
        )
    return max(0, int(decoded["p"]))
