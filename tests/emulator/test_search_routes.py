"""Search for customers, charges, prices and products through the SDK.

The query language itself is covered by `test_search.py` (on payment intents); this file checks
each resource's route and its query fields, as https://docs.stripe.com/search#supported-query-
fields-for-each-resource lists them. The emulator's reset data holds the customer `cus_123`
and the demo catalogue (`prod_demo`/`price_123`, `prod_premium`/`price_monthly`, `prod_tshirt`,
`prod_mug`, `prod_stickers` with their prices).
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import stripe

from tests.emulator.test_payment_intents import RETURN_URL, new_intent
from tests.fixtures.emulator import API_KEY

AUTH = {"Authorization": f"Bearer {API_KEY}"}
CATALOGUE_PRICES = {"price_123", "price_monthly", "price_tshirt", "price_mug", "price_stickers"}


def found(result: Any, url: str) -> list[str]:
    """The ids of a `search_result` page, after checking it is one for `url`."""
    assert result["object"] == "search_result"
    assert result["url"] == url
    assert result["has_more"] is False
    return [obj.id for obj in result.data]


def customer_ids(client: stripe.StripeClient, query: str) -> list[str]:
    result = client.v1.customers.search(params={"query": query})
    return found(result, "/v1/customers/search")


def charge_ids(client: stripe.StripeClient, query: str) -> list[str]:
    return found(client.v1.charges.search(params={"query": query}), "/v1/charges/search")


def price_ids(client: stripe.StripeClient, query: str) -> list[str]:
    return found(client.v1.prices.search(params={"query": query}), "/v1/prices/search")


def product_ids(client: stripe.StripeClient, query: str) -> list[str]:
    return found(client.v1.products.search(params={"query": query}), "/v1/products/search")


def charge_of(client: stripe.StripeClient, card: str = "pm_card_visa", **params: Any) -> str:
    """The id of the charge a payment intent's confirmation with `card` made."""
    pi = new_intent(client, confirm=True, payment_method=card, return_url=RETURN_URL, **params)
    assert isinstance(pi.latest_charge, str)
    return pi.latest_charge


def declined_charge(client: stripe.StripeClient) -> str:
    pi = new_intent(client)
    with pytest.raises(stripe.CardError):
        client.v1.payment_intents.confirm(
            pi.id, params={"payment_method": "pm_card_chargeDeclined", "return_url": RETURN_URL}
        )
    latest = client.v1.payment_intents.retrieve(pi.id).latest_charge
    assert isinstance(latest, str)
    return latest


class TestCustomerSearch:
    def test_the_route_is_not_a_retrieve_of_a_customer_named_search(
        self, controls: httpx.Client
    ) -> None:
        response = controls.get(
            "/v1/customers/search", params={"query": 'name:"Jane Doe"'}, headers=AUTH
        )
        assert response.status_code == 200
        body = response.json()
        assert body["object"] == "search_result"
        assert [c["id"] for c in body["data"]] == ["cus_123"]
        missing = controls.get("/v1/customers/search", headers=AUTH)
        assert missing.status_code == 400
        assert missing.json()["error"]["message"] == "Missing required param: query."
        assert "No such customer" not in missing.text

    def test_email_matches_exactly_and_by_substring(self, client: stripe.StripeClient) -> None:
        amy = client.v1.customers.create(params={"email": "amy@rocketrides.io", "name": "Amy"})
        client.v1.customers.create(params={"email": "bob@rocketrides.io", "name": "Bob"})

        assert customer_ids(client, "email:'amy@rocketrides.io'") == [amy.id]
        assert customer_ids(client, 'email~"amy"') == [amy.id]
        result = client.v1.customers.search(params={"query": "email:'amy@rocketrides.io'"})
        assert result.data[0].to_dict() == client.v1.customers.retrieve(amy.id).to_dict()

    def test_name_phone_and_metadata(self, client: stripe.StripeClient) -> None:
        vip = client.v1.customers.create(
            params={"name": "Amy Tan", "phone": "+15550001111", "metadata": {"tier": "gold"}}
        )
        other = client.v1.customers.create(params={"name": "Amos", "metadata": {"tier": "tin"}})

        assert customer_ids(client, "metadata['tier']:'gold'") == [vip.id]
        assert customer_ids(client, 'phone:"+15550001111"') == [vip.id]
        assert customer_ids(client, 'name:"amy tan"') == [vip.id]
        assert customer_ids(client, "name~'amo'") == [other.id]
        assert customer_ids(client, "-metadata['tier']:null") == [other.id, vip.id]

    def test_none_found_and_deleted_customers_are_not_found(
        self, client: stripe.StripeClient
    ) -> None:
        gone = client.v1.customers.create(params={"email": "gone@example.com"})
        assert customer_ids(client, "email:'gone@example.com'") == [gone.id]
        client.v1.customers.delete(gone.id)

        assert customer_ids(client, "email:'gone@example.com'") == []
        assert customer_ids(client, "email:'nobody@example.com'") == []

    def test_a_field_customers_lack_is_refused_naming_the_resource(
        self, client: stripe.StripeClient
    ) -> None:
        with pytest.raises(stripe.InvalidRequestError) as info:
            client.v1.customers.search(params={"query": "amount>100"})
        assert info.value.http_status == 400
        assert info.value.param == "query"
        assert str(info.value.user_message).startswith(
            "Field `amount` is an unsupported search field for resource `customers`"
        )


