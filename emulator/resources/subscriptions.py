"""Subscriptions (`sub_…`): create, retrieve, update, cancel, list and search; also made by
completed subscription-mode checkout sessions.

A subscription bills through invoices (`emulator.invoicing`) and moves through its statuses over
time (`emulator.billing`): its first invoice is made, finalized and charged at creation (a paid
$0 invoice for a trial), renewals when a test clock (or the emulator's clock) passes a period's
end. Current period fields live on the subscription items, where this API version puts them.

The emulator does not prorate: an update that changes items must pass
`proration_behavior=none`; parameters it does not model are refused with a 400 naming them.
"""

from __future__ import annotations

from typing import Any

from stripe.params import (
    SubscriptionCancelParams,
    SubscriptionCreateParams,
    SubscriptionListParams,
    SubscriptionRetrieveParams,
    SubscriptionSearchParams,
    SubscriptionUpdateParams,
)

from emulator import billing, cards, search
from emulator.context import Ctx
from emulator.errors import StripeError, invalid_request
from emulator.ids import new_id
from emulator.metadata import checked, merged
from emulator.objects import blank
from emulator.resources.payment_methods import customer_exists
from emulator.routing import router
from emulator.store import Obj, paginate

DAY = billing.DAY
MAX_ITEMS = 20
MAX_TRIAL_DAYS = 730
_CREATE_PARAMS = frozenset(
    {
        "cancel_at_period_end",
        "customer",
        "default_payment_method",
        "description",
        "expand",
        "items",
        "metadata",
        "payment_behavior",
        "trial_end",
        "trial_period_days",
    }
)
_UPDATE_PARAMS = frozenset(
    {
        "cancel_at_period_end",
        "default_payment_method",
        "description",
        "expand",
        "items",
        "metadata",
        "payment_behavior",
        "proration_behavior",
    }
)
_PAYMENT_BEHAVIORS = ("allow_incomplete", "default_incomplete", "error_if_incomplete")


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


def _item(price: Obj, quantity: int, sub_id: str, now: int, end: int) -> Obj:
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
    return item


def create_subscription(
    ctx: Ctx,
    *,
    customer: str,
    items: list[tuple[Obj, int]],
    default_payment_method: str | None,
    trial_period_days: int | None = None,
    trial_end: int | None = None,
    metadata: dict[str, str] | None = None,
    description: str | None = None,
    payment_behavior: str = "allow_incomplete",
    cancel_at_period_end: bool = False,
) -> Obj:
    """Store a subscription for recurring `(price, quantity)` items and bill its first invoice.

    Emits `customer.subscription.created` with the status the first payment leads to (`active`
    when the card pays at once, `incomplete` otherwise, `trialing` with a trial), then the first
    invoice's events. Runs on the customer's test clock if it has one.
    """
    owner = ctx.coll("customer").get(customer, param="customer")
    clock_id = owner.get("test_clock")
    if clock_id is not None and ctx.at is None:
        ctx = ctx.at_time(ctx.clock_time(owner))
    now = ctx.now()
    sub_id = new_id("sub")
    if trial_period_days:
        trial_end = now + trial_period_days * DAY
    data = []
    for price, quantity in items:
        recurring = price["recurring"]
        end = trial_end or billing.period_end(
            now, recurring["interval"], recurring["interval_count"]
        )
        data.append(_item(price, quantity, sub_id, now, end))
    amount = sum(int(price["unit_amount"] or 0) * quantity for price, quantity in items)
    status = (
        "trialing"
        if trial_end
        else _first_status(ctx, customer, default_payment_method, amount, payment_behavior)
    )
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
        cancel_at=None,
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
        status=status,
        test_clock=clock_id,
        trial_end=trial_end,
        trial_settings={"end_behavior": {"missing_payment_method": "create_invoice"}},
        trial_start=now if trial_end else None,
    )
    if cancel_at_period_end:
        _set_cancel_at_period_end(sub, True, now)
    sub.pop("billing_schedules", None)
    ctx.coll("subscription").add(sub)
    ctx.emit("customer.subscription.created", sub)
    invoice = billing.start(ctx, sub, payment_behavior)
    if sub["status"] == "active" and invoice["status"] != "paid":
        billing.set_status(ctx, sub, "incomplete")  # the card did not pay after all
    return sub


def _first_status(
    ctx: Ctx, customer: str, payment_method: str | None, amount: int, payment_behavior: str
) -> str:
    """The status a new subscription starts in: `active` if its first invoice will be paid at
    once (Stripe answers and announces it so), else `incomplete`."""
    if amount == 0:
        return "active"
    if payment_behavior == "default_incomplete":
        return "incomplete"
    ref = payment_method or _customer_default(ctx, customer)
    pm = ctx.coll("payment_method").find(ref) if ref else None
    if pm is None:
        return "incomplete"
    card = cards.card_of(ctx, pm)
    paid_at_once = not (card.decline_code or card.requires_action or card.settles_later)
    return "active" if paid_at_once else "incomplete"


