"""`GET /orders/{id}` and `GET /orders`: orders with their status history."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from app.auth import Caller
from app.db import Session
from app.models import OrderStatus
from app.orders import service
from app.orders.schemas import ORDER_EXAMPLE, OrderList, OrderRead

router = APIRouter(prefix="/orders", tags=["orders"])


@router.get(
    "/{order_id}",
    summary="Retrieve an order",
    responses={200: {"content": {"application/json": {"example": ORDER_EXAMPLE}}}},
)
async def get_order(
    order_id: Annotated[str, Path(examples=["ord_x6Yt0qJk3mZp9sLwQe2R"])],
    session: Session,
    _caller: Caller,
) -> OrderRead:
    """The order with its payment intent, checkout session, amounts and `history`: every status
    change with its time and its `source`, the Stripe event id (`evt_…`) or the API call
    (`api:POST /payment-intents`) that caused it. An unknown id is a 404."""
    return OrderRead.of(await service.with_history(session, order_id))


@router.get("", summary="List orders")
async def list_orders(
    session: Session,
    _caller: Caller,
    status: Annotated[
        OrderStatus | None, Query(description="Only orders in this status.", examples=["paid"])
    ] = None,
    customer: Annotated[
        str | None, Query(description="Only this Stripe customer's orders.", examples=["cus_123"])
    ] = None,
    limit: Annotated[int, Query(ge=1, le=100, description="Page size, 1 to 100.")] = 10,
    starting_after: Annotated[
        str | None,
        Query(description="The last order id of the previous page.", examples=["ord_x6Yt0qJk3"]),
    ] = None,
) -> OrderList:
    """Orders newest first, each with its history, paged like Stripe's lists: `has_more` says
    whether another page follows; fetch it with `starting_after` set to the last order's id."""
    orders, has_more = await service.list_orders(
        session, status=status, customer=customer, limit=limit, starting_after=starting_after
    )
    return OrderList(data=[OrderRead.of(order) for order in orders], has_more=has_more)
