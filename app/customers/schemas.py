"""Request and response bodies for customers, in Stripe's own parameter names."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from app.money import Metadata

# Stripe's own test for an email address (something@domain.tld), or "" to clear it.
EMAIL_PATTERN = r"^$|^[^@\s]+@[^@\s.]+(\.[^@\s.]+)*\.[A-Za-z]{2,}$"


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Address(_Body):
    line1: str | None = Field(default=None, max_length=5000)
    line2: str | None = Field(default=None, max_length=5000)
    city: str | None = Field(default=None, max_length=5000)
    state: str | None = Field(default=None, max_length=5000)
    postal_code: str | None = Field(default=None, max_length=5000)
    country: str | None = Field(default=None, max_length=5000, examples=["US"])


class Shipping(_Body):
    name: str = Field(max_length=5000)
    address: Address
    phone: str | None = Field(default=None, max_length=5000)


class InvoiceSettings(_Body):
    default_payment_method: str | None = Field(
        default=None,
        max_length=255,
        description='A payment method already attached to the customer; `""` clears it.',
        examples=["pm_123"],
    )


class _CustomerFields(_Body):
    email: str | None = Field(
        default=None, max_length=512, pattern=EMAIL_PATTERN, examples=["user@example.com"]
    )
    name: str | None = Field(default=None, max_length=256, examples=["Jane Doe"])
    phone: str | None = Field(default=None, max_length=20)
    description: str | None = Field(default=None, max_length=350)
    metadata: Metadata | None = None
    address: Address | None = None
    shipping: Shipping | None = None
    preferred_locales: list[str] | None = Field(default=None, max_length=10)
    invoice_settings: InvoiceSettings | None = None


class CustomerCreate(_CustomerFields):
    """Stripe's `Customer.create` parameters."""

    payment_method: str | None = Field(
        default=None,
        max_length=255,
        description="A payment method (or test token) to attach at creation.",
    )
    test_clock: str | None = Field(
        default=None,
        min_length=1,
        max_length=255,
        description="A test clock (`clock_…`) to run the customer's subscriptions on simulated "
        "time. Test mode and the sandbox only: refused with a live key.",
        examples=["clock_1MsKZ6LkdIwHu7ix"],
    )

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "email": "user@example.com",
                    "name": "Jane Doe",
                    "metadata": {"user_id": "usr_123"},
                }
            ]
        },
    )


class CustomerUpdate(_CustomerFields):
    """Stripe's `Customer.update` parameters: only the fields sent change; metadata merges
    key by key (a key set to `""` is removed)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"invoice_settings": {"default_payment_method": "pm_123"}}]
        },
    )


class PaymentMethodAttach(_Body):
    payment_method: str = Field(
        min_length=1,
        max_length=255,
        description="A PaymentMethod id (`pm_…`) or a test token (`pm_card_visa`).",
        examples=["pm_card_visa"],
    )

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"payment_method": "pm_card_visa"}]}
    )


class CustomerRead(BaseModel):
    """Stripe's Customer object, as Stripe returns it."""

    model_config = ConfigDict(extra="allow")

    id: str = Field(examples=["cus_NffrFeUfNV2Hib"])
    object: Literal["customer"] = "customer"
    email: str | None = None
    name: str | None = None
    metadata: dict[str, str] = Field(default_factory=dict)
    invoice_settings: dict[str, Any] | None = None


class CustomerList(BaseModel):
    object: Literal["list"] = "list"
    data: list[CustomerRead]
    has_more: bool
    url: str = "/customers"


class PaymentMethodRead(BaseModel):
    """Stripe's PaymentMethod object, as Stripe returns it."""

    model_config = ConfigDict(extra="allow")

    id: str = Field(examples=["pm_1NtQzS2eZvKYlo2C"])
    object: Literal["payment_method"] = "payment_method"
    type: str = Field(examples=["card"])
    customer: str | None = None


class PaymentMethodList(BaseModel):
    object: Literal["list"] = "list"
    data: list[PaymentMethodRead]
    has_more: bool
    url: str


class EntitlementRead(BaseModel):
    product: str = Field(description="The product (`prod_…`) the customer may use.")
    subscription: str = Field(description="The subscription that entitles it (`sub_…`).")
    status: Literal["active", "trialing", "past_due"]
    until: int | None = Field(
        description="The end of the subscription's current period (unix seconds): it renews "
        "then, or ends if it is set to cancel at the period's end."
    )


class EntitlementList(BaseModel):
    object: Literal["list"] = "list"
    customer: str
    as_of: int = Field(
        description="The moment judged (unix seconds): the customer's test clock time if its "
        "subscriptions run on one, else now."
    )
    data: list[EntitlementRead]
