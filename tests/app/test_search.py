"""Payment intent search: the query compiled to SQL (on an in-memory database), then
`GET /payment-intents/search` through the whole stack."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, select
from sqlalchemy.orm import Session

from app.errors import InvalidRequest
from app.models import Base, Order, PaymentIntent
from app.payment_intents import search
from tests.fixtures.service import Stack

RETURN_URL = "https://example.com/order/complete"


# The compiler, on SQLite in memory ---------------------------------------------------------

ROWS = [
    # stripe id, status, amount, currency, customer, created, metadata
    ("pi_a", "succeeded", 500, "usd", "cus_1", 100, {"order_id": "12345", "gift": "yes"}),
    ("pi_b", "succeeded", 1000, "eur", None, 200, {"order_id": "777"}),
    ("pi_c", "canceled", 1500, "usd", "cus_2", 300, {"order_id": "12345"}),
    ("pi_d", "requires_payment_method", 2000, "usd", "cus_1", 400, {"note": 'it\'s "fine"'}),
    ("pi_e", "requires_capture", 2500, "jpy", "", 500, {"order_id": ""}),
]


@pytest.fixture(scope="module")
def engine() -> Iterator[Engine]:
    engine = create_engine("sqlite://")
    Base.metadata.create_all(engine)
    with Session(engine) as session:
        for stripe_id, status, amount, currency, customer, created, metadata in ROWS:
            order = Order(id=f"ord_{stripe_id}", amount=amount, currency=currency)
            session.add(order)
            session.flush()
            session.add(
                PaymentIntent(
                    stripe_id=stripe_id,
                    order_id=order.id,
                    status=status,
                    amount=amount,
                    currency=currency,
                    customer=customer,
                    created=created,
                    metadata_=metadata,
                    data={},
                )
            )
        session.commit()
    yield engine
    engine.dispose()


def found(engine: Engine, query: str) -> list[str]:
    with Session(engine) as session:
        rows = session.scalars(
            select(PaymentIntent.stripe_id)
            .where(search.where(query))
            .order_by(PaymentIntent.stripe_id)
        )
        return list(rows)


class TestCompile:
    @pytest.mark.parametrize(
        ("query", "expected"),
        [
            ("status:'succeeded' AND metadata['order_id']:'12345'", ["pi_a"]),
            ("status:'SUCCEEDED'", ["pi_a", "pi_b"]),
            ("status:'succeed'", []),
            ("currency:'usd'", ["pi_a", "pi_c", "pi_d"]),
            ("customer:'cus_1'", ["pi_a", "pi_d"]),
            ("metadata['order_id']:'12345'", ["pi_a", "pi_c"]),
            ("metadata['order_id']:12345", ["pi_a", "pi_c"]),
            ('metadata["note"]:\'it\\\'s "fine"\'', ["pi_d"]),
            ("amount:1000", ["pi_b"]),
            ("amount=1000", ["pi_b"]),
            ("amount>1000", ["pi_c", "pi_d", "pi_e"]),
            ("amount>=1000", ["pi_b", "pi_c", "pi_d", "pi_e"]),
            ("amount<1000", ["pi_a"]),
            ("amount<=1000", ["pi_a", "pi_b"]),
            ("amount>'999.5' AND amount<1500.5", ["pi_b", "pi_c"]),
            ("created>200", ["pi_c", "pi_d", "pi_e"]),
            ("created>=200 AND created<400", ["pi_b", "pi_c"]),
            ("created:100", ["pi_a"]),
            ("-status:'succeeded'", ["pi_c", "pi_d", "pi_e"]),
            ("-customer:'cus_1'", ["pi_b", "pi_c", "pi_e"]),
            ("-metadata['order_id']:'12345'", ["pi_b", "pi_d", "pi_e"]),
            ("-amount>1000", ["pi_a", "pi_b"]),
            ("status:'canceled' OR currency:'jpy'", ["pi_c", "pi_e"]),
            ("status:'canceled' or -currency:'usd'", ["pi_b", "pi_c", "pi_e"]),
            ("customer:null", ["pi_b", "pi_e"]),
            ("-customer:null", ["pi_a", "pi_c", "pi_d"]),
            ("metadata['gift']:null", ["pi_b", "pi_c", "pi_d", "pi_e"]),
            ("metadata['order_id']:null", ["pi_d", "pi_e"]),
            ("-metadata['gift']:null", ["pi_a"]),
            ("amount:null", []),
        ],
    )
    def test_matches_like_stripe(self, engine: Engine, query: str, expected: list[str]) -> None:
        assert found(engine, query) == expected

    @pytest.mark.parametrize(
        ("query", "position"),
        [
            ("status:'succeeded", 7),
            ("status:'a' AND amount>1 OR currency:'usd'", 24),
            ("status>'a'", 6),
            ("amount>'lots'", 7),
            ("description:'x'", 0),
            ("status:'a' AND description:'x'", 15),
        ],
    )
    def test_a_malformed_query_says_where(self, query: str, position: int) -> None:
        with pytest.raises(InvalidRequest) as caught:
            search.where(query)

        error = caught.value.body()["error"]
        assert (error["code"], error["param"], error["position"]) == (
            "parameter_invalid",
            "query",
            position,
        )
        assert f"position {position}" in error["message"]

    def test_page_tokens_belong_to_their_query(self) -> None:
        token = search.page_token("status:'succeeded'", 123, 7)
        assert search.page_position("status:'succeeded'", token) == (123, 7)
        with pytest.raises(InvalidRequest):
            search.page_position("status:'canceled'", token)
        with pytest.raises(InvalidRequest):
            search.page_position("status:'succeeded'", "garbage!")


# The endpoint, through the whole stack ---------------------------------------------------


def make(stack: Stack, batch: str, amount: int, **params: Any) -> dict[str, Any]:
    body = {"amount": amount, "currency": "usd", "metadata": {"batch": batch}, **params}
    response = stack.api.post("/payment-intents", json=body)
    assert response.status_code == 200, response.text
    return dict(response.json())


def ids(stack: Stack, query: str, **params: Any) -> list[str]:
    response = stack.api.get("/payment-intents/search", params={"query": query, **params})
    assert response.status_code == 200, response.text
    assert response.json()["object"] == "search_result"
    return [pi["id"] for pi in response.json()["data"]]


class TestSearchEndpoint:
    def test_the_seed_query_sees_a_write_at_once(self, stack: Stack) -> None:
        shop_order = uuid.uuid4().hex[:10]
        intent = make(stack, "seed", 2000, metadata={"order_id": shop_order})
        query = f"status:'succeeded' AND metadata['order_id']:'{shop_order}'"
        assert ids(stack, query) == []

        confirmed = stack.api.post(
            f"/payment-intents/{intent['id']}/confirm",
            json={"payment_method": "pm_card_visa", "return_url": RETURN_URL},
        )
        assert confirmed.status_code == 200

        response = stack.api.get("/payment-intents/search", params={"query": query})
        [found_intent] = response.json()["data"]
        assert found_intent["id"] == intent["id"]
        assert found_intent["order_id"] == intent["order_id"]
        assert found_intent["status"] == "succeeded"
        assert "client_secret" not in found_intent
        assert ids(stack, f"metadata['service_order_id']:'{intent['order_id']}'") == [intent["id"]]

    def test_operators_negation_or_and_null(self, stack: Stack) -> None:
        batch = uuid.uuid4().hex[:10]
        other = uuid.uuid4().hex[:10]
        small = make(stack, batch, 500)
        mid = make(stack, batch, 1000, capture_method="manual")
        big = make(stack, batch, 5000, description="big")
        elsewhere = make(stack, other, 700)
        stack.api.post(f"/payment-intents/{small['id']}/cancel", json={})
        stack.api.post(
            f"/payment-intents/{mid['id']}/confirm",
            json={"payment_method": "pm_card_visa", "return_url": RETURN_URL},
        )
        mine = f"metadata['batch']:'{batch}'"

        assert ids(stack, mine) == [big["id"], mid["id"], small["id"]]
        assert ids(stack, f"{mine} AND amount>500") == [big["id"], mid["id"]]
        assert ids(stack, f"{mine} AND amount>=1000") == [big["id"], mid["id"]]
        assert ids(stack, f"{mine} AND amount<1000") == [small["id"]]
        assert ids(stack, f"{mine} AND amount<=1000") == [mid["id"], small["id"]]
        assert ids(stack, f"{mine} amount=1000") == [mid["id"]]
        assert ids(stack, f"{mine} AND amount:5000") == [big["id"]]
        assert ids(stack, f"{mine} AND status:'canceled'") == [small["id"]]
        assert ids(stack, f"{mine} AND status:'requires_capture'") == [mid["id"]]
        assert ids(stack, f"{mine} AND -status:'canceled'") == [big["id"], mid["id"]]
        assert ids(stack, f"{mine} AND currency:'USD'") == [big["id"], mid["id"], small["id"]]
        assert ids(stack, f"{mine} AND customer:null") == [big["id"], mid["id"], small["id"]]
        assert ids(stack, f"{mine} AND metadata['gift']:null") == [
            big["id"],
            mid["id"],
            small["id"],
        ]
        assert ids(stack, f"{mine} AND created>={small['created']}") == [
            big["id"],
            mid["id"],
            small["id"],
        ]
        assert ids(stack, f"{mine} AND created<{small['created']}") == []
        assert ids(stack, f"{mine} OR metadata['batch']:'{other}'") == [
            elsewhere["id"],
            big["id"],
            mid["id"],
            small["id"],
        ]

    def test_pages(self, stack: Stack) -> None:
        batch = uuid.uuid4().hex[:10]
        made = [make(stack, batch, 1000 + i)["id"] for i in range(5)]
        query = f"metadata['batch']:'{batch}'"

        walked: list[str] = []
        page: str | None = None
        while True:
            params: dict[str, Any] = {"query": query, "limit": 2}
            if page:
                params["page"] = page
            result = stack.api.get("/payment-intents/search", params=params).json()
            walked += [pi["id"] for pi in result["data"]]
            page = result["next_page"]
            assert result["has_more"] is (page is not None)
            if page is None:
                break

        assert walked == list(reversed(made))

    @pytest.mark.parametrize(
        ("query", "where"),
        [
            ("status:'succeeded", "(at position 7"),
            ("status:'a' AND amount>1 OR currency:'usd'", "(at position 24: `OR`)"),
            ("status:succeeded", "String values must be in quotes (at position 7"),
            ("amount>'lots'", "(at position 7"),
            ("", "(at position 0)"),
            ("description:'x'", "Field `description` cannot be searched (at position 0)"),
        ],
    )
    def test_a_malformed_query_is_a_400_that_says_where(
        self, stack: Stack, query: str, where: str
    ) -> None:
        response = stack.api.get("/payment-intents/search", params={"query": query})

        assert response.status_code == 400
        error = response.json()["error"]
        assert error["type"] == "invalid_request_error"
        assert (error["code"], error["param"]) == ("parameter_invalid", "query")
        assert where in error["message"]
        assert isinstance(error["position"], int)

    def test_query_is_required_and_page_must_match(self, stack: Stack) -> None:
        missing = stack.api.get("/payment-intents/search")
        assert missing.status_code == 400
        assert missing.json()["error"]["param"] == "query"
        assert missing.json()["error"]["code"] == "parameter_missing"
        bad_page = stack.api.get(
            "/payment-intents/search", params={"query": "status:'succeeded'", "page": "nope"}
        )
        assert bad_page.status_code == 400
        assert bad_page.json()["error"]["param"] == "page"
        assert (
            stack.public.get("/payment-intents/search", params={"query": "x:'y'"}).status_code
            == 401
        )