def _customer_default(ctx: Ctx, customer: str) -> str | None:
    owner = ctx.coll("customer").find(customer) or {}
    default = (owner.get("invoice_settings") or {}).get("default_payment_method")
    return str(default) if default else None


def _set_cancel_at_period_end(sub: Obj, on: bool, now: int) -> None:
    sub["cancel_at_period_end"] = on
    if on:
        sub["cancel_at"] = sub["items"]["data"][0]["current_period_end"]
        if sub["status"] == "trialing":
            sub["cancel_at"] = sub["trial_end"]
        sub["canceled_at"] = now
        sub["cancellation_details"] = {
            **sub["cancellation_details"],
            "reason": "cancellation_requested",
        }
    else:
        sub["cancel_at"] = None
        sub["canceled_at"] = None
        sub["cancellation_details"] = {**sub["cancellation_details"], "reason": None}


@router.route("GET", "/v1/subscriptions/{subscription_exposed_id}", SubscriptionRetrieveParams)
def retrieve(ctx: Ctx, params: dict[str, Any]) -> dict[str, Any]:
    return _subscription(ctx)


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


# ---------------------------------------------------------------------------------------------
# Create, update, cancel, search


def _refuse_unmodelled(params: dict[str, Any], known: frozenset[str], action: str) -> None:
    for name in params:
        if name not in known:
            raise invalid_request(
                f"The emulator does not model `{name}` when {action} a subscription.", param=name
            )


def _recurring_price(ctx: Ctx, ref: Any, param: str) -> Obj:
    if not isinstance(ref, str) or not ref:
        raise invalid_request(f"Missing required param: {param}.", param=param)
    price = ctx.coll("price").find(ref)
    if price is None:
        raise invalid_request(f"No such price: '{ref}'", param=param, code="resource_missing")
    if price["type"] != "recurring" or not price["recurring"]:
        raise invalid_request(
            "The price specified is set to `type=one_time` but this field only accepts prices "
            "with `type=recurring`.",
            param=param,
        )
    if not price["active"]:
        raise invalid_request(
            "The price specified is inactive. This field only accepts active prices.",
            param=param,
        )
    return price


def _same_cycle(prices: list[Obj], param: str) -> None:
    first = prices[0]
    for price in prices[1:]:
        if price["currency"] != first["currency"]:
            raise invalid_request(
                "All prices on a subscription must have the same currency.", param=param
            )
        a, b = first["recurring"], price["recurring"]
        if (a["interval"], a["interval_count"]) != (b["interval"], b["interval_count"]):
            raise invalid_request(
                "The price specified has a different billing interval than the other prices on "
                "the subscription: all prices must have the same `recurring.interval` and "
                "`recurring.interval_count`.",
                param=param,
            )


def _attached_payment_method(ctx: Ctx, customer: str, ref: str, param: str) -> str:
    pm = ctx.coll("payment_method").find(ref)
    if pm is None or pm["customer"] != customer:
        raise invalid_request(
            f"The customer does not have a payment method with the ID {ref}. The payment method "
            "must be attached to the customer.",
            param=param,
            code="resource_missing",
        )
    return ref


def _trial_end(ctx: Ctx, params: dict[str, Any], now: int) -> int | None:
    days = params.get("trial_period_days")
    end = params.get("trial_end")
    if days is not None and end is not None:
        raise invalid_request(
            "You may only specify one of these parameters: trial_end, trial_period_days.",
            param="trial_end",
        )
    if days is not None:
        if days < 0 or days > MAX_TRIAL_DAYS:
            raise invalid_request(
                f"trial_period_days must be between 0 and {MAX_TRIAL_DAYS} days.",
                param="trial_period_days",
            )
        return now + days * DAY if days else None
    if end is None or end == "now":
        return None
    if end <= now:
        raise invalid_request(
            "Invalid timestamp: must be an integer Unix timestamp in the future.",
            param="trial_end",
        )
    if end > now + MAX_TRIAL_DAYS * DAY:
        raise invalid_request(
            "Invalid timestamp: can be no more than two years in the future.", param="trial_end"
        )
    return int(end)


