"""The browser's body and answer for `POST /api/create-payment-intent`, and its Stripe.js
settings (`GET /api/config`)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.json_schema import SkipJsonSchema
from pydantic_core import PydanticCustomError

MAX_ITEMS = 100
MAX_QUANTITY = 100


class CartItem(BaseModel):
    model_config = ConfigDict(extra="forbid")

    price: str = Field(
        min_length=1,
        max_length=255,
        description="A Stripe Price id: active, one-time, all items in one currency.",
        examples=["price_123"],
    )
    quantity: int = Field(default=1, strict=True, ge=1, le=MAX_QUANTITY, examples=[2])


class PublicPaymentIntentCreate(BaseModel):
    """Either a cart of Stripe prices or an order the shop's backend created; never an amount."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"items": [{"price": "price_tshirt", "quantity": 2}, {"price": "price_mug"}]},
                {"order_id": "ord_x6Yt0qJk3mZp9sLwQe2R"},
            ]
        },
    )

    items: list[CartItem] | None = Field(default=None, min_length=1, max_length=MAX_ITEMS)
    order_id: str | None = Field(default=None, max_length=32, examples=["ord_x6Yt0qJk3mZp9sLwQe2R"])
    # Not parameters: present only to refuse them with an explanation.
    amount: SkipJsonSchema[Any] = None
    currency: SkipJsonSchema[Any] = None

    @field_validator("amount", "currency")
    @classmethod
    def _computed_by_the_server(cls, _value: Any) -> Any:
        raise PydanticCustomError(
            "computed_by_server",
            "is not accepted from the browser: the amount and currency are computed by the "
            "server from the Stripe prices of `items` (or from the stored order for `order_id`), "
            "so a customer cannot choose what they pay",
        )


class PublicPaymentIntent(BaseModel):
    """What Stripe.js needs to confirm the payment, and what it is for."""

    clientSecret: str = Field(description="Pass to `stripe.confirmPayment`.")
    paymentIntentId: str = Field(examples=["pi_3Nq8ZbHk2yW1xV0u"])
    orderId: str = Field(examples=["ord_x6Yt0qJk3mZp9sLwQe2R"])
    amount: int = Field(examples=[5200])
    currency: str = Field(examples=["usd"])


class PublicConfig(BaseModel):
    """What the browser needs to load and start Stripe.js."""

    publishableKey: str | None = Field(
        description="Pass to `Stripe(publishableKey)`. Null only in test mode against Stripe "
        "itself with `STRIPE_PUBLISHABLE_KEY` unset.",
        examples=["pk_test_emulator"],
    )
    stripeJsUrl: str = Field(
        description="Load Stripe.js from here: Stripe's own (`https://js.stripe.com/v3/`), or in "
        "sandbox the emulator's copy.",
        examples=["http://127.0.0.1:12111/v3"],
    )
