"""Request and response bodies for Checkout Sessions, in Stripe's own parameter names."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from app.money import MAX_AMOUNT, Currency, Metadata, StatementDescriptorSuffix

MAX_LINE_ITEMS = 100
MAX_QUANTITY = 999_999


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ProductData(_Body):
    name: str = Field(min_length=1, max_length=5000, examples=["T-shirt"])
    description: str | None = Field(default=None, max_length=40000)
    images: list[str] | None = Field(default=None, max_length=8)
    metadata: Metadata | None = None
    tax_code: str | None = None


class Recurring(_Body):
    interval: Literal["day", "week", "month", "year"]
    interval_count: int | None = Field(default=None, ge=1, le=365)


class PriceData(_Body):
    currency: Currency
    unit_amount: int = Field(
        strict=True,
        ge=0,
        le=MAX_AMOUNT,
        description="The price of one unit in the currency's minor unit.",
        examples=[2000],
    )
    product: str | None = Field(default=None, description="An existing product (`prod_…`).")
    product_data: ProductData | None = None
    recurring: Recurring | None = None
    tax_behavior: Literal["exclusive", "inclusive", "unspecified"] | None = None

    @model_validator(mode="after")
    def _one_product(self) -> PriceData:
        if (self.product is None) == (self.product_data is None):
            raise ValueError("give exactly one of `product` and `product_data`")
        return self


class LineItem(_Body):
    price: str | None = Field(default=None, max_length=255, examples=["price_123"])
    price_data: PriceData | None = None
    quantity: int = Field(strict=True, ge=1, le=MAX_QUANTITY, examples=[1])

    @model_validator(mode="after")
    def _one_price(self) -> LineItem:
        if (self.price is None) == (self.price_data is None):
            raise ValueError("give exactly one of `price` and `price_data`")
        return self


class PhoneNumberCollection(_Body):
    enabled: bool


class SubscriptionData(_Body):
    trial_period_days: int | None = Field(default=None, strict=True, ge=1, le=730)
    description: str | None = Field(default=None, max_length=500)
    metadata: Metadata | None = None


class PaymentIntentData(_Body):
    capture_method: Literal["automatic", "automatic_async", "manual"] | None = None
    description: str | None = Field(default=None, max_length=1000)
    metadata: Metadata | None = None
    receipt_email: str | None = Field(default=None, max_length=512)
    setup_future_usage: Literal["off_session", "on_session"] | None = None
    statement_descriptor_suffix: StatementDescriptorSuffix | None = None


class CheckoutSessionCreate(_Body):
    """Stripe's `checkout.Session.create` parameters, minus the ones the service owns
    (`client_reference_id` is the order id in payment mode)."""

    mode: Literal["payment", "subscription", "setup"]
    line_items: list[LineItem] | None = Field(default=None, min_length=1, max_length=MAX_LINE_ITEMS)
    success_url: str | None = Field(default=None, max_length=5000)
    cancel_url: str | None = Field(default=None, max_length=5000)
    customer: str | None = Field(default=None, max_length=255, examples=["cus_123"])
    customer_email: str | None = Field(default=None, max_length=512)
    client_reference_id: str | None = Field(
        default=None,
        max_length=200,
        description="Subscription and setup modes only: in payment mode it is the order id.",
    )
    allow_promotion_codes: bool | None = None
    billing_address_collection: Literal["auto", "required"] | None = None
    phone_number_collection: PhoneNumberCollection | None = None
    metadata: Metadata | None = None
    currency: Currency | None = Field(
        default=None, description="Required in setup mode; otherwise that of the line items."
    )
    subscription_data: SubscriptionData | None = None
    payment_intent_data: PaymentIntentData | None = None
    expires_at: int | None = Field(
        default=None,
        strict=True,
        description="Unix seconds, 30 minutes to 24 hours from now (default: 24 hours).",
    )
    locale: str | None = Field(default=None, max_length=16)

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "line_items": [
                        {"price": "price_123", "quantity": 1},
                        {
                            "price_data": {
                                "currency": "usd",
                                "unit_amount": 2000,
                                "product_data": {
                                    "name": "T-shirt",
                                    "description": "Comfortable cotton t-shirt",
                                    "images": ["https://example.com/tshirt.png"],
                                },
                            },
                            "quantity": 2,
                        },
                    ],
                    "mode": "payment",
                    "success_url": "https://example.com/success?session_id={CHECKOUT_SESSION_ID}",
                    "cancel_url": "https://example.com/cancel",
                    "customer_email": "customer@example.com",
                    "allow_promotion_codes": True,
                    "billing_address_collection": "required",
                    "phone_number_collection": {"enabled": True},
                    "metadata": {"order_id": "order_12345"},
                },
                {
                    "line_items": [{"price": "price_monthly", "quantity": 1}],
                    "mode": "subscription",
                    "success_url": "https://example.com/success",
                    "cancel_url": "https://example.com/cancel",
                    "customer": "cus_123",
                    "subscription_data": {
                        "trial_period_days": 14,
                        "metadata": {"plan": "premium"},
                    },
                },
                {
                    "mode": "setup",
                    "currency": "usd",
                    "customer": "cus_123",
                    "success_url": "https://example.com/success",
                    "cancel_url": "https://example.com/cancel",
                },
            ]
        },
    )


class CheckoutSessionRead(BaseModel):
    """Stripe's Checkout Session object, as Stripe returns it, plus the service's `order_id`
    (the order a payment-mode session pays; null in subscription and setup modes)."""

    model_config = ConfigDict(extra="allow")

    id: str = Field(examples=["cs_test_a1b2c3"])
    object: Literal["checkout.session"] = "checkout.session"
    mode: str
    status: str | None = None
    url: str | None = None
    amount_total: int | None = None
    currency: str | None = None
    metadata: dict[str, str] | None = None
    order_id: str | None = Field(description="The service's order, or null without one.")
    subscription: str | dict[str, Any] | None = Field(
        default=None,
        description="Subscription mode: the subscription the completed session made (`sub_…`; "
        "an object when expanded), else null.",
    )

    @classmethod
    def of(
        cls, checkout: dict[str, Any], order_id: str | None, subscription: str | None = None
    ) -> CheckoutSessionRead:
        """`subscription`: the one the service's mirror links to the session, shown when
        Stripe's answer has none."""
        linked = checkout.get("subscription") or subscription
        return cls.model_validate({**checkout, "order_id": order_id, "subscription": linked})
