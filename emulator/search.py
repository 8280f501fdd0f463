"""Stripe's Search Query Language over stored objects, answered as `search_result` pages.

A query is parsed once per request by `stripe_search` (the parser the service shares) into clauses
(`[-]field op value`, joined by spaces, `AND` or `OR`), each compiled here into a predicate over
the stored dicts; the collection is then scanned newest first. Positions in error messages are
0-based character offsets into the query.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import operator
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import orjson

from emulator.context import includable
from emulator.errors import StripeError, invalid_request
from emulator.store import Collection
from stripe_search import Clause, FieldType, QueryError, TooManyClauses, UnknownField, parse

if TYPE_CHECKING:
    from emulator.context import Emulator

Obj = dict[str, Any]
Predicate = Callable[[Obj], bool]

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
        "disputed": "token",
        "metadata": "token",
        # Stripe's `payment_method_details.{SOURCE}.*`, SOURCE one of card, card_present and
        # interac_present (the emulator's charges are all `card`).
        **{
            f"payment_method_details.{source}.{field}": "token"
            for source in ("card", "card_present", "interac_present")
            for field in ("brand", "exp_month", "exp_year", "fingerprint", "last4")
        },
        "refunded": "token",
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
    "invoice": {
        "created": "numeric",
        "currency": "token",
        "customer": "string",
        "metadata": "token",
        "number": "string",
        "receipt_number": "string",
        "status": "string",
        "subscription": "string",
        "total": "numeric",
    },
}


def _charge_refunded(charge: Obj) -> str | None:
    """Stripe's search meaning of a charge's `refunded`, which differs from the attribute:
    `"true"` fully refunded, `"false"` partially refunded, `null` not refunded at all."""
    if charge.get("refunded"):
        return "true"
    return "false" if charge.get("amount_refunded") else None


def _invoice_subscription(invoice: Obj) -> Any:
    """An invoice's `subscription`, which this API version moved under `parent`."""
    details = (invoice.get("parent") or {}).get("subscription_details") or {}
    return details.get("subscription")


# Fields whose searched value is not the object's attribute of that name.
_DERIVED: dict[tuple[str, str], Callable[[Obj], Any]] = {
    ("charge", "refunded"): _charge_refunded,
    ("invoice", "subscription"): _invoice_subscription,
}

_COMPARE: dict[str, Callable[[float, float], bool]] = {
    ":": operator.eq,
    "=": operator.eq,
    ">": operator.gt,
    "<": operator.lt,
    ">=": operator.ge,
    "<=": operator.le,
}
_WORD = re.compile(r"\w+")
_HINT = (
    'Try using the format `metadata["key"]:"value"` to query for metadata or key:"value" '
    "to query for other fields."
)


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
    try:
        parsed = parse(query, fields)
    except QueryError as exc:
        raise _stripe_error(exc, object_name + "s") from exc
    predicates = [_compile(clause, fields[clause.field], object_name) for clause in parsed.clauses]
    if len(predicates) == 1:
        return predicates[0]
    if parsed.joiner == "OR":
        return lambda obj: any(p(obj) for p in predicates)
    return lambda obj: all(p(obj) for p in predicates)


def _stripe_error(exc: QueryError, resource: str) -> StripeError:
    """A parse error in Stripe's words."""
    if isinstance(exc, UnknownField):
        return invalid_request(
            f"Field `{exc.field}` is an unsupported search field for resource `{resource}` "
            f"(at position {exc.position}). See http://stripe.com/docs/search#query-fields-for-"
            f"{resource.replace('_', '-')} for a list of supported fields.",
            param="query",
        )
    if isinstance(exc, TooManyClauses):
        return invalid_request(
            f"We were unable to parse your search query. {exc.describe()}.", param="query"
        )
    return invalid_request(
        f"We were unable to parse your search query. {exc.describe()}. {_HINT}", param="query"
    )


def _compile(clause: Clause, field_type: FieldType, object_name: str) -> Predicate:
    get = _DERIVED.get((object_name, clause.field)) or _getter(clause)
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
