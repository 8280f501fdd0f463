"""Stripe's search language for payment intents, answered from our own mirror table.

`stripe_search` parses the query; this module turns its clauses into one SQL WHERE clause over
`payment_intents`, so a search sees every write the moment it returns (Stripe's own search lags
up to a minute). Matching follows Stripe's: tokens (`status`, `currency`, `customer`,
`metadata['key']`) compare exactly but case-insensitively, `amount` and `created` compare as
numbers, `null` matches a missing or empty value, `-` negates a clause.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from typing import Any, cast

from sqlalchemy import Boolean, ColumnElement, Table, and_, false, func, literal, not_, or_
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler

from app.errors import InvalidRequest
from app.models import PaymentIntent
from stripe_search import Clause, FieldType, QueryError, TooManyClauses, UnknownField, parse

FIELDS: dict[str, FieldType] = {
    "amount": "numeric",
    "created": "numeric",
    "currency": "token",
    "customer": "token",
    "metadata": "token",
    "status": "token",
}
_COLUMNS: dict[str, Any] = {
    "amount": PaymentIntent.amount,
    "created": PaymentIntent.created,
    "currency": PaymentIntent.currency,
    "customer": PaymentIntent.customer,
    "status": PaymentIntent.status,
}


def where(query: str) -> ColumnElement[bool]:
    """The SQL condition for `query`; a malformed query is a 400 on `query` that says where."""
    try:
        parsed = parse(query, FIELDS)
    except QueryError as exc:
        raise _invalid(exc) from exc
    conditions = [_condition(clause) for clause in parsed.clauses]
    if len(conditions) == 1:
        return conditions[0]
    return or_(*conditions) if parsed.joiner == "OR" else and_(*conditions)


def _invalid(exc: QueryError) -> InvalidRequest:
    if isinstance(exc, UnknownField):
        supported = ", ".join(f"`{name}`" for name in FIELDS)
        message = (
            f"Field `{exc.field}` cannot be searched (at position {exc.position}); payment "
            f"intents can be searched by {supported}."
        )
    elif isinstance(exc, TooManyClauses):
        message = f"Invalid search query: {exc.describe()}."
    else:
        message = (
            f"Invalid search query: {exc.describe()}. Write clauses as field:'value' (or "
            "metadata['key']:'value'), joined by AND or OR."
        )
    return InvalidRequest(message, code="parameter_invalid", param="query", position=exc.position)


def _condition(clause: Clause) -> ColumnElement[bool]:
    condition = _positive(clause)
    return not_(condition) if clause.negated else condition


def _positive(clause: Clause) -> ColumnElement[bool]:
    """A condition that is never SQL NULL, so that negating it is exact."""
    column: Any
    if clause.key is not None:
        column = PaymentIntent.metadata_[clause.key].as_string()
        if clause.value is not None:
            return _MetadataMatches(clause.key, clause.value)
    else:
        column = _COLUMNS[clause.field]
    if clause.value is None:
        if FIELDS[clause.field] == "numeric":
            return false()  # amount and created are always set
        return or_(column.is_(None), column == "")
    if FIELDS[clause.field] == "numeric":
        number = clause.number
        compare = {
            ":": column == number,
            "=": column == number,
            ">": column > number,
            "<": column < number,
            ">=": column >= number,
            "<=": column <= number,
        }
        return compare.get(clause.op, false())  # type: ignore[no-any-return]
    if clause.field in _LOWER_CASE_AT_STRIPE:
        return and_(column.is_not(None), column == clause.value.lower())
    return and_(column.is_not(None), func.lower(column) == clause.value.lower())


# Token fields whose values Stripe always writes in lower case (a status is one of its enum's
# values; "currency: Three-letter ISO currency code, in lowercase"): compared as they are, so
# the plain `(field, created, id)` indexes serve them, with the value lower-cased.
_LOWER_CASE_AT_STRIPE = frozenset({"status", "currency"})


class _MetadataMatches(ColumnElement[bool]):
    """`lower(metadata->>'key') = lower('value')`, written on Postgres as containment in the
    metadata with lower-cased values (`metadata_lower`, a column Postgres generates with the
    migrations' `metadata_lower_values`): the same rows, answered by the GIN index over that
    column, as one condition whose selectivity the planner knows from the column's statistics,
    and checked on a filtered scan without a function call per row. Never SQL NULL."""

    inherit_cache = False  # never cached: the key and value are compiled into the statement
    type = Boolean()

    def __init__(self, key: str, value: str) -> None:
        self.key = key
        self.value = value


@compiles(_MetadataMatches)
def _matches_anywhere(element: _MetadataMatches, compiler: SQLCompiler, **kw: Any) -> str:
    column = PaymentIntent.metadata_[element.key].as_string()
    exact = and_(column.is_not(None), func.lower(column) == func.lower(element.value))
    return f"({compiler.process(exact, **kw)})"


@compiles(_MetadataMatches, "postgresql")
def _matches_on_postgres(element: _MetadataMatches, compiler: SQLCompiler, **kw: Any) -> str:
    table = compiler.preparer.format_table(cast(Table, PaymentIntent.__table__))
    key = compiler.process(literal(element.key), **kw)
    value = compiler.process(literal(element.value), **kw)
    return (
        f"({table}.metadata_lower @> "
        f"jsonb_build_object(CAST({key} AS TEXT), lower(CAST({value} AS TEXT))))"
    )


def digest(query: str) -> str:
    return hashlib.sha256(query.encode()).hexdigest()[:16]


def page_token(query: str, created: int, row_id: int) -> str:
    """`next_page`: where the next page resumes, bound to this query."""
    raw = json.dumps({"q": digest(query), "c": created, "i": row_id}).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def page_position(query: str, page: str) -> tuple[int, int]:
    """The (created, row id) a `next_page` token resumes below; refused if not for this query."""
    try:
        decoded = json.loads(base64.urlsafe_b64decode(page + "=" * (-len(page) % 4)))
    except (binascii.Error, ValueError):
        decoded = None
    if (
        not isinstance(decoded, dict)
        or decoded.get("q") != digest(query)
        or not isinstance(decoded.get("c"), int)
        or not isinstance(decoded.get("i"), int)
    ):
        raise InvalidRequest(
            "Invalid page: pass the `next_page` of a previous search with the same query.",
            code="parameter_invalid",
            param="page",
        )
    return decoded["c"], decoded["i"]
