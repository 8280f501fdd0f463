"""Request and response bodies for refunds, in Stripe's own parameter names."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from app.money import Amount, Metadata


class RefundCreate(BaseModel):
    """Stripe's `Refund.create` parameters for refunding a payment intent."""

    payment_intent: str = Field(min_length=1, max_length=255, examples=["pi_123"])
    amount: Amount | None = Field(
        default=None,
        description="Minor units to refund; omitted refunds everything not refunded yet.",
        examples=[1000],
    )
    reason: Literal["duplicate", "fraudulent", "requested_by_customer"] | None = None
    metadata: Metadata | None = None

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"payment_intent": "pi_123", "amount": 1000, "reason": "requested_by_customer"},
                {"payment_intent": "pi_123"},
            ]
        },
    )


class RefundRead(BaseModel):
    """Stripe's Refund object, as Stripe returns it, plus the service's `order_id`."""

    model_config = ConfigDict(extra="allow")

    id: str = Field(examples=["re_1Nispe2eZvKYlo2Cd31jOCgZ"])
    object: Literal["refund"] = "refund"
    amount: int
    currency: str
    payment_intent: str | None = None
    reason: str | None = None
    status: str | None = None
    order_id: str = Field(description="The order the refunded payment belongs to.")

    @classmethod
    def of(cls, refund: dict[str, Any], order_id: str) -> RefundRead:
        return cls.model_validate({**refund, "order_id": order_id})


class RefundSummary(BaseModel):
    """A refund as the service recorded it (from the API's answer or Stripe's webhooks)."""

    id: str = Field(examples=["re_1Nispe2eZvKYlo2Cd31jOCgZ"])
    object: Literal["refund"] = "refund"
    amount: int
    currency: str
    payment_intent: str
    reason: str | None
    status: str | None
    order_id: str
    created: int = Field(description="When the service recorded it, in Unix seconds.")


class RefundList(BaseModel):
    object: Literal["list"] = "list"
    data: list[RefundSummary]
    has_more: bool
    url: str = "/refunds"