class TestChargeSearch:
    def test_exact_status_currency_and_customer(self, client: stripe.StripeClient) -> None:
        paid = charge_of(client, customer="cus_123")
        failed = declined_charge(client)
        euro = charge_of(client, currency="eur")

        assert charge_ids(client, "status:'failed'") == [failed]
        assert charge_ids(client, "currency:'eur'") == [euro]
        assert charge_ids(client, "customer:'cus_123'") == [paid]
        assert charge_ids(client, "status:'succeeded' AND -currency:'eur'") == [paid]
        assert client.v1.charges.retrieve(failed).status == "failed"

    def test_metadata_amount_and_card(self, client: stripe.StripeClient) -> None:
        order = charge_of(client, amount=5000, metadata={"order_id": "6735"})
        visa = charge_of(client)
        mastercard = charge_of(client, "pm_card_mastercard")

        assert charge_ids(client, "metadata['order_id']:'6735'") == [order]
        assert charge_ids(client, "amount>2000") == [order]
        assert charge_ids(client, "payment_method_details.card.brand:'mastercard'") == [mastercard]
        assert charge_ids(client, "payment_method_details.card.last4:4444") == [mastercard]
        assert set(charge_ids(client, "payment_method_details.card.last4:4242")) == {order, visa}

    def test_refunded_means_fully_partially_or_not_refunded(
        self, client: stripe.StripeClient
    ) -> None:
        # Stripe: refunded:"true" is fully refunded, "false" partially refunded, null neither.
        whole = charge_of(client)
        part = charge_of(client)
        untouched = charge_of(client)
        client.v1.refunds.create(params={"charge": whole})
        client.v1.refunds.create(params={"charge": part, "amount": 500})

        assert charge_ids(client, "refunded:'true'") == [whole]
        assert charge_ids(client, "refunded:'false'") == [part]
        assert charge_ids(client, "refunded:null") == [untouched]
        assert client.v1.charges.retrieve(part).refunded is False
        assert client.v1.charges.retrieve(part).amount_refunded == 500

    def test_none_found(self, client: stripe.StripeClient) -> None:
        charge_of(client)

        assert charge_ids(client, "disputed:'true'") == []
        assert charge_ids(client, "currency:'jpy'") == []
        # A documented field the emulator's charges never fill: valid, and matches nothing.
        assert charge_ids(client, "payment_method_details.card_present.last4:4242") == []
        assert charge_ids(client, "metadata['order_id']:'6735'") == []


class TestPriceSearch:
    def test_type_product_and_currency(self, client: stripe.StripeClient) -> None:
        assert price_ids(client, "type:'recurring'") == ["price_monthly"]
        assert price_ids(client, "product:'prod_mug'") == ["price_mug"]
        assert set(price_ids(client, "currency:'usd' AND active:'true'")) == CATALOGUE_PRICES

    def test_lookup_key_and_metadata(self, client: stripe.StripeClient) -> None:
        gold = client.v1.prices.create(
            params={
                "currency": "eur",
                "unit_amount": 1000,
                "product": "prod_premium",
                "lookup_key": "gold_monthly",
                "recurring": {"interval": "month"},
                "metadata": {"order_id": "6735"},
            }
        )

        assert price_ids(client, "lookup_key:'gold_monthly'") == [gold.id]
        assert price_ids(client, "active:'true' AND metadata['order_id']:'6735'") == [gold.id]
        assert price_ids(client, "type:'recurring'") == [gold.id, "price_monthly"]

    def test_archived_prices_and_none_found(self, client: stripe.StripeClient) -> None:
        client.v1.prices.update("price_mug", params={"active": False})

        assert price_ids(client, "active:'false'") == ["price_mug"]
        assert "price_mug" not in price_ids(client, "active:'true'")
        assert price_ids(client, "currency:'jpy'") == []
        assert price_ids(client, "lookup_key:'nothing'") == []

    def test_expand_reaches_the_product(self, client: stripe.StripeClient) -> None:
        result = client.v1.prices.search(
            params={"query": "product:'prod_mug'", "expand": ["data.product"]}
        )
        product = result.data[0].product
        assert isinstance(product, stripe.Product)
        assert product.name == "Coffee mug"


class TestProductSearch:
    def test_name_description_and_url(self, client: stripe.StripeClient) -> None:
        swag = client.v1.products.create(
            params={"name": "Dino swag", "url": "https://example.com/dinosaur_swag"}
        )

        assert product_ids(client, "name:'coffee mug'") == ["prod_mug"]
        assert product_ids(client, "name~'stick'") == ["prod_stickers"]
        assert product_ids(client, "description~'ceramic'") == ["prod_mug"]
        assert product_ids(client, 'url~"/dinosaur_swag"') == [swag.id]
        assert product_ids(client, "url:null AND name:'dino swag'") == []

    def test_metadata_shippable_and_active(self, client: stripe.StripeClient) -> None:
        box = client.v1.products.create(
            params={"name": "Box", "shippable": True, "metadata": {"order_id": "6735"}}
        )
        client.v1.products.update("prod_stickers", params={"active": False})

        assert product_ids(client, "active:'true' AND metadata['order_id']:'6735'") == [box.id]
        assert product_ids(client, "shippable:'true'") == [box.id]
        assert product_ids(client, "active:'false'") == ["prod_stickers"]
        assert "prod_stickers" not in product_ids(client, "-active:'false'")

    def test_none_found(self, client: stripe.StripeClient) -> None:
        assert product_ids(client, "name:'spaceship'") == []
        assert product_ids(client, "metadata['order_id']:'6735'") == []
        with pytest.raises(stripe.InvalidRequestError) as info:
            client.v1.products.search(params={"query": "currency:'usd'"})
        assert str(info.value.user_message).startswith(
            "Field `currency` is an unsupported search field for resource `products`"
        )
