"""The documented reads, each once over HTTP and once in-process with its SQL captured.

`reads(sample)` lists every documented list and every search form the service accepts
(`GET /orders`, `GET /payment-intents`, `GET /payment-intents/search`), with values taken from
the loaded data (`Sample`). `statements(session, read)` runs one through the service's own
functions and returns the SQL it sent, with its parameters, so `bench.scale` and
`tests/app/test_search_plans.py` can `EXPLAIN` exactly what the API runs. `seq_scans(plan)` names
the big tables a JSON plan reads sequentially.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import OrderStatus
from app.orders import service as orders
from app.payment_intents import search
from app.payment_intents import service as intents

BIG_TABLES = ("orders", "payment_intents")
PAGE = 10
DEEP = 10_000  # the page number of the "deep page" reads


@dataclass(frozen=True)
class Sample:
    """Values that occur in the data, found after the load."""

    customer: str  # a typical customer (a few orders)
    hot_customer: str  # the customer with the most orders
    order_ref: str  # a `metadata['order_id']` value
    other_order_ref: str
    created_mid: int  # the median `created`
    created_old: int  # `created` of the oldest 1 %
    created_exact: int  # one row's `created`
    amount_high: int  # above all but 0.1 % of amounts
    amount_exact: int
    # keyset cursors `DEEP` pages down
    deep_order: str  # in all orders
    deep_paid_order: str  # in the paid orders
    deep_intent: str  # in all intents (stripe id)
    deep_succeeded_intent: str  # in the succeeded intents
    deep_search_position: tuple[int, int]  # (created, id) for status:'succeeded'


@dataclass(frozen=True)
class Read:
    name: str
    path: str
    params: dict[str, str] = field(default_factory=dict)
    # why this form is slow, if it cannot be made fast (printed beside its figures)
    note: str = ""


SEARCH = "/payment-intents/search"


def reads(s: Sample) -> list[Read]:
    deep_token = search.page_token("status:'succeeded'", *s.deep_search_position)
    queries = [
        ("status", "status:'succeeded'"),
        ("status (rare)", "status:'requires_capture'"),
        ("status (no match)", "status:'nonexistent'"),
        ("currency", "currency:'jpy'"),
        ("currency (upper case)", "currency:'JPY'"),
        ("customer", f"customer:'{s.customer}'"),
        ("customer (hot)", f"customer:'{s.hot_customer}'"),
        ("amount >", "amount>1000"),
        ("amount > (rare)", f"amount>{s.amount_high}"),
        ("amount <", "amount<500"),
        ("amount >=", f"amount>={s.amount_high}"),
        ("amount <=", "amount<=100"),
        ("amount :", f"amount:{s.amount_exact}"),
        ("created >", f"created>{s.created_mid}"),
        ("created <", f"created<{s.created_old}"),
        ("created >=", f"created>={s.created_mid}"),
        ("created <=", f"created<={s.created_old}"),
        ("created :", f"created:{s.created_exact}"),
        ("metadata order_id", f"metadata['order_id']:'{s.order_ref}'"),
        ("metadata channel (5 %)", "metadata['channel']:'pos'"),
        ("metadata campaign (case)", "metadata['campaign']:'blackfriday'"),
        ("metadata (no match)", "metadata['order_id']:'no-such-order'"),
        ("status AND customer", f"status:'succeeded' AND customer:'{s.customer}'"),
        ("amount AND currency", f"amount>{s.amount_high} AND currency:'eur'"),
        ("status AND metadata", f"status:'succeeded' AND metadata['order_id']:'{s.order_ref}'"),
        ("status OR status", "status:'requires_capture' OR status:'processing'"),
        (
            "metadata OR metadata",
            f"metadata['order_id']:'{s.order_ref}' OR metadata['order_id']:'{s.other_order_ref}'",
        ),
        (
            "customer OR metadata",
            f"customer:'{s.customer}' OR metadata['order_id']:'{s.order_ref}'",
        ),
        ("-status", "-status:'succeeded'"),
        ("-status AND currency", "-status:'succeeded' AND currency:'gbp'"),
        ("-metadata", "-metadata['channel']:'web'"),
        ("customer:null", "customer:null"),
        ("metadata:null", "metadata['campaign']:null"),
        ("-customer:null", "-customer:null"),
        ("-status (dominant)", "-status:'requires_payment_method'"),
    ]
    notes = {
        "status (no match)": "no index range can prove absence cheaper than its own lookup",
    }
    out = [
        Read("orders, newest", "/orders"),
        Read("orders by status", "/orders", {"status": "paid"}),
        Read("orders by customer", "/orders", {"customer": s.customer}),
        Read(
            "orders by hot customer, paid",
            "/orders",
            {"customer": s.hot_customer, "status": "paid"},
        ),
        Read("orders, page 10,000", "/orders", {"starting_after": s.deep_order}),
        Read(
            "orders paid, page 10,000",
            "/orders",
            {"status": "paid", "starting_after": s.deep_paid_order},
        ),
        Read("intents, newest", "/payment-intents"),
        Read("intents by status", "/payment-intents", {"status": "succeeded"}),
        Read("intents by rare status", "/payment-intents", {"status": "requires_capture"}),
        Read("intents by hot customer", "/payment-intents", {"customer": s.hot_customer}),
        Read("intents, page 10,000", "/payment-intents", {"starting_after": s.deep_intent}),
        Read(
            "intents succeeded, page 10,000",
            "/payment-intents",
            {"status": "succeeded", "starting_after": s.deep_succeeded_intent},
        ),
    ]
    out += [
        Read(f"search {name}", SEARCH, {"query": q}, notes.get(name, "")) for name, q in queries
    ]
    out.append(
        Read(
            "search status, page 10,000",
            SEARCH,
            {"query": "status:'succeeded'", "page": deep_token},
        )
    )
    return out


@contextmanager
def captured(session: AsyncSession) -> Iterator[list[tuple[str, Any]]]:
    """Every statement `session` sends meanwhile, with its driver-level parameters."""
    sent: list[tuple[str, Any]] = []
    engine = session.bind.sync_engine  # type: ignore[union-attr]

    def listen(conn: Any, cursor: Any, statement: str, parameters: Any, *args: Any) -> None:
        sent.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", listen)
    try:
        yield sent
    finally:
        event.remove(engine, "before_cursor_execute", listen)


async def run(session: AsyncSession, read: Read) -> int:
    """The read through the service's functions, as its route calls them; the rows returned."""
    p = read.params
    if read.path == "/orders":
        status = OrderStatus(p["status"]) if "status" in p else None
        rows, _ = await orders.list_orders(
            session,
            status=status,
            customer=p.get("customer"),
            limit=PAGE,
            starting_after=p.get("starting_after"),
        )
        return len(rows)
    if read.path == "/payment-intents":
        page = await intents.list_intents(
            session,
            status=p.get("status"),
            customer=p.get("customer"),
            order=None,
            limit=PAGE,
            starting_after=p.get("starting_after"),
        )
        return len(page.rows)
    result = await intents.search_intents(session, p["query"], limit=PAGE, page=p.get("page"))
    return len(result.rows)


async def statements(session: AsyncSession, read: Read) -> tuple[int, list[tuple[str, Any]]]:
    """The rows the read returns and the SQL it sends (the page's query, its cursor lookup, the
    orders' history)."""
    with captured(session) as sent:
        count = await run(session, read)
    return count, sent


def seq_scans(plan: Any) -> list[str]:
    """The big tables a JSON plan (`EXPLAIN (FORMAT JSON)`) scans sequentially."""
    found: list[str] = []
    stack = [plan[0]["Plan"]]
    while stack:
        node = stack.pop()
        if node.get("Node Type") == "Seq Scan" and node.get("Relation Name") in BIG_TABLES:
            found.append(node["Relation Name"])
        stack.extend(node.get("Plans", []))
    return found
