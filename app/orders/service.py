"""Orders: create them, find them (locked for update), and move them through the state machine,
keeping a history entry and an outbox event (app.models.Event) for every change, and the local
mirror of their payment intent."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, TypeVar, cast

from sqlalchemy import (
    ColumnElement,
    Executable,
    FromClause,
    Table,
    bindparam,
    delete,
    func,
    insert,
    literal,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession
from sqlalchemy.orm import selectinload
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.sql.dml import Insert, Update
from sqlalchemy.sql.elements import BindParameter
from sqlalchemy.sql.selectable import CTE, Exists

from app import pg_direct
from app.db import is_postgres
from app.errors import NotFound
from app.models import (
    CheckoutSession,
    Event,
    Order,
    OrderHistory,
    OrderStatus,
    PaymentIntent,
    Refund,
)
from app.models.base import new_id, utcnow
from app.observability import record_transition
from app.orders.state import (
    FINAL,
    Decision,
    decide,
    status_for_payment_intent,
    status_for_refunds,
)
from app.pages import newest_by_time

# The Stripe metadata key under which every object we create carries our order id (the caller's
# own `order_id` metadata stays theirs): webhooks find an order by it before it is linked.
ORDER_KEY = "service_order_id"
_AnyInsert = TypeVar("_AnyInsert", bound=Insert)


async def insert_order(
    executor: AsyncSession | AsyncConnection | AsyncEngine,
    *,
    amount: int,
    currency: str,
    source: str,
    customer: str | None = None,
    description: str | None = None,
    metadata: dict[str, str] | None = None,
    idempotency_owner: str | None = None,
    idempotency_key: str | None = None,
    attempts: int = 0,
    also: tuple[Insert, dict[str, Any]] | None = None,
) -> str:
    """The id of a new `pending` order, inserted with its first history entry and its
    `order.created` event so the id can key the Stripe call that follows. The caller's
    `Idempotency-Key` (with the caller's identity) ties a retry to this order. No ORM object is
    built (`get_order` loads one); on Postgres the three rows are one statement, committed on
    its own (app.pg_direct) when `executor` is the engine; `also` (Postgres only) is another
    INSERT and its parameters, written in that statement."""
    order_id = new_id("ord")
    now = utcnow()
    order = {
        "id": order_id,
        "status": OrderStatus.PENDING,
        "amount": amount,
        "currency": currency,
        "amount_received": 0,
        "amount_refunded": 0,
        "customer": customer,
        "description": description,
        "metadata": metadata or {},
        "attempts": attempts,
        "idempotency_owner": idempotency_owner if idempotency_key is not None else None,
        "idempotency_key": idempotency_key,
        "created_at": now,
        "updated_at": now,
    }
    history = {"from_status": None, "to_status": OrderStatus.PENDING, "source": source, "at": now}
    params = {f"o_{name}": value for name, value in order.items()}
    params.update({f"h_{name}": value for name, value in history.items()})
    params.update(e_id=new_id("evt"), e_type=CREATED, e_object=order_object(order))
    statements = _order_statements(
        is_postgres(executor), tuple(order), also[0] if also is not None else None
    )
    if also is not None:
        params.update(also[1])
    if isinstance(executor, AsyncEngine):
        (statement,) = statements
        await pg_direct.execute(executor, statement, params)
        return order_id
    for statement in statements:
        await executor.execute(statement, params)
    return order_id


@functools.cache
def _order_statements(
    postgres: bool, columns: tuple[str, ...], also: Insert | None
) -> tuple[Executable, ...]:
    """A new order's INSERT (parameters `o_*`), its first history entry's (`h_*`) and its
    `order.created` event's (`e_id`, `e_type`, `e_object`): one statement on Postgres, as
    `_statements` writes changes, with `also` if given; three on SQLite."""
    order = insert(_ORDERS).values({name: _bind("o_", _ORDERS, name) for name in columns})
    history = insert(_HISTORY).values(
        {"order_id": bindparam("o_id"), **{n: _bind("h_", _HISTORY, n) for n in _HISTORY_VALUES}}
    )
    event = insert(_EVENTS).values(
        _event_values(bindparam("o_id"), bindparam("e_object", type_=_EVENTS.c.object.type))
    )
    if not postgres:
        assert also is None, "one statement only on Postgres"
        return order, history, event
    ctes = [
        history.cte("write_history"),
        event.cte("write_event"),
        *([also.cte("write_also")] if also is not None else []),
    ]
    return (order.add_cte(*ctes),)


async def get_order(session: AsyncSession, order_id: str, *, for_update: bool = False) -> Order:
    order = await _one(session, "id", order_id, for_update=for_update)
    if order is None:
        raise NotFound(f"No such order: '{order_id}'", param="id")
    return order


async def find_order_for_idempotency_key(
    session: AsyncSession, owner: str, key: str
) -> Order | None:
    """The order a caller's request with this `Idempotency-Key` created, if any."""
    return await session.scalar(
        select(Order).where(Order.idempotency_owner == owner, Order.idempotency_key == key)
    )


async def discard_order(session: AsyncSession, order: Order, source: str) -> None:
    """Delete an order that never got a Stripe object (Stripe refused to create it), with its
    history and its events not yet published. An event the relay already published stays, and
    `order.discarded` (caused by `source`, the order as it stood) follows it, so a subscriber
    told of the order hears that it is gone. The events are locked first: a relay publishing
    one now is waited for, and its `published_at` read after it commits."""
    events = await session.execute(
        select(Event.id, Event.published_at)
        .where(Event.object_type == "order", Event.object_id == order.id)
        .with_for_update()
    )
    published = False
    unpublished = []
    for event_id, published_at in events:
        published = published or published_at is not None
        if published_at is None:
            unpublished.append(event_id)
    if unpublished:
        await session.execute(delete(Event).where(Event.id.in_(unpublished)))
    if published:
        await _write_discarded(session, order.id, source)
    await session.execute(delete(OrderHistory).where(OrderHistory.order_id == order.id))
    await session.execute(delete(Order).where(Order.id == order.id))


async def _write_discarded(session: AsyncSession, order_id: str, source: str) -> None:
    row = (
        await session.execute(
            select(*(_ORDERS.c[name] for name in _ORDER_OBJECT)).where(_ORDERS.c.id == order_id)
        )
    ).one()
    shown = order_object({**row._mapping, "status": DISCARDED_STATUS})
    await session.execute(
        insert(_EVENTS).values(
            id=new_id("evt"),
            type=DISCARDED,
            created=utcnow(),
            object_type="order",
            object_id=order_id,
            object=shown,
            cause=source,
        )
    )


async def claim_unlinked_order(
    engine: AsyncEngine,
    order_id: str,
    link: Literal["payment_intent", "checkout_session"] = "payment_intent",
) -> bool:
    """Mark a `pending` order with no payment intent (or no other `link`) as being worked on now
    (its `updated_at`), so reconcile, which abandons only orders untouched for its minimum age,
    leaves it alone; False, with nothing written, if it is no longer so."""
    async with engine.begin() as connection:
        claimed = await connection.execute(
            update(Order)
            .where(
                Order.id == order_id,
                Order.status == OrderStatus.PENDING,
                _ORDERS.c[link].is_(None),
            )
            .values(updated_at=utcnow())
        )
    return bool(claimed.rowcount)


async def unsettled_order_ids(session: AsyncSession, created_before: datetime) -> list[str]:
    """Orders not in a final state, created before the given moment, oldest first."""
    rows = await session.scalars(
        select(Order.id)
        .where(Order.status.not_in([s.value for s in FINAL]), Order.created_at < created_before)
        .order_by(Order.created_at, Order.id)
    )
    return list(rows)


async def find_order_for_payment_intent(
    session: AsyncSession, payment_intent: str, *, for_update: bool = True
) -> Order | None:
    return await _one(session, "payment_intent", payment_intent, for_update=for_update)


async def find_order_for_checkout_session(
    session: AsyncSession, checkout_session: str, *, for_update: bool = True
) -> Order | None:
    return await _one(session, "checkout_session", checkout_session, for_update=for_update)


async def _one(session: AsyncSession, by: str, value: str, *, for_update: bool) -> Order | None:
    """The order whose column `by` is `value`; `for_update` holds it until the transaction ends.
    Postgres locks the row; SQLite has no row locks, so a no-op write first takes its database
    write lock, which other writers (webhooks, replicas) then wait for in the same way."""
    query = _SELECT_ORDER[by]
    if for_update:
        if is_postgres(session):
            query = _SELECT_ORDER_FOR_UPDATE[by]
        else:
            await session.execute(_TOUCH_ORDER[by], {"value": value})
    return await session.scalar(query, {"value": value})


_ORDERS = cast(Table, Order.__table__)
_UNIQUE = ("id", "payment_intent", "checkout_session")
_SELECT_ORDER = {
    by: select(Order)
    .where(_ORDERS.c[by] == bindparam("value"))
    .execution_options(populate_existing=True)
    for by in _UNIQUE
}
_SELECT_ORDER_FOR_UPDATE = {by: query.with_for_update() for by, query in _SELECT_ORDER.items()}
_TOUCH_ORDER = {
    by: update(_ORDERS)
    .where(_ORDERS.c[by] == bindparam("value"))
    .values(updated_at=_ORDERS.c.updated_at)
    for by in _UNIQUE
}


async def history_of(session: AsyncSession, order_id: str) -> Sequence[OrderHistory]:
    rows = await session.scalars(
        select(OrderHistory).where(OrderHistory.order_id == order_id).order_by(OrderHistory.id)
    )
    return rows.all()


async def with_history(session: AsyncSession, order_id: str) -> Order:
    order = await session.scalar(
        select(Order).where(Order.id == order_id).options(selectinload(Order.history))
    )
    if order is None:
        raise NotFound(f"No such order: '{order_id}'", param="id")
    return order


async def list_orders(
    session: AsyncSession,
    *,
    status: OrderStatus | None = None,
    customer: str | None = None,
    limit: int = 10,
    starting_after: str | None = None,
) -> tuple[Sequence[Order], bool]:
    """A page of orders with their history, newest first, and whether more follow."""
    query = select(Order).options(selectinload(Order.history))
    if status is not None:
        query = query.where(Order.status == status)
    if customer is not None:
        query = query.where(Order.customer == customer)
    return await newest_by_time(
        session, query, Order, "order", limit=limit, starting_after=starting_after
    )


async def move(session: AsyncSession, order: Order, target: OrderStatus, source: str) -> Decision:
    """Apply a transition if the state machine allows it, with its history entry."""
    return await _change(session, order, target, source, {})


async def sync_payment_intent(
    session: AsyncSession,
    order: Order,
    intent: dict[str, Any],
    source: str,
    *,
    failed: bool = False,
) -> Decision:
    """Record what Stripe says of the order's payment intent (the mirror row, the amounts) and
    move the order to the status it implies. `failed` marks a `payment_failed` report."""
    change = plan_payment_intent_sync(order, intent, source, is_postgres(session), failed=failed)
    return await _apply(session, order, change)


def plan_payment_intent_sync(
    order: Order,
    intent: dict[str, Any],
    source: str,
    postgres: bool,
    *,
    failed: bool = False,
    guard: CTE | None = None,
) -> Change:
    """What `sync_payment_intent` writes, for a caller that runs the statements itself (on
    Postgres: one statement). With a `guard` (Postgres only; see `_statements`) the statement
    is the guard's SELECT, and each write applies only if the guard's row names the order."""
    changes: dict[str, Any] = {
        "amount_received": max(order.amount_received, intent.get("amount_received") or 0)
    }
    if order.payment_intent is None:
        changes["payment_intent"] = intent["id"]
    target = status_for_payment_intent(intent["status"], failed=failed)
    return _plan(order, target, source, changes, _mirror(intent), postgres, guard)


async def link_payment_intent(
    executor: AsyncSession | AsyncEngine,
    order_id: str,
    intent: dict[str, Any],
    source: str,
    also: tuple[Update, dict[str, Any]] | None = None,
) -> bool:
    """`sync_payment_intent` for the common case, without loading or locking the order first:
    if the order is still `pending` with no payment intent, link this one, write its mirror
    and move the order as the intent's status says (with its history entry and event), in one
    statement on Postgres (committed on its own, app.pg_direct, when `executor` is the engine
    there; `also`, another UPDATE and its parameters, is part of it and applies only if the
    order is linked). False, with nothing written, when the order is no longer so (a webhook
    came first): then lock it and use `sync_payment_intent`."""
    target = status_for_payment_intent(intent["status"], failed=False)
    if target is not None and decide(OrderStatus.PENDING, target) is not Decision.APPLY:
        return False
    moves = target is not None
    now = utcnow()
    params = {f"m_{name}": value for name, value in _mirror(intent).items()}
    params.update(
        o_id=order_id,
        o_payment_intent=intent["id"],
        o_amount_received=intent.get("amount_received") or 0,
        o_updated_at=now,
    )
    if target is not None:
        params.update(o_status=target, h_from_status=OrderStatus.PENDING, h_to_status=target)
        params.update(h_source=source, h_at=now, e_id=new_id("evt"), e_type=event_type(target))
    if also is not None:
        params.update(also[1])
    first, *rest = _link_statements(
        is_postgres(executor), moves, also[0] if also is not None else None
    )
    if isinstance(executor, AsyncEngine):
        if not await pg_direct.fetch(executor, first, params):
            return False
    else:
        if (await executor.execute(first, params)).first() is None:
            return False
        for statement in rest:
            await executor.execute(statement, params)
    if target is not None:
        record_transition(order_id, OrderStatus.PENDING, target, source)
    return True


@functools.cache
def _link_statements(postgres: bool, moves: bool, also: Update | None) -> tuple[Executable, ...]:
    """The order's UPDATE, only while it is `pending` and unlinked (RETURNING its id and what
    its event shows), then the mirror's INSERT and, when the order `moves`, its history entry's
    and its event's, all taking the order from that UPDATE: as data-modifying CTEs on Postgres
    (nothing is inserted when the UPDATE matched nothing), in turn on SQLite (the event from the
    order as updated)."""
    columns = ("payment_intent", "amount_received", "updated_at", *(("status",) if moves else ()))
    linked = (
        update(_ORDERS)
        .where(
            _ORDERS.c.id == bindparam("o_id"),
            _ORDERS.c.status == OrderStatus.PENDING,
            _ORDERS.c.payment_intent.is_(None),
        )
        .values({name: _bind("o_", _ORDERS, name) for name in columns})
        .returning(*(_ORDERS.c[name] for name in _ORDER_OBJECT))
    )
    inserts = [(_MIRRORS, "m_", _MIRROR_VALUES)] + ([(_HISTORY, "h_", _HISTORY_VALUES)] * moves)
    if not postgres:
        assert also is None, "one statement only on Postgres"
        return (
            linked,
            *(
                insert(table).values(
                    {"order_id": bindparam("o_id"), **{n: _bind(p, table, n) for n in names}}
                )
                for table, p, names in inserts
            ),
            *((_event_insert(False, _ORDERS, None),) if moves else ()),
        )
    order = linked.cte("linked")
    ctes = [
        insert(table)
        .from_select(["order_id", *names], select(order.c.id, *(_bind(p, table, n) for n in names)))
        .cte(f"link_{table.name}")
        for table, p, names in inserts
    ]
    if moves:
        ctes.append(_event_insert(True, order, None).cte("link_events"))
    if also is not None:
        ctes.append(also.where(select(order.c.id).exists()).cte("link_also"))
    return (select(order.c.id).add_cte(*ctes),)


async def apply_refunded_amount(
    session: AsyncSession, order: Order, amount_refunded: int, source: str
) -> Decision:
    """Take the charge's refunded total (it only grows) and move to (partially_)refunded."""
    refunded = max(order.amount_refunded, amount_refunded)
    target = status_for_refunds(order.amount_received or order.amount, refunded)
    return await _change(session, order, target, source, {"amount_refunded": refunded})


async def _change(
    session: AsyncSession,
    order: Order,
    target: OrderStatus | None,
    source: str,
    changes: dict[str, Any],
) -> Decision:
    change = _plan(order, target, source, changes, None, is_postgres(session))
    return await _apply(session, order, change)


@dataclass(frozen=True, slots=True)
class Change:
    """An order's move to a target status (if the state machine allows it; none: it stays),
    with its history entry and its event, its other changed columns and (from a payment intent
    sync, the only writer of mirrors) its payment intent's mirror: the statements that write
    them, with their parameters. The mirror is an upsert with no query first: a new one is
    inserted; a known one takes the snapshot unless the order is behind it or the snapshot is
    older."""

    order_id: str
    decision: Decision
    changed: dict[str, Any]
    transition: tuple[str, str, str] | None  # from, to, source
    statements: tuple[Executable, ...]
    params: dict[str, Any]

    def written(self, order: Order) -> None:
        """Record the written change: the transition's log line and metric; the order's new
        values as its committed state (the session has nothing left to flush)."""
        if self.transition is not None:
            record_transition(self.order_id, *self.transition)
        for name, value in self.changed.items():
            set_committed_value(order, name, value)


async def _apply(session: AsyncSession, order: Order, change: Change) -> Decision:
    for statement in change.statements:
        await session.execute(statement, change.params)
    change.written(order)
    return change.decision


def _plan(
    order: Order,
    target: OrderStatus | None,
    source: str,
    changes: dict[str, Any],
    mirror: dict[str, Any] | None,
    postgres: bool,
    guard: CTE | None = None,
) -> Change:
    decision = Decision.SAME if target is None else decide(OrderStatus(order.status), target)
    now = utcnow()
    history = None
    transition = None
    if target is not None and decision is Decision.APPLY:
        history = {"from_status": order.status, "to_status": target, "source": source, "at": now}
        transition = (order.status, target, source)
        changes["status"] = target
    changed = {name: value for name, value in changes.items() if getattr(order, name) != value}
    if changed:
        changed["updated_at"] = now
    params: dict[str, Any] = {"o_id": order.id}
    for prefix, values in (("o_", changed), ("h_", history), ("m_", mirror)):
        params.update({prefix + name: value for name, value in (values or {}).items()})
    if target is not None and history is not None:
        params.update(e_id=new_id("evt"), e_type=event_type(target))
    statements = _statements(
        postgres,
        tuple(sorted(changed)),
        history is not None,
        mirror is not None,
        decision is Decision.STALE,
        guard,
    )
    return Change(order.id, decision, changed, transition, statements, params)


@functools.cache
def _statements(
    postgres: bool,
    columns: tuple[str, ...],
    history: bool,
    mirror: bool,
    keep_mirror: bool,
    guard: CTE | None = None,
) -> tuple[Executable, ...]:
    """The order's UPDATE of `columns`, its history entry and its event (a transition writes
    both, and `status` is then in `columns`), its mirror's upsert (those asked for), with their
    parameters named `o_*`, `h_*` (and `e_id`, `e_type`), `m_*`. Postgres gets them as one
    statement (all but one as data-modifying CTEs): one round trip; the event takes the order
    as the UPDATE returns it. SQLite has no such CTEs: one by one, the event from the order as
    updated.

    A `guard` (Postgres) is a CTE of one row or none, with an `order_id` column set when the
    order may be written (the caller's statement has locked it): the statement is then a SELECT
    of the guard's row with every write as a CTE that applies only if `order_id` is set. The
    writes lock nothing before the guard has run, since each waits for its EXISTS."""
    assert not history or "status" in columns, "a transition writes the order's status"
    held = None
    if guard is not None:
        assert postgres, "a guard is a CTE: Postgres only"
        held = select(guard.c.order_id).where(guard.c.order_id.is_not(None)).exists()
    parts: list[Insert | Update] = []
    if columns:
        changed = {name: _bind("o_", _ORDERS, name) for name in columns}
        order = update(_ORDERS).where(_ORDERS.c.id == bindparam("o_id")).values(changed)
        parts.append(order if held is None else order.where(held))
    if history:
        entry: dict[str, Any] = {"order_id": bindparam("o_id")}
        entry.update({name: _bind("h_", _HISTORY, name) for name in _HISTORY_VALUES})
        parts.append(_insert(insert(_HISTORY), entry, held))
    if mirror:
        parts.append(_upsert_mirror(postgres, keep_mirror, held))
    if history and postgres:
        # The event INSERT reads the UPDATE's RETURNING: the UPDATE is its CTE.
        order_update = cast(Update, parts.pop(0))
        returned = order_update.returning(*(_ORDERS.c[name] for name in _ORDER_OBJECT))
        event = _event_insert(True, returned.cte("write_order"), held)
        if guard is not None:
            return (select(guard).add_cte(event.cte("write_event"), *_ctes(parts)),)
        return (event.add_cte(*_ctes(parts)),)
    if history:
        parts.insert(2, _event_insert(False, _ORDERS, None))
    if guard is not None:
        return (select(guard).add_cte(*_ctes(parts)),)
    if not postgres or len(parts) < 2:
        return tuple(parts)
    main, *others = parts
    return (main.add_cte(*_ctes(others)),)


def _ctes(parts: Sequence[Insert | Update]) -> list[CTE]:
    return [part.cte(f"write_{n}") for n, part in enumerate(parts)]


def _insert(statement: _AnyInsert, values: dict[str, Any], held: Exists | None) -> _AnyInsert:
    """The INSERT of one row of `values`; with `held`, only if it is true (INSERT … SELECT)."""
    if held is None:
        return statement.values(values)
    return statement.from_select(list(values), select(*values.values()).where(held))


CREATED = "order.created"
# The last event of an order Stripe refused to create after its `order.created` was published;
# its object shows the order with this status, which no order row ever has.
DISCARDED = "order.discarded"
DISCARDED_STATUS = "discarded"
# The order's columns its events show, as they stand after the change.
_ORDER_OBJECT = (
    "id",
    "status",
    "amount",
    "currency",
    "amount_received",
    "amount_refunded",
    "customer",
    "payment_intent",
    "checkout_session",
    "description",
    "metadata",
)


def event_type(status: str) -> str:
    """The type of the event of an order's move to `status` (`order.paid`, …)."""
    return f"order.{status}"


def order_object(values: dict[str, Any]) -> dict[str, Any]:
    """The order as its event shows it, from the values written (a missing one is null)."""
    shown = {name: values.get(name) for name in _ORDER_OBJECT}
    shown["status"] = str(shown["status"])
    return {"object": "order", **shown}


def _event_values(order_id: Any, shown: Any) -> dict[str, Any]:
    """An order's event row: `e_id`, `e_type`, the history entry's time and source as its
    `created` and `cause`, `order_id` and `shown` (the order object): expressions or bound
    parameters."""
    return {
        "id": bindparam("e_id", type_=_EVENTS.c.id.type),
        "type": bindparam("e_type", type_=_EVENTS.c.type.type),
        "created": _bind("h_", _HISTORY, "at"),
        "object_type": literal("order", _EVENTS.c.object_type.type),
        "object_id": order_id,
        "object": shown,
        "cause": _bind("h_", _HISTORY, "source"),
    }


def _event_insert(postgres: bool, order: FromClause, held: Exists | None) -> Insert:
    """The event INSERT … SELECT of an order's change, the order object built from `order`: the
    UPDATE's RETURNING (a CTE, Postgres) or the `orders` table after the UPDATE (SQLite); with
    `held`, only if it is true (as `_insert`)."""
    pairs: list[ColumnElement[Any]] = []
    for name in _ORDER_OBJECT:
        value: ColumnElement[Any] = order.c[name]
        if name == "metadata" and not postgres:
            value = func.json(value)  # SQLite keeps JSON as text: embed it as JSON
        pairs += [literal(name), value]
    build = func.jsonb_build_object if postgres else func.json_object
    values = _event_values(order.c.id, build(literal("object"), literal("order"), *pairs))
    query = select(*values.values())
    if order is _ORDERS:
        query = query.where(_ORDERS.c.id == bindparam("o_id"))
    if held is not None:
        query = query.where(held)
    return insert(_EVENTS).from_select(list(values), query)


def _bind(prefix: str, table: Table, name: str) -> BindParameter[Any]:
    return bindparam(prefix + name, type_=table.c[name].type)


def _upsert_mirror(postgres: bool, keep: bool, held: Exists | None = None) -> Insert:
    snapshot = {name: _bind("m_", _MIRRORS, name) for name in _MIRROR_VALUES}
    statement = (pg_insert if postgres else sqlite_insert)(_MIRRORS)
    statement = _insert(statement, {"order_id": bindparam("o_id"), **snapshot}, held)
    if keep:
        return statement.on_conflict_do_nothing(index_elements=["stripe_id"])
    new = statement.excluded
    # A snapshot older than the mirror: anything but the final status once it is final.
    final = (_MIRRORS.c.status == "succeeded") | (_MIRRORS.c.status == "canceled")
    older = final & (_MIRRORS.c.status != new.status)
    return statement.on_conflict_do_update(
        index_elements=["stripe_id"], set_={name: new[name] for name in _SNAPSHOT}, where=~older
    )


def _mirror(intent: dict[str, Any]) -> dict[str, Any]:
    now = utcnow()
    return {
        "stripe_id": intent["id"],
        "status": intent["status"],
        "amount": intent["amount"],
        "amount_received": intent.get("amount_received") or 0,
        "amount_capturable": intent.get("amount_capturable") or 0,
        "currency": intent["currency"],
        "customer": _id(intent.get("customer")),
        "capture_method": intent.get("capture_method"),
        "latest_charge": _id(intent.get("latest_charge")),
        "created": intent["created"],
        "metadata": dict(intent.get("metadata") or {}),
        "data": {k: v for k, v in intent.items() if k != "client_secret"},
        "created_at": now,
        "updated_at": now,
    }


_HISTORY = cast(Table, OrderHistory.__table__)
_EVENTS = cast(Table, Event.__table__)
_HISTORY_VALUES = ("from_status", "to_status", "source", "at")
_MIRRORS = cast(Table, PaymentIntent.__table__)
# What a newer snapshot of a payment intent overwrites in its mirror.
_SNAPSHOT = (
    "status",
    "amount",
    "amount_received",
    "amount_capturable",
    "currency",
    "customer",
    "capture_method",
    "latest_charge",
    "created",
    "metadata",
    "data",
    "updated_at",
)
_MIRROR_VALUES = ("stripe_id", "created_at", *_SNAPSHOT)


def _id(value: Any) -> str | None:
    if isinstance(value, dict):
        return str(value["id"])
    return str(value) if value else None


async def record_refund(session: AsyncSession, order: Order, refund: dict[str, Any]) -> None:
    """Create or update the local mirror of a Stripe refund."""
    row = await session.scalar(select(Refund).where(Refund.stripe_id == refund["id"]))
    if row is None:
        session.add(
            Refund(
                stripe_id=refund["id"],
                order_id=order.id,
                payment_intent=_id(refund.get("payment_intent")) or order.payment_intent or "",
                amount=refund["amount"],
                currency=refund["currency"],
                status=refund.get("status"),
                reason=refund.get("reason"),
            )
        )
    else:
        row.status = refund.get("status")
        row.reason = refund.get("reason")
    await session.flush()


# A Checkout Session's `status` and `payment_status` before they settle.
_EARLY = frozenset({None, "open", "unpaid"})


async def record_checkout_session(
    session: AsyncSession, order: Order | None, checkout: dict[str, Any]
) -> None:
    """Create or update the local mirror of a Checkout Session (and link its payment intent)."""
    row = await session.scalar(
        select(CheckoutSession).where(CheckoutSession.stripe_id == checkout["id"])
    )
    fields = {
        "mode": checkout["mode"],
        "status": checkout.get("status"),
        "payment_status": checkout.get("payment_status"),
        "customer": _id(checkout.get("customer")),
        "payment_intent": _id(checkout.get("payment_intent")),
        "subscription": _id(checkout.get("subscription")),
        "amount_total": checkout.get("amount_total"),
        "currency": checkout.get("currency"),
        "url": checkout.get("url"),
    }
    if row is None:
        session.add(
            CheckoutSession(
                stripe_id=checkout["id"], order_id=order.id if order else None, **fields
            )
        )
    else:
        for name, value in fields.items():
            if name in ("status", "payment_status"):
                # Events arrive in any order: a session that is complete (or paid) stays so.
                if not (getattr(row, name) not in _EARLY and value in _EARLY):
                    setattr(row, name, value)
            elif value is not None:
                setattr(row, name, value)
    if order is not None:
        order.checkout_session = checkout["id"]
        if fields["payment_intent"] and order.payment_intent is None:
            order.payment_intent = fields["payment_intent"]
        if fields["customer"] and order.customer is None:
            order.customer = fields["customer"]
    await session.flush()
