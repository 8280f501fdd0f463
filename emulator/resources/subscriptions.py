"""Subscriptions (`sub_…`): made by completed subscription-mode checkout sessions; retrieve, list.

Invoices are not modelled: a subscription's `latest_invoice` stays null and no renewal happens.
Current period fields live on the subscription items, where this API version puts them.
"""

from __future__ import annotations

from typing import Any

from stripe.params import SubscriptionListParams, SubscriptionRetrieveParams

from emulator.context import Ctx
from emulator.errors import invalid_request
from emulator.ids import new_id
from emulator.objects import blank
from emulator.routing import router
from emulator.store import Obj, paginate

DAY = 86400
_INTERVAL_DAYS = {"day": 1, "week": 7}


def period_end(start: int, interval: str, count: int) -> int:
    """The end of a billing period: calendar months and years, as Stripe bills them."""
    if interval in _INTERVAL_DAYS:
        return start + _INTERVAL_DAYS[interval] * count * DAY
    import datetime as dt

    begin = dt.datetime.fromtimestamp(start, dt.UTC)
    months = count * (12 if interval == "year" else 1)
    year, month = divmod(begin.month - 1 + months, 12)
    year += begin.year
    month += 1
    day = begin.day
    while True:
        try:
            end = begin.replace(year=year, month=month, day=day)
            break
        except ValueError:
            day -= 1  # 31 January + 1 month = 28/29 February, as Stripe anchors
    return int(end.timestamp())


def _plan(price: Obj) -> Obj:
    """The legacy `plan` Stripe still shows beside a recurring price."""
    recurring = price["recurring"] or {}
    return blank(
        "plan",
        id=price["id"],
        active=price["active"],
        amount=price["unit_amount"],
        amount_decimal=price["unit_amount_decimal"],
        billing_scheme=price["billing_scheme"],
        created=price["created"],
        currency=price["currency"],
        interval=recurring.get("interval"),
        interval_count=recurring.get("interval_count"),
        metadata=dict(price["metadata"]),
        meter=recurring.get("meter"),
        nickname=price["nickname"],
        product=price["product"],
        tiers_mode=price["tiers_mode"],
        transform_usage=None,
        trial_period_days=recurring.get("trial_period_days"),
        usage_type=recurring.get("usage_type", "licensed"),
    )


def create_subscription(
    ctx: Ctx,
    *,
    customer: str,
    items: list[tuple[Obj, int]],
    default_payment_method: str | None,
    trial_period_days: int | None = None,
    metadata: dict[str, str] | None = None,
    description: str | None = None,
) -> Obj:
    """Store a subscription for recurring `(price, quantity)` items; emits its `created` event."""
    now = ctx.now()
    sub_id = new_id("sub")
    trial_end = now + trial_period_days * DAY if trial_period_days else None
    data = []
    for price, quantity in items:
        recurring = price["recurring"]
        end = trial_end or period_end(now, recurring["interval"], recurring["interval_count"])
        item = blank(
            "subscription_item",
            id=new_id("si", 14),
            billing_thresholds=None,
            created=now,
            current_period_end=end,
            current_period_start=now,
            discounts=[],
            plan=_plan(price),
            price=price,
            quantity=quantity,
            subscription=sub_id,
            tax_rates=[],
        )
        item.pop("billed_until", None)
        item.pop("current_trial", None)
        data.append(item)
    sub = blank(
        "subscription",
        id=sub_id,
        automatic_tax={"disabled_reason": None, "enabled": False, "liability": None},
        billing_cycle_anchor=trial_end or now,
        billing_mode={
            "flexible": {"proration_discounts": "included"},
            "type": "flexible",
            "updated_at": now,
        },
        cancel_at_period_end=False,
        cancellation_details={"comment": None, "feedback": None, "reason": None},
        collection_method="charge_automatically",
        created=now,
        currency=items[0][0]["currency"],
        customer=customer,
        default_payment_method=default_payment_method,
        default_tax_rates=[],
        description=description,
        discounts=[],
        invoice_settings={"account_tax_ids": None, "issuer": {"type": "self"}},
        items={
            "object": "list",
            "data": data,
            "has_more": False,
            "total_count": len(data),
            "url": f"/v1/subscription_items?subscription={sub_id}",
        },
        latest_invoice=None,
        metadata=dict(metadata or {}),
        payment_settings={
            "payment_method_options": None,
            "payment_method_types": None,
            "save_default_payment_method": "off",
        },
        start_date=now,
        status="trialing" if trial_end else "active",
        trial_end=trial_end,
        trial_settings={"end_behavior": {"missing_payment_method": "create_invoice"}},
        trial_start=now if trial_end else None,
    )
    sub.pop("billing_schedules", None)
    ctx.coll("subscription").add(sub)
    ctx.emit("customer.subscription.created", sub)
    return sub


@router.route("GET", "/v1/subscriptions/{subscription_exposed_id}", SubscriptionRetrieveParams)
def retrieve(ctx: Ctx, params: dict[str, Any]) -> dict[str, Any]:
    return ctx.coll("subscription").get(ctx.path["subscription_exposed_id"], param="id")


_ENDED = ("canceled", "incomplete_expired")


@router.route("GET", "/v1/subscriptions", SubscriptionListParams)
def list_(ctx: Ctx, params: dict[str, Any]) -> dict[str, Any]:
    customer = params.get("customer")
    status = params.get("status")
    price = params.get("price") or params.get("plan")
    if "price" in params and "plan" in params:
        raise invalid_request("You may only specify one of these parameters: plan, price.")
    collection_method = params.get("collection_method")

    def where(sub: Obj) -> bool:
        if customer is not None and sub["customer"] != customer:
            return False
        if status is None:
            if sub["status"] == "canceled":
                return False
        elif status == "ended":
            if sub["status"] not in _ENDED:
                return False
        elif status != "all" and sub["status"] != status:
            return False
        if collection_method is not None and sub["collection_method"] != collection_method:
            return False
        if price is not None and all(i["price"]["id"] != price for i in sub["items"]["data"]):
            return False
        return True

    return paginate(ctx.coll("subscription"), params, "/v1/subscriptions", where)
