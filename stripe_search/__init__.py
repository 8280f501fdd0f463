"""Stripe's Search Query Language: the parser shared by the emulator and the service.

`parse(query)` turns a query such as `status:'succeeded' AND metadata['order_id']:'12345'` into a
`Query`: clauses (`[-]field op value`) joined by AND or OR. Each consumer evaluates the clauses its
own way (the emulator over stored dicts, the service as SQL). Pure: no I/O, no imports from the
service or the emulator.
"""

from stripe_search.parser import (
    ALLOWED_OPERATORS,
    MAX_CLAUSES,
    OPERATORS,
    Clause,
    FieldType,
    Query,
    QueryError,
    TooManyClauses,
    UnknownField,
    parse,
)

__all__ = [
    "ALLOWED_OPERATORS",
    "MAX_CLAUSES",
    "OPERATORS",
    "Clause",
    "FieldType",
    "Query",
    "QueryError",
    "TooManyClauses",
    "UnknownField",
    "parse",
]
