"""The sandbox demo checkout (`/demo`): a real browser (Debian's Chromium through Playwright) picks
items, pays on the emulator's hosted page and watches the order reach `paid` on the success page.

The sandbox service is an extra process on the stack's database, started WITHOUT a Stripe key
(sandbox mode) against its own emulator, whose webhooks are signed with the sandbox secret."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, create_engine, text

from tests.fixtures.emulator import EmulatorProcess
from tests.fixtures.service import Stack, sandbox_service, sync_url

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOT = Path("/tmp/demo-success.png")
PLAN_SCREENSHOT = Path("/tmp/demo-plan-past-due.png")
needs_chromium = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="needs Debian's Chromium at /usr/bin/chromium (apt-get install -y chromium); "
    "CI installs it",
)


@dataclass
class Sandbox:
    url: str
    emulator: EmulatorProcess
    client: httpx.Client
    engine: Engine

    def rows(self, sql: str, **params: Any) -> list[dict[str, Any]]:
        with self.engine.begin() as connection:
            result = connection.execute(text(sql), params)
            return [dict(r._mapping) for r in result] if result.returns_rows else []

    def order_exists(self, order_id: str) -> bool:
        status = self.client.get(f"/demo/orders/{order_id}").status_code
        assert status in (200, 404)
        return status == 200

    def order(self, order_id: str) -> dict[str, Any]:
        response = self.client.get(f"/demo/orders/{order_id}")
        assert response.status_code == 200, response.text
        return dict(response.json())


@pytest.fixture(scope="module")
def sandbox(stack: Stack) -> Iterator[Sandbox]:
    with sandbox_service(stack, "demo") as (url, emulator, database_url):
        engine = create_engine(sync_url(database_url))
        try:
            with httpx.Client(base_url=url, timeout=30) as client:
                yield Sandbox(url, emulator, client, engine)
        finally:
            engine.dispose()


def _order_count(sandbox: Sandbox) -> int:
    return int(sandbox.rows("SELECT count(*) AS n FROM orders")[0]["n"])


def test_demo_is_404_outside_sandbox_mode(stack: Stack) -> None:
    for response in (
        stack.public.get("/demo"),
        stack.public.post("/demo/checkout", data={"price_tshirt": "1"}),
        stack.public.get("/demo/success", params={"session_id": "cs_test_x"}),
        stack.public.get("/demo/orders/ord_x"),
    ):
        assert response.status_code == 404, response.text
        assert response.json()["error"]["code"] == "resource_missing"


def test_demo_lists_the_one_time_catalogue(sandbox: Sandbox) -> None:
    response = sandbox.client.get("/demo")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    csp = response.headers["content-security-policy"]
    assert "script-src 'self'" in csp
    assert "unsafe-inline" not in csp
    page = response.text
    for name, price, amount in (
        ("T-shirt", "price_tshirt", "20.00 USD"),
        ("Coffee mug", "price_mug", "12.00 USD"),
        ("Sticker pack", "price_stickers", "5.00 USD"),
        ("Demo product", "price_123", "15.00 USD"),
    ):
        assert name in page
        assert f'name="{price}"' in page
        assert amount in page
    # The recurring price is a plan, offered by its own form, never in the one-time form.
    assert 'name="price_monthly"' not in page
    assert '<input type="hidden" name="price" value="price_monthly">' in page
    assert "Premium plan" in page
    assert "29.00 USD a month" in page
    assert "<script>" not in page
    assert "<style>" not in page
    assert sandbox.client.get("/demo/demo.js").headers["content-type"].startswith("text/javascript")
    assert sandbox.client.get("/demo/demo.css").headers["content-type"].startswith("text/css")


@pytest.mark.parametrize(
    ("form", "message"),
    [
        ({"price_tshirt": "0"}, "Pick at least one item."),
        ({"price_tshirt": "two"}, "Quantities are whole numbers."),
        ({"price_tshirt": "-1"}, "Quantities cannot be negative."),
        ({"price_tshirt": "11"}, "At most 10 of each item."),
        ({"price_monthly": "1"}, "Not in the catalogue: price_monthly."),
        ({"price_<script>": "1"}, "Not in the catalogue: price_&lt;script&gt;."),
    ],
)
def test_demo_checkout_refuses_a_bad_form(
    sandbox: Sandbox, form: dict[str, str], message: str
) -> None:
    before = _order_count(sandbox)

    response = sandbox.client.post("/demo/checkout", data=form)

    assert response.status_code == 400
    assert message in response.text
    assert "<script>" not in response.text
    assert _order_count(sandbox) == before


@pytest.mark.parametrize(
    ("form", "message"),
    [
        ({}, "Pick a plan."),
        ({"price": "price_tshirt"}, "Not a plan: price_tshirt."),
        ({"price": "price_<b>"}, "Not a plan: price_&lt;b&gt;."),
    ],
)
def test_demo_subscribe_refuses_what_is_not_a_plan_and_makes_nothing(
    sandbox: Sandbox, form: dict[str, str], message: str
) -> None:
    before = sandbox.rows("SELECT count(*) AS n FROM customers")[0]["n"]
    clocks = _test_clocks(sandbox)

    response = sandbox.client.post("/demo/subscribe", data=form)

    assert response.status_code == 400
    assert message in response.text
    assert sandbox.rows("SELECT count(*) AS n FROM customers")[0]["n"] == before
    assert _test_clocks(sandbox) == clocks


def _test_clocks(sandbox: Sandbox) -> list[str]:
    response = httpx.get(
        f"{sandbox.emulator.url}/v1/test_helpers/test_clocks",
        params={"limit": 100},
        headers={"Authorization": "Bearer sk_test_demo"},
    )
    response.raise_for_status()
    return [clock["id"] for clock in response.json()["data"]]


def test_demo_plan_pages_for_unknown_sessions_are_404(sandbox: Sandbox) -> None:
    response = sandbox.client.get("/demo/plan", params={"session_id": "cs_test_nope"})
    assert response.status_code == 404
    assert response.json()["error"]["param"] == "session_id"
    for path in ("/demo/plans/cs_test_nope/advance", "/demo/plans/cs_test_nope/failing-card"):
        response = sandbox.client.post(path)
        assert response.status_code == 404
        assert response.json()["error"]["param"] == "session_id"


def test_demo_pages_for_unknown_sessions_and_orders_are_404(sandbox: Sandbox) -> None:
    response = sandbox.client.get("/demo/success", params={"session_id": "cs_test_nope"})
    assert response.status_code == 404
    assert response.json()["error"]["param"] == "session_id"
    response = sandbox.client.get("/demo/orders/ord_nope")
    assert response.status_code == 404
    assert response.json()["error"]["param"] == "id"


def test_demo_orders_only_shows_demo_orders(sandbox: Sandbox) -> None:
    sandbox.rows(
        "INSERT INTO orders (id, status, amount, currency, amount_received, amount_refunded, "
        "metadata, attempts, created_at, updated_at) VALUES ('ord_not_from_the_demo', "
        "'pending', 1500, 'usd', 0, 0, '{}', 0, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
    )
    assert sandbox.order_exists("ord_not_from_the_demo") is False
    sandbox.rows(
        "UPDATE orders SET metadata = '{\"source\": \"demo\"}' WHERE id = 'ord_not_from_the_demo'"
    )
    assert sandbox.order_exists("ord_not_from_the_demo") is True


@needs_chromium
def test_a_browser_buys_from_the_demo_shop_until_paid(sandbox: Sandbox, stack: Stack) -> None:
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            # Every failed load but the browser's own favicon requests (neither server has one).
            failures: list[str] = []
            page.on(
                "response",
                lambda r: (
                    failures.append(f"{r.status} {r.url}")
                    if r.status >= 400 and not r.url.endswith("/favicon.ico")
                    else None
                ),
            )
            page.on("pageerror", lambda error: failures.append(str(error)))

            page.goto(f"{sandbox.url}/demo")
            page.get_by_label("Quantity of T-shirt").fill("2")
            page.get_by_label("Quantity of Coffee mug").fill("1")
            page.get_by_role("button", name="Pay").click()

            page.wait_for_url(f"{sandbox.emulator.url}/checkout/pay/**")
            expect(page.locator("tr.total")).to_contain_text("$52.00")
            page.select_option("#payment_method", "pm_card_visa")
            page.get_by_role("button", name="Pay").click()

            page.wait_for_url(f"{sandbox.url}/demo/success?session_id=cs_*")
            expect(page.locator("#status")).to_have_text("paid", timeout=15_000)
            expect(page.locator("#history tr")).to_have_count(2)
            expect(page.locator("#history")).to_contain_text("pending → paid")
            order_id = page.locator("#order").get_attribute("data-order-id")
            page.screenshot(path=str(SCREENSHOT), full_page=True)
            assert failures == []
        finally:
            browser.close()

    assert order_id is not None
    order = sandbox.order(order_id)
    assert order["status"] == "paid"
    assert (order["amount"], order["currency"], order["amount_received"]) == (5200, "usd", 5200)
    assert order["metadata"] == {"source": "demo"}
    assert [(h["from"], h["to"]) for h in order["history"]] == [
        (None, "pending"),
        ("pending", "paid"),
    ]
    assert order["history"][1]["source"].startswith("evt_")
    [session] = sandbox.rows(
        "SELECT stripe_id, order_id FROM checkout_sessions WHERE order_id = :id", id=order_id
    )
    assert session["stripe_id"] == order["checkout_session"]
    intent = sandbox.rows(
        "SELECT status, amount FROM payment_intents WHERE order_id = :id", id=order_id
    )
    assert intent == [{"status": "succeeded", "amount": 5200}]


@needs_chromium
def test_a_browser_subscribes_to_a_plan_and_follows_it_over_the_test_clock(
    sandbox: Sandbox,
) -> None:
    """The plan on the demo: subscribe on the hosted page (a customer on a test clock of its
    own), see the first invoice paid; advance the clock past the renewal, see the second paid;
    switch to a card that declines and advance again: the renewal fails, the subscription is
    `past_due` and, with no grace period, the customer is no longer entitled."""
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            failures: list[str] = []
            page.on(
                "response",
                lambda r: (
                    failures.append(f"{r.status} {r.url}")
                    if r.status >= 400 and not r.url.endswith("/favicon.ico")
                    else None
                ),
            )
            page.on("pageerror", lambda error: failures.append(str(error)))

            page.goto(f"{sandbox.url}/demo")
            page.get_by_role("button", name="Subscribe to Premium plan").click()
            page.wait_for_url(f"{sandbox.emulator.url}/checkout/pay/**")
            page.select_option("#payment_method", "pm_card_visa")
            page.get_by_role("button", name="Subscribe").click()

            page.wait_for_url(f"{sandbox.url}/demo/plan?session_id=cs_*")
            status, invoices = page.locator("#plan-status"), page.locator("#invoices tr")
            expect(status).to_have_text("active", timeout=15_000)
            expect(invoices).to_have_count(1, timeout=15_000)
            expect(invoices.nth(0)).to_contain_text("paid")
            expect(page.locator("#access")).to_have_text("yes")
            first_end = page.locator("#period-end").inner_text()

            page.locator("#advance").click()
            expect(invoices).to_have_count(2, timeout=15_000)
            expect(invoices.nth(1)).to_contain_text("subscription_cycle")
            expect(invoices.nth(1)).to_contain_text("paid", timeout=15_000)
            expect(page.locator("#period-end")).not_to_have_text(first_end)
            expect(status).to_have_text("active")

            expect(page.locator("#failing-card")).to_be_enabled()
            page.locator("#failing-card").click()
            expect(page.locator("#advance")).to_be_enabled(timeout=15_000)
            page.locator("#advance").click()
            expect(status).to_have_text("past_due", timeout=15_000)
            expect(invoices).to_have_count(3)
            expect(invoices.nth(2)).to_contain_text("open")
            expect(page.locator("#access")).to_have_text("no")
            session_id = page.locator("#plan").get_attribute("data-session")
            page.screenshot(path=str(PLAN_SCREENSHOT), full_page=True)
            assert failures == []
        finally:
            browser.close()

    [checkout] = sandbox.rows(
        "SELECT subscription, customer FROM checkout_sessions WHERE stripe_id = :id", id=session_id
    )
    [subscription] = sandbox.rows(
        "SELECT status, customer, test_clock FROM subscriptions WHERE stripe_id = :id",
        id=checkout["subscription"],
    )
    assert subscription["status"] == "past_due"
    assert subscription["customer"] == checkout["customer"]
    assert subscription["test_clock"] is not None
    invoices_kept = sandbox.rows(
        "SELECT billing_reason, status, amount_due, amount_paid FROM invoices "
        "WHERE subscription = :id ORDER BY created",
        id=checkout["subscription"],
    )
    assert invoices_kept == [
        {
            "billing_reason": "subscription_create",
            "status": "paid",
            "amount_due": 2900,
            "amount_paid": 2900,
        },
        {
            "billing_reason": "subscription_cycle",
            "status": "paid",
            "amount_due": 2900,
            "amount_paid": 2900,
        },
        {
            "billing_reason": "subscription_cycle",
            "status": "open",
            "amount_due": 2900,
            "amount_paid": 0,
        },
    ]
    entitlements = sandbox.client.get(f"/demo/plans/{session_id}").json()
    assert entitlements["entitled"] is False
