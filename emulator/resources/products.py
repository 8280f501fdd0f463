"""Products (`prod_…`): `/v1/products` create, retrieve, update, list and search.

The product constructors prices share live in `emulator.resources.catalog`.
"""

from __future__ import annotations

from typing import Any

from stripe.params import (
    ProductCreateParams,
    ProductListParams,
    ProductRetrieveParams,
    ProductSearchParams,
    ProductUpdateParams,
)

from emulator import search
from emulator.context import Ctx
from emulator.errors import invalid_request
from emulator.metadata import merged
from emulator.resources.catalog import PLAIN_PRODUCT_FIELDS, create_product
from emulator.resources.prices import checked_price_params, create_price
from emulator.routing import router
from emulator.store import Obj, paginate


@router.route("POST", "/v1/products", ProductCreateParams)
def create(ctx: Ctx, params: dict[str, Any]) -> dict[str, Any]:
    if "default_price_data" in params:
        # Checked before anything is stored, so a refused price leaves no product behind.
        checked_price_params(
            params["default_price_data"], "default_price_data", needs_product=False
        )
    product = create_product(ctx, params)
    if "default_price_data" in params:
        data = {**params["default_price_data"], "product": product["id"]}
        price = create_price(ctx, data, param="default_price_data")
        product["default_price"] = price["id"]
    return product


@router.route("GET", "/v1/products/search", ProductSearchParams)
def search_(ctx: Ctx, params: dict[str, Any]) -> dict[str, Any]:
    return search.search(ctx.coll("product"), params, "/v1/products/search")


@router.route("GET", "/v1/products/{id}", ProductRetrieveParams)
def retrieve(ctx: Ctx, params: dict[str, Any]) -> dict[str, Any]:
    return ctx.coll("product").get(ctx.path["id"])


@router.route("POST", "/v1/products/{id}", ProductUpdateParams)
def update(ctx: Ctx, params: dict[str, Any]) -> dict[str, Any]:
    product = ctx.coll("product").get(ctx.path["id"])
    before = {k: product[k] for k in product}
    if "default_price" in params:
        price = ctx.coll("price").find(params["default_price"])
        if price is None or price["product"] != product["id"]:
            raise invalid_request(
                f"No such price: '{params['default_price']}'",
                param="default_price",
                code="resource_missing",
            )
        product["default_price"] = price["id"]
    for field in ("active", "name", "package_dimensions", *PLAIN_PRODUCT_FIELDS):
        if field in params:
            product[field] = None if params[field] == "" else params[field]
    if "images" in params:
        product["images"] = [] if params["images"] == "" else list(params["images"])
    if "marketing_features" in params:
        features = params["marketing_features"]
        product["marketing_features"] = [{"name": f["name"]} for f in features or []]
    if "metadata" in params:
        product["metadata"] = merged(product["metadata"], params["metadata"])
    previous = {k: v for k, v in before.items() if product[k] != v}
    if previous:
        product["updated"] = ctx.now()
        ctx.emit("product.updated", product, previous)
    return product


@router.route("GET", "/v1/products", ProductListParams)
def list_(ctx: Ctx, params: dict[str, Any]) -> dict[str, Any]:
    ids = set(params["ids"]) if params.get("ids") else None
    checks = [
        (field, params[field])
        for field in ("active", "shippable", "type", "url")
        if field in params
    ]

    def where(product: Obj) -> bool:
        if ids is not None and product["id"] not in ids:
            return False
        return all(product.get(field) == value for field, value in checks)

    return paginate(ctx.coll("product"), params, "/v1/products", where)