@router.route("POST", "/v1/subscriptions", SubscriptionCreateParams)
def create(ctx: Ctx, params: dict[str, Any]) -> dict[str, Any]:
    """Create a subscription; validated in full before anything is stored or charged."""
    _refuse_unmodelled(params, _CREATE_PARAMS, "creating")
    if "customer" not in params:
        raise invalid_request("Missing required param: customer.", param="customer")
    owner = customer_exists(ctx, params["customer"])
    if owner.get("test_clock") is not None:
        ctx = ctx.at_time(ctx.clock_time(owner))
    given = params.get("items") or []
    if not given:
        raise invalid_request("Missing required param: items.", param="items")
    if len(given) > MAX_ITEMS:
        raise invalid_request(
            f"You can have at most {MAX_ITEMS} items on a subscription.", param="items"
        )
    items: list[tuple[Obj, int]] = []
    for i, entry in enumerate(given):
        if "price" not in entry:
            raise invalid_request(
                f"The emulator needs `items[{i}][price]`: `plan` and `price_data` are not "
                "modelled.",
                param=f"items[{i}][price]",
            )
        price = _recurring_price(ctx, entry["price"], f"items[{i}][price]")
        quantity = entry.get("quantity", 1)
        if quantity < 1:
            raise invalid_request(
                "Quantity must be greater than or equal to 1.", param=f"items[{i}][quantity]"
            )
        if any(p["id"] == price["id"] for p, _ in items):
            raise invalid_request(
                "Cannot add multiple subscription items with the same price.",
                param=f"items[{i}][price]",
            )
        items.append((price, int(quantity)))
    _same_cycle([p for p, _ in items], "items")
    behavior = params.get("payment_behavior", "allow_incomplete")
    if behavior not in _PAYMENT_BEHAVIORS:
        raise invalid_request(
            "`payment_behavior=pending_if_incomplete` is only supported when updating a "
            "subscription.",
            param="payment_behavior",
        )
    default_pm = params.get("default_payment_method") or None
    if default_pm is not None:
        _attached_payment_method(ctx, owner["id"], default_pm, "default_payment_method")
    trial_end = _trial_end(ctx, params, ctx.now())
    metadata = checked(params.get("metadata"))
    amount = sum(int(p["unit_amount"] or 0) * q for p, q in items)
    payer = default_pm or _customer_default(ctx, owner["id"])
    if not trial_end and amount > 0 and behavior != "default_incomplete":
        if payer is None:
            raise invalid_request(
                "This customer has no attached payment source or default payment method. Please "
                "consider adding a default payment method. For more information, visit "
                "https://stripe.com/docs/billing/subscriptions/payment-methods-setting#payment-"
                "method-priority.",
                code="resource_missing",
            )
        pm = ctx.coll("payment_method").find(payer)
        card = cards.card_of(ctx, pm) if pm else None
        if behavior == "error_if_incomplete" and card is not None:
            if card.decline_code is not None:
                raise cards.card_error(card)
            if card.requires_action:
                raise StripeError(
                    402,
                    "card_error",
                    "Your card was declined. This transaction requires authentication.",
                    code="subscription_payment_intent_requires_action",
                )
    return create_subscription(
        ctx,
        customer=owner["id"],
        items=items,
        default_payment_method=default_pm,
        trial_end=trial_end,
        metadata=metadata,
        description=params.get("description") or None,
        payment_behavior=behavior,
        cancel_at_period_end=bool(params.get("cancel_at_period_end")),
    )


@router.route("GET", "/v1/subscriptions/search", SubscriptionSearchParams)
def search_(ctx: Ctx, params: dict[str, Any]) -> dict[str, Any]:
    return search.search(ctx.coll("subscription"), params, "/v1/subscriptions/search")


def _subscription(ctx: Ctx) -> Obj:
    return ctx.coll("subscription").get(ctx.path["subscription_exposed_id"], param="id")


