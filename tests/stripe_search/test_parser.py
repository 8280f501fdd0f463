"""The search query parser on its own: queries in, clauses or positioned errors out."""

from __future__ import annotations

import pytest

from stripe_search import (
    Clause,
    FieldType,
    QueryError,
    TooManyClauses,
    UnknownField,
    parse,
)

FIELDS: dict[str, FieldType] = {
    "amount": "numeric",
    "created": "numeric",
    "status": "token",
    "metadata": "token",
    "email": "string",
}


def only(query: str) -> Clause:
    [clause] = parse(query, FIELDS).clauses
    return clause


class TestClauses:
    def test_the_seed_query(self) -> None:
        parsed = parse("status:'succeeded' AND metadata['order_id']:'12345'", FIELDS)

        assert parsed.joiner == "AND"
        status, metadata = parsed.clauses
        assert (status.field, status.key, status.op, status.value) == (
            "status",
            None,
            ":",
            "succeeded",
        )
        assert (status.negated, status.quoted, status.position) == (False, True, 0)
        assert (metadata.field, metadata.key, metadata.op, metadata.value) == (
            "metadata",
            "order_id",
            ":",
            "12345",
        )
        assert metadata.position == 23

    @pytest.mark.parametrize("op", [":", "=", ">", "<", ">=", "<="])
    def test_numeric_operators(self, op: str) -> None:
        clause = only(f"amount{op}1000")
        assert (clause.op, clause.value, clause.number, clause.quoted) == (op, "1000", 1000, False)

    def test_decimal_and_quoted_numbers(self) -> None:
        assert only("amount>10.5").number == 10.5
        assert only("amount>'999'").number == 999

    def test_negation(self) -> None:
        clause = only("-status:'canceled'")
        assert clause.negated is True
        assert clause.field == "status"
        assert clause.position == 0

    def test_or_in_any_case(self) -> None:
        parsed = parse("status:'a' or status:'b' OR status:'c'", FIELDS)
        assert parsed.joiner == "OR"
        assert [c.value for c in parsed.clauses] == ["a", "b", "c"]

    def test_a_space_means_and(self) -> None:
        parsed = parse("status:'a' amount>1 and created<5", FIELDS)
        assert parsed.joiner == "AND"
        assert [c.field for c in parsed.clauses] == ["status", "amount", "created"]

    def test_null(self) -> None:
        for query in ("metadata['gift']:null", "metadata['gift']:NULL"):
            clause = only(query)
            assert (clause.key, clause.value, clause.quoted) == ("gift", None, False)
        assert only("status:'null'").value == "null"

    def test_quotes_and_escapes(self) -> None:
        assert only('metadata["k"]:\'it\\\'s "fine"\'').value == 'it\'s "fine"'
        assert only('metadata["k"]:"say \\"hi\\""').value == 'say "hi"'
        assert only("status:'  spaced  '").value == "  spaced  "

    def test_without_fields_any_field_parses(self) -> None:
        parsed = parse("anything.nested:'x' -other>3")
        assert [(c.field, c.negated) for c in parsed.clauses] == [
            ("anything.nested", False),
            ("other", True),
        ]

    def test_substring_on_string_fields(self) -> None:
        assert only("email~'example'").op == "~"


class TestErrors:
    @pytest.mark.parametrize(
        ("query", "position", "message"),
        [
            ("", 0, "The query is empty"),
            ("   ", 0, "The query is empty"),
            ("status:'succeeded", 7, "Unterminated string"),
            ("status:", 6, "Expected a value after `:`, found the end of the query"),
            ("amount> 5", 6, "Expected a value after `>`"),
            ("status 'x'", 6, "Expected an operator"),
            ("status:'a' AND", 11, "Expected a clause after `AND`"),
            ("AND status:'a'", 0, "Expected a clause, found `AND`"),
            ("status:'a' AND amount>1 OR status:'b'", 24, "AND and OR cannot be combined"),
            ("status:'a' OR amount>1 status:'b'", 23, "AND and OR cannot be combined"),
            ("(status:'a')", 0, "Parentheses are not supported"),
            ("status>'a'", 6, "The `>` operator is not supported on the token field `status`"),
            ("amount~'100'", 6, "The `~` operator is not supported on the numeric field"),
            ("status:succeeded", 7, "String values must be in quotes"),
            ("amount>'lots'", 7, "The numeric field `amount` needs a number"),
            ("amount>null", 7, "`null` can only be used with `:`"),
            ("metadata:'x'", 0, "metadata needs a key"),
            ("metadata[k]:'x'", 9, "Expected a quoted metadata key"),
            ("metadata['k':'x'", 12, "Expected `]` after the metadata key"),
            ("status:'a'amount>1", 10, "Expected a space, AND or OR after the clause"),
            ("-", 0, "Expected a field after `-`"),
            ("status['x']:'a'", 0, "Only metadata takes a key in brackets"),
            ("email~'ab'", 6, "A substring search needs at least 3 characters"),
        ],
    )
    def test_says_what_and_where(self, query: str, position: int, message: str) -> None:
        with pytest.raises(QueryError) as caught:
            parse(query, FIELDS)

        assert caught.value.position == position
        assert message in caught.value.message
        assert f"(at position {position}" in str(caught.value)

    def test_shows_the_text_at_the_position(self) -> None:
        with pytest.raises(QueryError) as caught:
            parse("status:'a' OR amount>1 currency:'usd'")
        assert caught.value.near == "currency:'usd'"
        assert caught.value.describe().endswith("(at position 23: `currency:'usd'`)")

    def test_unknown_field(self) -> None:
        with pytest.raises(UnknownField) as caught:
            parse("status:'a' AND description:'x'", FIELDS)
        assert (caught.value.field, caught.value.position) == ("description", 15)

    def test_too_many_clauses(self) -> None:
        query = " AND ".join(["amount>1"] * 11)
        with pytest.raises(TooManyClauses) as caught:
            parse(query, FIELDS)
        assert caught.value.position == 130
        assert "clause 11 starts at position 130" in caught.value.describe()
        assert len(parse(query, FIELDS, max_clauses=11).clauses) == 11

    def test_field_checks_need_fields(self) -> None:
        # Without a field table the parser cannot know types: it checks syntax only.
        assert parse("status>'a'").clauses[0].op == ">"
        with pytest.raises(QueryError):
            parse("status>null")
