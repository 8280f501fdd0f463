"""Products and prices through the SDK: the demo catalogue, create, retrieve, update, list."""

from __future__ import annotations

import pytest
import stripe

from tests.fixtures.emulator import WebhookReceiver


class TestCatalogue:
    def test_seed_prices(self, client: stripe.StripeClient) -> None:
        one_time = client.v1.prices.retrieve("price_123")
        assert one_time.type == "one_time"
        assert one_time.unit_amount == 1500
        assert one_time.currency == "usd"
        assert one_time.recurring is None
        assert client.v1.products.retrieve(one_time.product).name == "Demo product"  # type: ignore[arg-type]
        monthly = client.v1.prices.retrieve("price_monthly")
        assert monthly.type == "recurring"
        assert monthly.recurring is not None
        assert monthly.recurring.interval == "month"
        assert monthly.recurring.interval_count == 1
        assert monthly.unit_amount == 2900
        premium = client.v1.products.retrieve(monthly.product)  # type: ignore[arg-type]
        assert premium.name == "Premium plan"
        assert premium.default_price == "price_monthly"
        for price_id in ("price_tshirt", "price_mug"):
            assert client.v1.prices.retrieve(price_id).active is True


class TestProducts:
    def test_create_retrieve_update(
        self, client: stripe.StripeClient, webhooks: WebhookReceiver
    ) -> None:
        product = client.v1.products.create(
            params={
                "name": "Poster",
                "description": "A2 print",
                "images": ["https://example.com/poster.png"],
                "metadata": {"sku": "P-1"},
                "default_price_data": {"currency": "eur", "unit_amount": 1800},
            }
        )
        assert product.id.startswith("prod_")
        assert product.active is True
        assert product.images == ["https://example.com/poster.png"]
        assert isinstance(product.default_price, str)
        price = client.v1.prices.retrieve(product.default_price)
        assert price.product == product.id
        assert price.unit_amount == 1800
        assert price.currency == "eur"
        updated = client.v1.products.update(
            product.id, params={"name": "Big poster", "metadata": {"sku": "", "size": "A1"}}
        )
        assert updated.name == "Big poster"
        assert updated.metadata.to_dict() == {"size": "A1"}
        again = client.v1.products.retrieve(product.id)
        assert again.name == "Big poster"
        webhooks.wait_for_event("product.updated", product.id)
        assert webhooks.events("product.created")

    def test_list_filters(self, client: stripe.StripeClient) -> None:
        made = client.v1.products.create(params={"name": "Archived", "active": False})
        inactive = client.v1.products.list(params={"active": False})
        assert [p.id for p in inactive.data] == [made.id]
        active = client.v1.products.list(params={"active": True, "limit": 100})
        assert made.id not in [p.id for p in active.data]
        assert "prod_premium" in [p.id for p in active.data]
        by_id = client.v1.products.list(params={"ids": ["prod_mug", made.id]})
        assert {p.id for p in by_id.data} == {"prod_mug", made.id}

    def test_unknown_product(self, client: stripe.StripeClient) -> None:
        with pytest.raises(stripe.InvalidRequestError) as info:
            client.v1.products.retrieve("prod_missing")
        assert info.value.http_status == 404
        assert info.value.code == "resource_missing"
        assert info.value.param == "id"

    def test_missing_name(self, client: stripe.StripeClient) -> None:
        with pytest.raises(stripe.InvalidRequestError) as info:
            client.v1.products.create(params={})  # type: ignore[typeddict-item]
        assert info.value.http_status == 400
        assert info.value.code == "parameter_missing"
        assert info.value.param == "name"


