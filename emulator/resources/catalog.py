"""What prices and products both build: product objects, stored or not.

`/v1/products` creates products with them, and so do prices (`product_data`) and checkout
sessions (`price_data[product_data]`); keeping them here lets `prices` and `products` import
this module instead of each other.
"""

from __future__ import annotations

from typing import Any

from emulator.context import Ctx
from emulator.errors import invalid_request
from emulator.ids import new_id
from emulator.metadata import checked
from emulator.objects import blank
from emulator.store import Obj

PRODUCT_ID_LENGTH = 14
# Product fields a create or an update copies as given.
PLAIN_PRODUCT_FIELDS = (
    "description",
    "shippable",
    "statement_descriptor",
    "tax_code",
    "unit_label",
    "url",
)


def new_product(now: int, params: dict[str, Any], *, product_id: str | None = None) -> Obj:
    """A product object from create parameters (not stored)."""
    product = blank(
        "product",
        id=product_id or new_id("prod", PRODUCT_ID_LENGTH),
        active=params.get("active", True),
        created=now,
        images=list(params.get("images") or []),
        marketing_features=[{"name": f["name"]} for f in params.get("marketing_features") or []],
        metadata=checked(params.get("metadata")),
        name=params["name"],
        package_dimensions=params.get("package_dimensions"),
        type=params.get("type", "service"),
        updated=now,
    )
    for field in PLAIN_PRODUCT_FIELDS:
        if field in params:
            product[field] = params[field]
    # `tax_details` only appears on products that set it.
    product.pop("tax_details", None)
    return product


def create_product(ctx: Ctx, params: dict[str, Any], *, param: str = "id") -> Obj:
    """Store a new product (emitting `product.created`); a taken custom id is refused."""
    product_id = params.get("id")
    if product_id is not None and ctx.coll("product").find(product_id) is not None:
        raise invalid_request(
            f"Product already exists.: '{product_id}'", param=param, code="resource_already_exists"
        )
    product = new_product(ctx.now(), params, product_id=product_id)
    ctx.coll("product").add(product)
    ctx.emit("product.created", product)
    return product
