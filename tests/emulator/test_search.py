"""PaymentIntent search through the SDK: Stripe's query language, `search_result` pages, errors."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import stripe

URL = "/v1/payment_intents/search"


def make_pi(
    client: stripe.StripeClient,
    amount: int = 1000,
    *,
    currency: str = "usd",
    metadata: dict[str, str] | None = None,
    succeed: bool = False,
    customer: str | None = None,
) -> stripe.PaymentIntent:
    params: dict[str, Any] = {
        "amount": amount,
        "currency": currency,
        "automatic_payment_methods": {"enabled": True, "allow_redirects": "never"},
        "metadata": metadata or {},
    }
    if customer is not None:
        params["customer"] = customer
    if succeed:
        params.update(payment_method="pm_card_visa", confirm=True)
    pi = client.v1.payment_intents.create(params=params)  # type: ignore[arg-type]
    assert pi.status == ("succeeded" if succeed else "requires_payment_method")
    return pi


def ids(client: stripe.StripeClient, query: str) -> list[str]:
    result = client.v1.payment_intents.search(params={"query": query})
    assert result["object"] == "search_result"
    assert result["url"] == URL
    return [pi.id for pi in result.data]


def advance(controls: httpx.Client, seconds: int) -> int:
    response = controls.post("/_emulator/clock", json={"advance_seconds": seconds})
    response.raise_for_status()
    return int(response.json()["now"])


class TestSearchClauses:
    def test_seed_query_finds_the_succeeded_intent_of_that_order(
        self, client: stripe.StripeClient
    ) -> None:
        wanted = make_pi(client, 2000, metadata={"order_id": "12345"}, succeed=True)
        make_pi(client, 2000, metadata={"order_id": "99999"}, succeed=True)
        make_pi(client, 2000, metadata={"order_id": "12345"})

        result = client.v1.payment_intents.search(
            params={"query": "status:'succeeded' AND metadata['order_id']:'12345'"}
        )

        assert result["object"] == "search_result"
        assert result["url"] == URL
        assert result.has_more is False
        assert result.next_page is None
        assert "total_count" not in result
        assert [pi.id for pi in result.data] == [wanted.id]
        found = result.data[0]
        assert isinstance(found, stripe.PaymentIntent)
        assert found.to_dict() == client.v1.payment_intents.retrieve(wanted.id).to_dict()

    def test_token_fields_match_exactly_and_ignore_case(self, client: stripe.StripeClient) -> None:
        usd = make_pi(client, succeed=True)
        eur = make_pi(client, currency="eur")

        assert ids(client, "status:'SUCCEEDED'") == [usd.id]
        assert ids(client, 'currency:"EUR"') == [eur.id]
        assert ids(client, "status:'succeed'") == []
        assert ids(client, "currency:'us'") == []

    def test_negation_excludes_matching_intents(self, client: stripe.StripeClient) -> None:
        done = make_pi(client, succeed=True)
        open_ = make_pi(client)
        canceled = make_pi(client)
        client.v1.payment_intents.cancel(canceled.id)

        assert ids(client, "-status:'canceled'") == [open_.id, done.id]
        assert ids(client, "-status:'canceled' AND -status:'succeeded'") == [open_.id]

    def test_or_matches_either_clause(self, client: stripe.StripeClient) -> None:
        usd = make_pi(client, currency="usd")
        eur = make_pi(client, currency="eur")
        make_pi(client, currency="gbp")

        assert ids(client, "currency:'usd' OR currency:'eur'") == [eur.id, usd.id]
        assert ids(client, "currency:'usd' or currency:'eur'") == [eur.id, usd.id]

    def test_space_and_lowercase_and_both_mean_and(self, client: stripe.StripeClient) -> None:
        both = make_pi(client, 5000, currency="eur")
        make_pi(client, 5000, currency="usd")
        make_pi(client, 100, currency="eur")

        assert ids(client, "currency:'eur' amount:5000") == [both.id]
        assert ids(client, "currency:'eur' and amount:5000") == [both.id]

    def test_numeric_comparisons_on_amount(self, client: stripe.StripeClient) -> None:
        small = make_pi(client, 500)
        mid = make_pi(client, 1000)
        big = make_pi(client, 3000)

        assert ids(client, "amount>1000") == [big.id]
        assert ids(client, "amount>=1000") == [big.id, mid.id]
        assert ids(client, "amount<1000") == [small.id]
        assert ids(client, "amount<=1000") == [mid.id, small.id]
        assert ids(client, "amount:1000") == [mid.id]
        assert ids(client, "amount=1000") == [mid.id]
        assert ids(client, "amount>='1000'") == [big.id, mid.id]
        assert ids(client, 'amount>"999" AND amount<"3000"') == [mid.id]
        assert ids(client, "-amount>500") == [small.id]

    def test_created_comparisons_in_unix_seconds(
        self, client: stripe.StripeClient, controls: httpx.Client
    ) -> None:
        first = make_pi(client)
        advance(controls, 100)
        second = make_pi(client)
        advance(controls, 100)
        third = make_pi(client)
        assert first.created + 100 <= second.created
        assert second.created + 100 <= third.created

        assert ids(client, f"created>{first.created}") == [third.id, second.id]
        assert ids(client, f"created>={second.created}") == [third.id, second.id]
        assert ids(client, f"created<{second.created}") == [first.id]
        assert ids(client, f"created<={second.created}") == [second.id, first.id]
        assert ids(client, f"created:{third.created}") == [third.id]
        between = f"created>{first.created} AND created<{third.created}"
        assert ids(client, between) == [second.id]

    def test_customer_null_and_not_null(self, client: stripe.StripeClient) -> None:
        customer = client.v1.customers.create(params={"email": "amy@example.com"})
        with_customer = make_pi(client, customer=customer.id)
        without = make_pi(client)

        assert ids(client, "customer:null") == [without.id]
        assert ids(client, "customer:NULL") == [without.id]
        assert ids(client, "-customer:null") == [with_customer.id]
        assert ids(client, f"customer:'{customer.id}'") == [with_customer.id]
        assert ids(client, f"customer:'{customer.id.upper()}'") == [with_customer.id]

    def test_metadata_values_and_presence(self, client: stripe.StripeClient) -> None:
        tagged = make_pi(client, metadata={"order_id": "A-1", "gift": "yes"})
        plain = make_pi(client, metadata={"order_id": "B-2"})
        quoted = make_pi(client, metadata={"note": 'it\'s "fine"'})

        assert ids(client, "metadata['order_id']:'a-1'") == [tagged.id]
        assert ids(client, 'metadata["order_id"]:"B-2"') == [plain.id]
        assert ids(client, "metadata['gift']:null") == [quoted.id, plain.id]
        assert ids(client, "-metadata['gift']:null") == [tagged.id]
        assert ids(client, "-metadata['order_id']:'A-1'") == [quoted.id, plain.id]
        assert ids(client, "metadata['note']:'it\\'s \"fine\"'") == [quoted.id]
        assert ids(client, 'metadata["note"]:"it\'s \\"fine\\""') == [quoted.id]

    def test_a_state_change_is_seen_by_the_next_search(self, client: stripe.StripeClient) -> None:
        pi = make_pi(client, metadata={"order_id": "7"})
        assert ids(client, "status:'canceled'") == []

        client.v1.payment_intents.cancel(pi.id)

        assert ids(client, "status:'canceled' AND metadata['order_id']:'7'") == [pi.id]
        assert ids(client, "status:'requires_payment_method'") == []


class TestSearchPages:
    def test_pages_follow_next_page_newest_first(self, client: stripe.StripeClient) -> None:
        made = [make_pi(client, 100 + i).id for i in range(5)]
        make_pi(client, 500, currency="eur")
        newest_first = list(reversed(made))

        first = client.v1.payment_intents.search(params={"query": "currency:'usd'", "limit": 2})
        assert [pi.id for pi in first.data] == newest_first[:2]
        assert first.has_more is True
        assert isinstance(first.next_page, str)

        second = client.v1.payment_intents.search(
            params={"query": "currency:'usd'", "limit": 2, "page": first.next_page}
        )
        assert [pi.id for pi in second.data] == newest_first[2:4]
        assert second.has_more is True

        third = client.v1.payment_intents.search(
            params={"query": "currency:'usd'", "limit": 2, "page": second.next_page}
        )
        assert [pi.id for pi in third.data] == newest_first[4:]
        assert third.has_more is False
        assert third.next_page is None

    def test_auto_paging_walks_every_match(self, client: stripe.StripeClient) -> None:
        made = [make_pi(client, 100 + i).id for i in range(5)]

        result = client.v1.payment_intents.search(params={"query": "amount>0", "limit": 2})
        walked = [pi.id for pi in result.auto_paging_iter()]

        assert walked == list(reversed(made))

    def test_default_limit_is_ten(self, client: stripe.StripeClient) -> None:
        made = [make_pi(client, 100 + i).id for i in range(11)]

        result = client.v1.payment_intents.search(params={"query": "amount>0"})

        assert [pi.id for pi in result.data] == list(reversed(made))[:10]
        assert result.has_more is True

    def test_exact_fit_has_no_more(self, client: stripe.StripeClient) -> None:
        made = [make_pi(client, 100 + i).id for i in range(2)]

        result = client.v1.payment_intents.search(params={"query": "amount>0", "limit": 2})

        assert [pi.id for pi in result.data] == list(reversed(made))
        assert result.has_more is False
        assert result.next_page is None

    def test_total_count_only_when_expanded(self, client: stripe.StripeClient) -> None:
        for i in range(3):
            make_pi(client, 100 + i)
        make_pi(client, 100, currency="eur")

        plain = client.v1.payment_intents.search(params={"query": "currency:'usd'", "limit": 1})
        counted = client.v1.payment_intents.search(
            params={"query": "currency:'usd'", "limit": 1, "expand": ["total_count"]}
        )

        assert "total_count" not in plain
        assert counted["total_count"] == 3
        assert len(counted.data) == 1
        later = client.v1.payment_intents.search(
            params={
                "query": "currency:'usd'",
                "limit": 5,
                "page": counted.next_page,
                "expand": ["total_count"],
            }
        )
        assert later["total_count"] == 3
        assert len(later.data) == 2
        assert later.has_more is False

    def test_expand_reaches_into_results(self, client: stripe.StripeClient) -> None:
        customer = client.v1.customers.create(params={"email": "amy@example.com"})
        make_pi(client, customer=customer.id)

        result = client.v1.payment_intents.search(
            params={"query": "-customer:null", "expand": ["data.customer"]}
        )

        found = result.data[0].customer
        assert isinstance(found, stripe.Customer)
        assert found.id == customer.id

    def test_no_match_is_an_empty_page(self, client: stripe.StripeClient) -> None:
        make_pi(client)

        result = client.v1.payment_intents.search(params={"query": "status:'canceled'"})

        assert result.data == []
        assert result.has_more is False
        assert result.next_page is None

    @pytest.mark.parametrize("limit", [0, 101])
    def test_limit_out_of_range_is_refused(self, client: stripe.StripeClient, limit: int) -> None:
        with pytest.raises(stripe.InvalidRequestError) as caught:
            client.v1.payment_intents.search(params={"query": "amount>0", "limit": limit})

        assert caught.value.http_status == 400
        assert caught.value.error is not None
        assert caught.value.error.type == "invalid_request_error"
        assert caught.value.param == "limit"

    def test_a_page_from_another_query_is_refused(self, client: stripe.StripeClient) -> None:
        for i in range(3):
            make_pi(client, 100 + i)
        first = client.v1.payment_intents.search(params={"query": "amount>0", "limit": 1})
        assert first.next_page is not None

        for page in (first.next_page, "not-a-page"):
            with pytest.raises(stripe.InvalidRequestError) as caught:
                client.v1.payment_intents.search(
                    params={"query": "amount>1", "limit": 1, "page": page}
                )
            assert caught.value.http_status == 400
            assert caught.value.param == "page"


HINT = 'Try using the format `metadata["key"]:"value"`'


class TestSearchErrors:
    @pytest.mark.parametrize(
        ("query", "where"),
        [
            ("", "(at position 0)"),
            ("   ", "(at position 0)"),
            (
                "status:'succeeded",
                "Unterminated string: the opening ' is never closed (at position 7: `'succeeded`)",
            ),
            ('status:"succeeded', '(at position 7: `"succeeded`)'),
            (
                "status:",
                "Expected a value after `:`, found the end of the query (at position 6: `:`)",
            ),
            ("amount> 5", "Expected a value after `>` (at position 6: `>`)"),
            ("status 'succeeded'", "Expected an operator"),
            (
                "status:'a' AND",
                "Expected a clause after `AND`, found the end of the query (at position 11: `AND`)",
            ),
            ("status:'a' OR", "(at position 11: `OR`)"),
            ("AND status:'a'", "Expected a clause, found `AND` (at position 0: `AND`)"),
            ("status:'a' AND amount>1 OR currency:'usd'", "AND and OR cannot be combined "),
            ("status:'a' AND amount>1 OR currency:'usd'", "(at position 24: `OR`)"),
            ("status:'a' amount>1 OR currency:'usd'", "(at position 20: `OR`)"),
            ("status:'a' OR amount>1 currency:'usd'", "(at position 23: `currency:'usd'`)"),
            ("(status:'a' OR amount>1)", "Parentheses are not supported (at position 0: `(`)"),
            ("status:'a' AND (amount>1)", "Parentheses are not supported (at position 15: `(`)"),
            ("status>'a'", "The `>` operator is not supported on the token field `status`"),
            ("currency~'usd'", "(at position 8: `~`)"),
            ("amount~'100'", "The `~` operator is not supported on the numeric field `amount`"),
            ("status:succeeded", "String values must be in quotes (at position 7: `succeeded`)"),
            (
                "amount>'lots'",
                "The numeric field `amount` needs a number (at position 7: `'lots'`)",
            ),
            ("amount>null", "`null` can only be used with `:`, not `>` (at position 7: `null`)"),
            ("metadata:'x'", "metadata needs a key, as in metadata['key'] (at position 0"),
            (
                "metadata[order_id]:'x'",
                "Expected a quoted metadata key after `metadata[` (at position 9",
            ),
            ("metadata['order_id':'x'", "Expected `]` after the metadata key (at position 19"),
            (
                "status:'a'amount>1",
                "Expected a space, AND or OR after the clause (at position 10: `amount>1`)",
            ),
            ("-", "Expected a field after `-` (at position 0: `-`)"),
            (
                " AND ".join(["amount>1"] * 11),
                "at most 10 clauses; clause 11 starts at position 130",
            ),
        ],
    )
    def test_malformed_query_says_where(
        self, client: stripe.StripeClient, query: str, where: str
    ) -> None:
        with pytest.raises(stripe.InvalidRequestError) as caught:
            client.v1.payment_intents.search(params={"query": query})

        error = caught.value
        assert error.http_status == 400
        assert error.param == "query"
        assert error.error is not None
        assert error.error.type == "invalid_request_error"
        assert error.user_message is not None
        assert error.user_message.startswith("We were unable to parse your search query.")
        assert where in error.user_message
        assert "position" in error.user_message

    def test_unknown_field_uses_stripes_wording(self, client: stripe.StripeClient) -> None:
        with pytest.raises(stripe.InvalidRequestError) as caught:
            client.v1.payment_intents.search(
                params={"query": "status:'succeeded' AND description:'x'"}
            )

        error = caught.value
        assert error.http_status == 400
        assert error.param == "query"
        assert error.user_message == (
            "Field `description` is an unsupported search field for resource `payment_intents` "
            "(at position 23). See http://stripe.com/docs/search#query-fields-for-payment-intents"
            " for a list of supported fields."
        )

    def test_missing_query_is_refused(self, client: stripe.StripeClient) -> None:
        with pytest.raises(stripe.InvalidRequestError) as caught:
            client.v1.payment_intents.search(params={})  # type: ignore[typeddict-item]

        assert caught.value.http_status == 400
        assert caught.value.param == "query"
        assert caught.value.code == "parameter_missing"