class TestPrices:
    def test_create_with_product_data_recurring(
        self, client: stripe.StripeClient, webhooks: WebhookReceiver
    ) -> None:
        price = client.v1.prices.create(
            params={
                "currency": "usd",
                "unit_amount": 9900,
                "recurring": {"interval": "year"},
                "product_data": {"name": "Yearly plan"},
                "nickname": "yearly",
                "lookup_key": "yearly",
            }
        )
        assert price.id.startswith("price_")
        assert price.type == "recurring"
        assert price.billing_scheme == "per_unit"
        assert str(price.unit_amount_decimal) == "9900"
        assert price.recurring is not None
        assert price.recurring.interval == "year"
        assert price.recurring.usage_type == "licensed"
        assert price.lookup_key == "yearly"
        product = client.v1.products.retrieve(price.product)  # type: ignore[arg-type]
        assert product.name == "Yearly plan"
        webhooks.wait_for_event("price.created", price.id)

    def test_update(self, client: stripe.StripeClient) -> None:
        updated = client.v1.prices.update(
            "price_mug", params={"active": False, "nickname": "old mug", "metadata": {"a": "1"}}
        )
        assert updated.active is False
        assert updated.nickname == "old mug"
        again = client.v1.prices.retrieve("price_mug")
        assert again.active is False
        assert again.metadata.to_dict() == {"a": "1"}

    def test_list_filters(self, client: stripe.StripeClient) -> None:
        recurring = client.v1.prices.list(params={"type": "recurring"})
        assert [p.id for p in recurring.data] == ["price_monthly"]
        monthly = client.v1.prices.list(params={"recurring": {"interval": "month"}})
        assert [p.id for p in monthly.data] == ["price_monthly"]
        by_product = client.v1.prices.list(params={"product": "prod_tshirt"})
        assert [p.id for p in by_product.data] == ["price_tshirt"]
        assert client.v1.prices.list(params={"currency": "eur"}).data == []
        one_time = client.v1.prices.list(params={"type": "one_time", "limit": 2})
        assert len(one_time.data) == 2
        assert one_time.has_more is True

    def test_lookup_key_taken(self, client: stripe.StripeClient) -> None:
        params: stripe.params.PriceCreateParams = {
            "currency": "usd",
            "unit_amount": 100,
            "product": "prod_mug",
            "lookup_key": "mug",
        }
        first = client.v1.prices.create(params=params)
        with pytest.raises(stripe.InvalidRequestError) as info:
            client.v1.prices.create(params=params)
        assert info.value.http_status == 400
        assert info.value.param == "lookup_key"
        moved = client.v1.prices.create(params={**params, "transfer_lookup_key": True})
        assert moved.lookup_key == "mug"
        assert client.v1.prices.retrieve(first.id).lookup_key is None
        found = client.v1.prices.list(params={"lookup_keys": ["mug"]})
        assert [p.id for p in found.data] == [moved.id]

    def test_errors(self, client: stripe.StripeClient) -> None:
        with pytest.raises(stripe.InvalidRequestError) as info:
            client.v1.prices.create(params={"currency": "usd", "unit_amount": 100})
        assert info.value.http_status == 400
        assert info.value.code == "parameter_missing"
        assert info.value.param == "product"
        with pytest.raises(stripe.InvalidRequestError) as info:
            client.v1.prices.create(
                params={"currency": "usd", "unit_amount": 100, "product": "prod_nope"}
            )
        assert info.value.code == "resource_missing"
        assert info.value.param == "product"
        with pytest.raises(stripe.InvalidRequestError) as info:
            client.v1.prices.create(params={"currency": "usd", "product": "prod_mug"})
        assert info.value.code == "parameter_missing"
        assert info.value.param == "unit_amount"
        with pytest.raises(stripe.InvalidRequestError) as info:
            client.v1.prices.create(
                params={
                    "currency": "usd",
                    "unit_amount": 100,
                    "product": "prod_mug",
                    "recurring": {"interval": "month", "interval_count": 13},
                }
            )
        assert info.value.param == "recurring[interval_count]"
        with pytest.raises(stripe.InvalidRequestError) as info:
            client.v1.prices.retrieve("price_nope")
        assert info.value.http_status == 404
        assert info.value.code == "resource_missing"
