"""A hand-written scanner for Stripe's search queries: one pass, every error naming its position.

Grammar (Stripe's): `clause (sep clause)*` where a clause is `[-]field op value`, `field` is a
name (dots allowed) or `metadata['key']`, `op` is one of `:` `~` `=` `>` `<` `>=` `<=`, `value` is a
quoted string (`'…'` or `"…"`, backslash escapes), a bare number, or `null`; `sep` is a space
(meaning AND), `AND` or `OR` (any case). AND and OR cannot be mixed; there are no parentheses.
Positions are 0-based character offsets into the query.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

FieldType = Literal["token", "string", "numeric"]
Joiner = Literal["AND", "OR"]

MAX_CLAUSES = 10
MIN_SUBSTRING = 3
OPERATORS = (">=", "<=", ":", "~", ">", "<", "=")
ALLOWED_OPERATORS: dict[FieldType, tuple[str, ...]] = {
    "token": (":",),
    "string": (":", "~"),
    "numeric": (":", "=", ">", "<", ">=", "<="),
}
_IDENT = re.compile(r"[A-Za-z0-9_.]+")
_NUMBER = re.compile(r"-?\d+(\.\d+)?")


class QueryError(ValueError):
    """A query that cannot be parsed: what is wrong, where (`position`), and the text there."""

    def __init__(self, message: str, position: int, near: str | None = None) -> None:
        self.message = message
        self.position = position
        self.near = near
        super().__init__(self.describe())

    def describe(self) -> str:
        """`message (at position N: `text`)`: the message with where it happened."""
        near = self.near or ""
        if len(near) > 40:
            near = near[:40] + "…"
        shown = ": a space" if near.isspace() else f": `{near}`" if near else ""
        return f"{self.message} (at position {self.position}{shown})"


class UnknownField(QueryError):
    """A field the resource cannot be searched by (only raised when `fields` is given)."""

    def __init__(self, field: str, position: int) -> None:
        self.field = field
        super().__init__(f"Field `{field}` is not a search field", position, field)


class TooManyClauses(QueryError):
    """More than `max_clauses` clauses; `position` is where the first one too many starts."""

    def __init__(self, limit: int, count: int, position: int) -> None:
        self.limit = limit
        self.count = count
        super().__init__(
            f"A query can combine at most {limit} clauses; clause {count} starts at position "
            f"{position}",
            position,
        )

    def describe(self) -> str:
        return self.message


@dataclass(frozen=True, slots=True)
class Clause:
    field: str  # `metadata` for metadata['key']
    key: str | None  # the metadata key
    op: str
    value: str | None  # unquoted text; None for `null`
    negated: bool
    quoted: bool
    position: int  # where the clause starts (its `-` if negated)
    op_at: int
    value_at: int

    @property
    def number(self) -> int | float:
        """The value as a number (for numeric fields, where the parser checked it is one)."""
        assert self.value is not None
        return float(self.value) if "." in self.value else int(self.value)


@dataclass(frozen=True, slots=True)
class Query:
    text: str
    clauses: tuple[Clause, ...]
    joiner: Joiner  # AND for a single clause


def parse(
    query: str,
    fields: Mapping[str, FieldType] | None = None,
    *,
    max_clauses: int = MAX_CLAUSES,
) -> Query:
    """Parse `query`; with `fields`, also check each field exists and takes its operator and
    value (`UnknownField`, `QueryError`). Raises `QueryError` at the first problem found."""
    clauses, joiner = _Parser(query, fields, max_clauses).parse()
    return Query(text=query, clauses=tuple(clauses), joiner=joiner)


class _Parser:
    def __init__(self, text: str, fields: Mapping[str, FieldType] | None, max_clauses: int) -> None:
        self.text = text
        self.i = 0
        self.fields = fields
        self.max_clauses = max_clauses

    def parse(self) -> tuple[list[Clause], Joiner]:
        self._spaces()
        if self._end():
            raise QueryError("The query is empty", 0)
        clauses = [self._clause()]
        joiner: Joiner | None = None
        while True:
            spaced = self._spaces()
            if self._end():
                break
            if not spaced:
                raise QueryError(
                    "Expected a space, AND or OR after the clause", self.i, self._word_at(self.i)
                )
            word = self._keyword()
            this: Joiner = "AND"
            if word is not None:
                at = self.i
                self.i += len(word)
                self._spaces()
                if self._end():
                    raise QueryError(
                        f"Expected a clause after `{word}`, found the end of the query", at, word
                    )
                this = "OR" if word.upper() == "OR" else "AND"
                if joiner is not None and this != joiner:
                    raise self._mixed(at, word)
            elif joiner == "OR":
                raise self._mixed(self.i, self._word_at(self.i))
            joiner = this
            start = self.i
            if len(clauses) == self.max_clauses:
                raise TooManyClauses(self.max_clauses, len(clauses) + 1, start)
            clauses.append(self._clause())
        return clauses, joiner or "AND"

    def _clause(self) -> Clause:
        text = self.text
        start = self.i
        word = self._keyword()
        if word is not None:
            raise QueryError(f"Expected a clause, found `{word}`", self.i, word)
        negated = text[self.i] == "-"
        if negated:
            self.i += 1
        field_at = self.i
        if self._end():
            raise QueryError("Expected a field after `-`", field_at - 1, "-")
        if text[self.i] in "()":
            raise QueryError("Parentheses are not supported", self.i, text[self.i])
        match = _IDENT.match(text, self.i)
        if match is None:
            raise QueryError("Expected a field name", self.i, self._word_at(self.i))
        field = match.group()
        self.i = match.end()
        key = None
        if field == "metadata":
            key = self._metadata_key(field_at)
        elif self._peek("["):
            raise QueryError(
                "Only metadata takes a key in brackets", field_at, self._word_at(field_at)
            )
        field_type: FieldType | None = None
        if self.fields is not None:
            field_type = self.fields.get(field)
            if field_type is None:
                raise UnknownField(field, field_at)
        op_at = self.i
        op = next((op for op in OPERATORS if text.startswith(op, self.i)), None)
        if op is None:
            raise QueryError(
                f"Expected an operator (`:`, `~`, `>`, `<`, `>=`, `<=` or `=`) after `{field}`",
                op_at,
                self._word_at(op_at),
            )
        self.i += len(op)
        value_at = self.i
        value, quoted = self._value(op)
        shown = text[value_at : self.i]
        if field_type is not None and op not in ALLOWED_OPERATORS[field_type]:
            allowed = ", ".join(f"`{o}`" for o in ALLOWED_OPERATORS[field_type])
            raise QueryError(
                f"The `{op}` operator is not supported on the {field_type} field `{field}`; "
                f"it supports {allowed}",
                op_at,
                op,
            )
        if value is None and op != ":":
            raise QueryError(f"`null` can only be used with `:`, not `{op}`", value_at, shown)
        if value is not None and field_type == "numeric" and _NUMBER.fullmatch(value) is None:
            raise QueryError(f"The numeric field `{field}` needs a number", value_at, shown)
        if value is not None and field_type in ("token", "string") and not quoted:
            if _NUMBER.fullmatch(value) is None:
                raise QueryError("String values must be in quotes", value_at, shown)
        if op == "~" and value is not None and len(value) < MIN_SUBSTRING:
            raise QueryError(
                f"A substring search needs at least {MIN_SUBSTRING} characters", value_at, shown
            )
        return Clause(
            field=field,
            key=key,
            op=op,
            value=value,
            negated=negated,
            quoted=quoted,
            position=start,
            op_at=op_at,
            value_at=value_at,
        )

    def _metadata_key(self, field_at: int) -> str:
        if not self._peek("["):
            raise QueryError(
                "metadata needs a key, as in metadata['key']", field_at, self._word_at(field_at)
            )
        self.i += 1
        if self._end() or self.text[self.i] not in "'\"":
            raise QueryError(
                "Expected a quoted metadata key after `metadata[`", self.i, self._word_at(self.i)
            )
        key = self._quoted()
        if not self._peek("]"):
            raise QueryError("Expected `]` after the metadata key", self.i, self._word_at(self.i))
        self.i += 1
        return key

    def _value(self, op: str) -> tuple[str | None, bool]:
        text = self.text
        if self._end():
            raise QueryError(
                f"Expected a value after `{op}`, found the end of the query", self.i - len(op), op
            )
        char = text[self.i]
        if char in "'\"":
            return self._quoted(), True
        if char in "()":
            raise QueryError("Parentheses are not supported", self.i, char)
        if char.isspace():
            raise QueryError(f"Expected a value after `{op}`", self.i - len(op), op)
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
        raise QueryError(
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

    def _mixed(self, at: int, word: str) -> QueryError:
        return QueryError(
            "AND and OR cannot be combined in one query (clauses separated only by a space "
            "are joined with AND)",
            at,
            word,
        )