@router.route("POST", "/v1/subscriptions/{subscription_exposed_id}", SubscriptionUpdateParams)
def update(ctx: Ctx, params: dict[str, Any]) -> dict[str, Any]:
    """Change price or quantity (without proration), the default payment method,
    `cancel_at_period_end`, description or metadata. Everything is checked before anything
    changes; one `customer.subscription.updated` carries the previous values."""
    _refuse_unmodelled(params, _UPDATE_PARAMS, "updating")
    sub = _subscription(ctx)
    if sub["test_clock"] is not None:
        ctx = ctx.at_time(ctx.clock_time(sub))
    now = ctx.now()
    if sub["status"] in billing.ENDED and set(params) - {"metadata", "expand"}:
        raise invalid_request(f"A {sub['status']} subscription can only update its metadata.")
    changes = _item_changes(ctx, sub, params.get("items") or [])
    if changes and params.get("proration_behavior") != "none":
        raise invalid_request(
            "The emulator does not prorate: pass `proration_behavior=none` to change a "
            "subscription's items (`create_prorations`, the default, and `always_invoice` are "
            "not modelled).",
            param="proration_behavior",
        )
    default_pm = params.get("default_payment_method")
    if default_pm:
        _attached_payment_method(ctx, sub["customer"], default_pm, "default_payment_method")
    metadata = merged(sub["metadata"], params["metadata"]) if "metadata" in params else None
    previous: dict[str, Any] = {}
    if changes:
        previous["items"] = {**sub["items"], "data": billing.copy(sub["items"]["data"])}
        for item, price, quantity in changes:
            item["price"] = price
            item["plan"] = _plan(price)
            item["quantity"] = quantity
    if "default_payment_method" in params and (default_pm or None) != sub["default_payment_method"]:
        previous["default_payment_method"] = sub["default_payment_method"]
        sub["default_payment_method"] = default_pm or None
    if (
        "cancel_at_period_end" in params
        and bool(params["cancel_at_period_end"]) != sub["cancel_at_period_end"]
    ):
        for field in ("cancel_at", "cancel_at_period_end", "canceled_at", "cancellation_details"):
            previous[field] = billing.copy(sub[field])
        _set_cancel_at_period_end(sub, bool(params["cancel_at_period_end"]), now)
    if "description" in params and (params["description"] or None) != sub["description"]:
        previous["description"] = sub["description"]
        sub["description"] = params["description"] or None
    if metadata is not None and metadata != sub["metadata"]:
        previous["metadata"] = sub["metadata"]
        sub["metadata"] = metadata
    if previous:
        ctx.emit("customer.subscription.updated", sub, previous)
    return sub


def _item_changes(ctx: Ctx, sub: Obj, given: list[dict[str, Any]]) -> list[tuple[Obj, Obj, int]]:
    by_id = {item["id"]: item for item in sub["items"]["data"]}
    changes: list[tuple[Obj, Obj, int]] = []
    for i, entry in enumerate(given):
        if "id" not in entry or entry.get("deleted"):
            raise invalid_request(
                "The emulator changes existing items only: pass `items[N][id]` with a new "
                "`price` and/or `quantity` (adding or deleting items is not modelled).",
                param=f"items[{i}][id]",
            )
        item = by_id.get(entry["id"])
        if item is None:
            raise invalid_request(
                f"No such subscription item: '{entry['id']}'",
                param=f"items[{i}][id]",
                code="resource_missing",
            )
        unknown = set(entry) - {"id", "price", "quantity"}
        if unknown:
            name = sorted(unknown)[0]
            raise invalid_request(
                f"The emulator does not model `items[{i}][{name}]`.", param=f"items[{i}][{name}]"
            )
        price = item["price"]
        if "price" in entry:
            price = _recurring_price(ctx, entry["price"], f"items[{i}][price]")
        quantity = entry.get("quantity", item["quantity"])
        if quantity < 1:
            raise invalid_request(
                "Quantity must be greater than or equal to 1.", param=f"items[{i}][quantity]"
            )
        if price["id"] != item["price"]["id"] or quantity != item["quantity"]:
            changes.append((item, price, int(quantity)))
    prices = [item["price"] for item in sub["items"]["data"]]
    _same_cycle(prices + [price for _, price, _ in changes], "items")
    return changes


@router.route("DELETE", "/v1/subscriptions/{subscription_exposed_id}", SubscriptionCancelParams)
def cancel(ctx: Ctx, params: dict[str, Any]) -> dict[str, Any]:
    """Cancel now: `canceled`, `customer.subscription.deleted`. An incomplete subscription's
    unpaid first invoice is voided."""
    sub = _subscription(ctx)
    if sub["test_clock"] is not None:
        ctx = ctx.at_time(ctx.clock_time(sub))
    if params.get("invoice_now") or params.get("prorate"):
        raise invalid_request(
            "The emulator does not model `invoice_now` or `prorate` on cancellation.",
            param="invoice_now" if params.get("invoice_now") else "prorate",
        )
    if sub["status"] in billing.ENDED:
        raise invalid_request(
            f"This subscription has already been canceled: its status is {sub['status']}.",
        )
    details = params.get("cancellation_details") or {}
    for field in ("comment", "feedback"):
        if field in details:
            sub["cancellation_details"] = {
                **sub["cancellation_details"],
                field: details[field] or None,
            }
    if sub["status"] == "incomplete":
        from emulator import invoicing

        for invoice in billing.invoices_of(ctx, sub):
            if invoice["status"] == "open":
                invoicing.void(ctx, invoice)
    billing.cancel(ctx, sub, "cancellation_requested")
    return sub
