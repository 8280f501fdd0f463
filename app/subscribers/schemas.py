"""Request and response bodies for webhook endpoints and their deliveries."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Literal, cast

from pydantic import BaseModel, ConfigDict, Field

from app.models import DeliveryAttempt, EventDelivery, WebhookEndpoint
from app.models.base import aware
from app.money import Metadata
from app.subscribers.urls import MAX_URL_LENGTH

MAX_SECRET_GRACE_SECONDS = 7 * 24 * 3600
DeliveryStatus = Literal["pending", "succeeded", "failed"]

URL_DESCRIPTION = (
    "Where deliveries are POSTed: http or https, no user name or password, at most 2,048 "
    "characters. A live service refuses `localhost` and private, loopback, link-local or other "
    "non-public addresses (unless `WEBHOOK_ENDPOINTS_ALLOW_PRIVATE`)."
)
EVENTS_DESCRIPTION = (
    "The event types delivered (`order.paid`, `subscription.active`, …; see `GET /events`), or "
    '`["*"]` for every type, including types added later.'
)


def _unix(moment: datetime | None) -> int | None:
    return None if moment is None else int(aware(moment).timestamp())


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class WebhookEndpointCreate(_Body):
    url: str = Field(
        min_length=1,
        max_length=MAX_URL_LENGTH,
        description=URL_DESCRIPTION,
        examples=["https://shop.example/hooks/payments"],
    )
    enabled_events: list[str] = Field(
        min_length=1, max_length=100, description=EVENTS_DESCRIPTION, examples=[["order.paid"]]
    )
    description: str | None = Field(default=None, max_length=500, examples=["Fulfilment"])
    metadata: Metadata | None = None

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "url": "https://shop.example/hooks/payments",
                    "enabled_events": ["order.paid", "order.refunded"],
                    "description": "Fulfilment",
                }
            ]
        },
    )


class WebhookEndpointUpdate(_Body):
    """Only the fields sent change (`null` changes nothing); metadata merges key by key (a key
    set to `""` is removed); `description: ""` clears it."""

    url: str | None = Field(
        default=None, min_length=1, max_length=MAX_URL_LENGTH, description=URL_DESCRIPTION
    )
    enabled_events: list[str] | None = Field(
        default=None, min_length=1, max_length=100, description=EVENTS_DESCRIPTION
    )
    description: str | None = Field(default=None, max_length=500)
    metadata: Metadata | None = None
    disabled: bool | None = Field(
        default=None,
        description="`true`: no new delivery is made for the endpoint and none is attempted "
        "until it is enabled again (`false`).",
    )

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"disabled": True}]})


class SecretRotation(_Body):
    expires_in_seconds: int = Field(
        default=24 * 3600,
        ge=0,
        le=MAX_SECRET_GRACE_SECONDS,
        description="How long the current secret still signs deliveries (as a second `v1`), "
        "0 to 7 days; 0 ends it at once.",
    )

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"expires_in_seconds": 3600}]}
    )


class Redelivery(_Body):
    endpoint: str | None = Field(
        default=None,
        max_length=32,
        description="The one endpoint (`we_…`) to deliver to; without it, every enabled "
        "endpoint that listens to the event's type.",
        examples=["we_Qm3x9Lk2Zp8sWq1Rt5Yb"],
    )

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"endpoint": "we_Qm3x9Lk2Zp8sWq1Rt5Yb"}]}
    )


class WebhookEndpointRead(BaseModel):
    """A subscriber's endpoint. Its `secret` is shown only when it is made (`POST
    /webhook-endpoints`, `…/rotate-secret`)."""

    id: str = Field(examples=["we_Qm3x9Lk2Zp8sWq1Rt5Yb"])
    object: Literal["webhook_endpoint"] = "webhook_endpoint"
    url: str
    enabled_events: list[str]
    description: str | None
    metadata: dict[str, str]
    status: Literal["enabled", "disabled"]
    created: int = Field(description="Unix seconds.")
    previous_secret_expires_at: int | None = Field(
        description="Until when (unix seconds) the secret before the last rotation still "
        "signs deliveries too; null when it no longer does."
    )

    @classmethod
    def fields_of(cls, row: WebhookEndpoint, now: datetime) -> dict[str, Any]:
        expires = row.previous_secret_expires_at
        grace = expires is not None and row.previous_secret is not None and aware(expires) > now
        return {
            "id": row.id,
            "url": row.url,
            "enabled_events": list(row.enabled_events),
            "description": row.description,
            "metadata": dict(row.metadata_ or {}),
            "status": row.status,
            "created": _unix(row.created),
            "previous_secret_expires_at": _unix(expires) if grace else None,
        }

    @classmethod
    def of(cls, row: WebhookEndpoint, now: datetime) -> WebhookEndpointRead:
        return cls(**cls.fields_of(row, now))


class WebhookEndpointWithSecret(WebhookEndpointRead):
    secret: str = Field(
        description="What deliveries are signed with (`Payments-Signature`): keep it, it is "
        "not shown again.",
        examples=["whsec_3q2-x9Lk2Zp8sWq1Rt5YbHk2yW1xV0uQ"],
    )

    @classmethod
    def of(cls, row: WebhookEndpoint, now: datetime) -> WebhookEndpointWithSecret:
        return cls(**cls.fields_of(row, now), secret=row.secret)


class WebhookEndpointList(BaseModel):
    object: Literal["list"] = "list"
    data: list[WebhookEndpointRead]
    has_more: bool
    url: str = "/webhook-endpoints"


class WebhookEndpointDeleted(BaseModel):
    id: str
    object: Literal["webhook_endpoint"] = "webhook_endpoint"
    deleted: Literal[True] = True


class AttemptRead(BaseModel):
    at: int = Field(description="When the POST started, in unix seconds.")
    status_code: int | None = Field(description="The endpoint's answer; null if none came.")
    duration_ms: int
    excerpt: str | None = Field(description="The start of the endpoint's answer.")
    error: str | None = Field(
        description="What went wrong without an answer (`timeout`, `connection refused`)."
    )

    @classmethod
    def of(cls, row: DeliveryAttempt) -> AttemptRead:
        return cls(
            at=int(aware(row.at).timestamp()),
            status_code=row.status_code,
            duration_ms=row.duration_ms,
            excerpt=row.excerpt,
            error=row.error,
        )


class DeliveryRead(BaseModel):
    """One event to one endpoint: `pending` until the endpoint answers 2xx (`succeeded`) or the
    retry window closes (`failed`), with every attempt so far, oldest first."""

    id: str = Field(examples=["del_Qm3x9Lk2Zp8sWq1Rt5Yb"])
    object: Literal["event_delivery"] = "event_delivery"
    event: str
    endpoint: str
    status: DeliveryStatus
    attempt_count: int
    next_attempt_at: int | None = Field(description="When the next attempt is due, if pending.")
    created: int
    completed_at: int | None
    attempts: list[AttemptRead]

    @classmethod
    def of(cls, row: EventDelivery, attempts: Sequence[DeliveryAttempt]) -> DeliveryRead:
        return cls(
            id=row.id,
            event=row.event_id,
            endpoint=row.endpoint_id,
            status=cast(DeliveryStatus, row.status),
            attempt_count=row.attempts,
            next_attempt_at=_unix(row.next_attempt_at) if row.status == "pending" else None,
            created=int(aware(row.created).timestamp()),
            completed_at=_unix(row.completed_at),
            attempts=[AttemptRead.of(a) for a in attempts],
        )


class DeliveryList(BaseModel):
    object: Literal["list"] = "list"
    data: list[DeliveryRead]
    has_more: bool
    url: str
