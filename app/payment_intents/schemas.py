"""Request and response bodies for payment intents, in Stripe's own parameter names."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from app.money import Amount, Currency, Metadata, StatementDescriptorSuffix


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AutomaticPaymentMethods(_Body):
    enabled: bool
    allow_redirects: Literal["always", "never"] | None = None


class Address(_Body):
    line1: str | None = None
    line2: str | None = None
    city: str | None = None
    state: str | None = None
    postal_code: str | None = None
    country: str | None = None


class Shipping(_Body):
    name: str
    address: Address
    phone: str | None = None
    carrier: str | None = None
    tracking_number: str | None = None


class PaymentIntentCreate(_Body):
    """Stripe's `PaymentIntent.create` parameters, minus the ones the service owns."""

    amount: Amount
    currency: Currency
    customer: str | None = Field(default=None, examples=["cus_123"])
    automatic_payment_methods: AutomaticPaymentMethods | None = None
    description: str | None = Field(default=None, max_length=1000)
    metadata: Metadata | None = None
    receipt_email: str | None = Field(default=None, max_length=512)
    statement_descriptor: str | None = Field(
        default=None,
        description="Refused: Stripe no longer accepts it for card payments. Use "
        "`statement_descriptor_suffix`.",
    )
    statement_descriptor_suffix: StatementDescriptorSuffix | None = None
    capture_method: Literal["automatic", "automatic_async", "manual"] | None = None
    confirm: bool | None = None
    payment_method: str | None = Field(default=None, examples=["pm_card_visa"])
    return_url: str | None = Field(default=None, max_length=2048)
    setup_future_usage: Literal["off_session", "on_session"] | None = None
    shipping: Shipping | None = None

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "amount": 2000,
                    "currency": "usd",
                    "customer": "cus_123",
                    "automatic_payment_methods": {"enabled": True},
                    "description": "Software subscription",
                    "metadata": {"order_id": "order_12345", "product": "pro_subscription"},
                    "receipt_email": "customer@example.com",
                    "statement_descriptor_suffix": "PRO SUB",
                }
            ]
        },
    )


class PaymentIntentConfirm(_Body):
    payment_method: str | None = Field(default=None, examples=["pm_card_visa"])
    return_url: str | None = Field(
        default=None, max_length=2048, examples=["https://example.com/order/complete"]
    )

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "payment_method": "pm_card_visa",
                    "return_url": "https://example.com/order/complete",
                }
            ]
        },
    )


class PaymentIntentCapture(_Body):
    amount_to_capture: Amount | None = Field(
        default=None,
        description="At most the intent's amount; omitted captures all of it.",
        examples=[4500],
    )

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"amount_to_capture": 4500}]}
    )


class PaymentIntentCancel(_Body):
    cancellation_reason: (
        Literal["duplicate", "fraudulent", "requested_by_customer", "abandoned"] | None
    ) = None

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"cancellation_reason": "requested_by_customer"}]},
    )


class PaymentIntentRead(BaseModel):
    """Stripe's PaymentIntent object, as Stripe returns it, plus the service's `order_id`.
    `client_secret` is only in the responses that hand it to a browser (the create calls)."""

    model_config = ConfigDict(extra="allow")

    id: str = Field(examples=["pi_3Nq8…"])
    object: Literal["payment_intent"] = "payment_intent"
    amount: int
    currency: str
    status: str
    customer: str | None = None
    metadata: dict[str, str] = Field(default_factory=dict)
    order_id: str = Field(description="The service's order for this payment.")

    @classmethod
    def of(
        cls, intent: dict[str, Any], order_id: str, *, secret: bool = False
    ) -> PaymentIntentRead:
        data = {k: v for k, v in intent.items() if secret or k != "client_secret"}
        if isinstance(data.get("customer"), dict):
            data["customer"] = data["customer"]["id"]
        return cls.model_validate({**data, "order_id": order_id})


class PaymentIntentList(BaseModel):
    object: Literal["list"] = "list"
    data: list[PaymentIntentRead]
    has_more: bool
    url: str = "/payment-intents"


class PaymentIntentSearchResult(BaseModel):
    object: Literal["search_result"] = "search_result"
    data: list[PaymentIntentRead]
    has_more: bool
    next_page: str | None
    url: str = "/payment-intents/search"
