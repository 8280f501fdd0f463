"""Request and response bodies for subscriptions, in Stripe's own parameter names."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from app.money import Metadata


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SubscriptionItemCreate(_Body):
    price: str = Field(min_length=1, max_length=255, examples=["price_monthly"])
    quantity: int = Field(default=1, ge=1, le=1_000_000, strict=True)


class SubscriptionCreate(_Body):
    """Stripe's `Subscription.create` parameters that the service passes on."""

    customer: str = Field(min_length=1, max_length=255, examples=["cus_NffrFeUfNV2Hib"])
    items: list[SubscriptionItemCreate] = Field(min_length=1, max_length=20)
    default_payment_method: str | None = Field(
        default=None,
        min_length=1,
        max_length=255,
        description="A payment method attached to the customer; without one, the customer's "
        "`invoice_settings.default_payment_method` pays.",
    )
    trial_period_days: int | None = Field(default=None, ge=1, le=730, strict=True)
    metadata: Metadata | None = None
    payment_behavior: (
        Literal["allow_incomplete", "default_incomplete", "error_if_incomplete"] | None
    ) = Field(
        default=None,
        description="`default_incomplete`: the first invoice waits for the customer to confirm "
        "its payment with the `client_secret` answered; `error_if_incomplete`: a declined first "
        "payment is a 402 and no subscription; `allow_incomplete` (Stripe's default): the "
        "subscription is made `incomplete` if the first payment fails.",
    )

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "customer": "cus_NffrFeUfNV2Hib",
                    "items": [{"price": "price_monthly", "quantity": 1}],
                    "default_payment_method": "pm_1NtQzS2eZvKYlo2C",
                    "metadata": {"plan": "pro"},
                }
            ]
        },
    )

    @model_validator(mode="after")
    def _one_item_per_price(self) -> SubscriptionCreate:
        prices = [item.price for item in self.items]
        if len(set(prices)) != len(prices):
            raise ValueError("each price may appear in one item only; set its `quantity`")
        return self


class SubscriptionItemUpdate(_Body):
    id: str | None = Field(
        default=None,
        min_length=1,
        max_length=255,
        description="The subscription item (`si_…`) to change; may be left out when the "
        "subscription has one item.",
    )
    price: str | None = Field(default=None, min_length=1, max_length=255)
    quantity: int | None = Field(default=None, ge=1, le=1_000_000, strict=True)


class SubscriptionUpdate(_Body):
    """The changes the service passes on to Stripe's `Subscription.update`: only the fields
    sent change. A price or quantity change takes effect at once and is not prorated: the new
    price is charged from the next period."""

    items: list[SubscriptionItemUpdate] | None = Field(default=None, min_length=1, max_length=20)
    proration_behavior: Literal["none"] = Field(
        default="none", description="Only `none`: changes are not prorated."
    )
    default_payment_method: str | None = Field(default=None, min_length=1, max_length=255)
    cancel_at_period_end: bool | None = Field(
        default=None,
        strict=True,
        description="`true`: the subscription ends at the end of the current period; `false` "
        "undoes that.",
    )
    metadata: Metadata | None = Field(
        default=None, description='Merged key by key; a key set to `""` is removed.'
    )

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"items": [{"price": "price_yearly", "quantity": 2}]},
                {"cancel_at_period_end": True},
            ]
        },
    )


class SubscriptionRead(BaseModel):
    """Stripe's Subscription object as the service last saw it (expanded references reduced to
    their ids), plus the Checkout Session that made it, if one did."""

    model_config = ConfigDict(extra="allow")

    id: str = Field(examples=["sub_1MowQVLkdIwHu7ixeRlqHVzs"])
    object: Literal["subscription"] = "subscription"
    customer: str | None = None
    status: str = Field(examples=["active"])
    cancel_at_period_end: bool = False
    latest_invoice: str | None = None
    metadata: dict[str, str] = Field(default_factory=dict)
    checkout_session: str | None = Field(
        default=None, description="The Checkout Session that made it (`cs_…`), or null."
    )
    client_secret: str | None = Field(
        default=None,
        description="Only in the answer to a create whose first invoice the customer must "
        "confirm (status `incomplete`): its PaymentIntent's client secret, for Stripe.js "
        "`confirmPayment`. Never stored, never listed.",
    )

    @classmethod
    def of(
        cls,
        subscription: dict[str, Any],
        checkout_session: str | None,
        client_secret: str | None = None,
    ) -> SubscriptionRead:
        return cls.model_validate(
            {**subscription, "checkout_session": checkout_session, "client_secret": client_secret}
        )


class SubscriptionList(BaseModel):
    object: Literal["list"] = "list"
    data: list[SubscriptionRead]
    has_more: bool
    url: str = "/subscriptions"
