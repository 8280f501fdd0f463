"""The seed's frontend in a real browser, offline: `/demo/elements` prices a cart through
`POST /api/create-payment-intent`, loads Stripe.js from `GET /api/config` (the emulator's copy at
`/v3`), mounts the Payment Element and confirms with `stripe.confirmPayment`; the return page
follows the order until Stripe's webhook has made it `paid`.

A sandbox service (no Stripe key, with an API key so the tests read orders through the API) on
its own database, with its own emulator whose signed webhooks reach it for real; Debian's Chromium
through Playwright. Each browser test saves a screenshot of its end state under
`artifacts/screenshots/` (git-ignored)."""

from __future__ import annotations

import contextlib
import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
import stripe

from tests.app.test_demo import CHROMIUM, CHROMIUM_ARGS, needs_chromium
from tests.fixtures.emulator import (
    EmulatorProcess,
    make_client,
)
from tests.fixtures.service import API_KEY, Stack, sandbox_service

if TYPE_CHECKING:
    from playwright.sync_api import Page

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "artifacts" / "screenshots"
VISA = "4242 4242 4242 4242"
THREE_D_SECURE = "4000 0027 6000 3184"
INSUFFICIENT_FUNDS = "4000 0000 0000 9995"
DECLINED = "4000 0000 0000 0002"
CARD_DIGITS = [n.replace(" ", "") for n in (VISA, THREE_D_SECURE, INSUFFICIENT_FUNDS, DECLINED)]


@dataclass
class Shop:
    url: str
    emulator: EmulatorProcess
    api: httpx.Client
    public: httpx.Client
    stripe: stripe.StripeClient

    def order(self, order_id: str) -> dict[str, Any]:
        response = self.api.get(f"/orders/{order_id}")
        assert response.status_code == 200, response.text
        return dict(response.json())

    def wait_for_order(self, order_id: str, status: str) -> dict[str, Any]:
        """The order once Stripe's webhooks have moved it to `status` (the page polls the same
        way); fails with the order as it is after 15 s."""
        for _ in range(300):
            order = self.order(order_id)
            if order["status"] == status:
                return order
            time.sleep(0.05)
        raise AssertionError(self.order(order_id))

    def orders(self) -> int:
        response = self.api.get("/orders", params={"limit": 100})
        assert response.status_code == 200, response.text
        return len(response.json()["data"])

    def intents(self) -> int:
        return len(self.stripe.v1.payment_intents.list(params={"limit": 100}).data)


@pytest.fixture(scope="module")
def shop(stack: Stack) -> Iterator[Shop]:
    with sandbox_service(stack, "elements", API_KEYS=API_KEY) as (url, emulator, _):
        sdk = make_client(emulator.url, api_key="sk_test_elements")
        api = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=30)
        public = httpx.Client(base_url=url, timeout=30)
        try:
            yield Shop(url, emulator, api, public, sdk)
        finally:
            api.close()
            public.close()
            sdk._requestor._client.close()  # type: ignore[union-attr]


@dataclass
class Browsing:
    page: Page
    errors: list[str] = field(default_factory=list)
    # Every request the page (or a frame in it) sent to the service: method, URL and body.
    to_service: list[str] = field(default_factory=list)

    def card_data_sent_to_the_service(self) -> list[str]:
        return [r for r in self.to_service if any(n in r for n in CARD_DIGITS)]


@contextlib.contextmanager
def browsing(shop: Shop) -> Iterator[Browsing]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            seen = Browsing(page)
            page.on("pageerror", lambda error: seen.errors.append(str(error)))
            page.on(
                "response",
                lambda r: seen.errors.append(f"{r.status} {r.url}") if r.status >= 500 else None,
            )
            page.on(
                "request",
                lambda r: (
                    seen.to_service.append(f"{r.method} {r.url} {r.post_data or ''}")
                    if r.url.startswith(shop.url)
                    else None
                ),
            )
            yield seen
        finally:
            browser.close()


def screenshot(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def open_cart(page: Page, shop: Shop, quantities: dict[str, int]) -> None:
    page.goto(f"{shop.url}/demo/elements")
    for name, quantity in quantities.items():
        page.get_by_label(f"Quantity of {name}").fill(str(quantity))


def continue_to_payment(page: Page) -> str:
    """Continue from the cart to the Payment Element; the order the server made for it."""
    from playwright.sync_api import expect

    page.get_by_role("button", name="Continue to payment").click()
    expect(page.locator("#payment-form")).to_be_visible()
    expect(page.get_by_role("button", name="Pay now")).to_be_enabled()
    order_id = page.locator("#payment-form").get_attribute("data-order-id")
    assert order_id is not None
    assert order_id.startswith("ord_")
    return order_id


def enter_card(page: Page, number: str) -> None:
    frame = page.frame_locator("iframe[title='Secure payment input frame']")
    frame.get_by_label("Card number").fill(number)
    frame.get_by_label("Expiration date").fill("12 / 34")
    frame.get_by_label("Security code").fill("123")
    frame.get_by_label("ZIP / Postal code").fill("10001")


def paid_on_the_return_page(page: Page, shop: Shop) -> str:
    from playwright.sync_api import expect

    page.wait_for_url(re.compile(re.escape(f"{shop.url}/demo/elements/complete?") + ".*"))
    expect(page.locator("#status")).to_have_text("paid", timeout=15_000)
    expect(page.locator("#stripe-message")).to_have_text("Payment succeeded!")
    query = page.url.split("?", 1)[1]
    assert "payment_intent=pi_" in query
    assert "payment_intent_client_secret=pi_" in query
    assert "redirect_status=succeeded" in query
    order_id = page.locator("#order").get_attribute("data-order-id")
    assert order_id is not None
    return order_id


def the_intent(shop: Shop, order: dict[str, Any]) -> stripe.PaymentIntent:
    return shop.stripe.v1.payment_intents.retrieve(
        order["payment_intent"], params={"expand": ["latest_charge"]}
    )


# ---------------------------------------------------------------------------------------------
# Without a browser


def test_the_shop_links_the_stripe_js_checkout(shop: Shop) -> None:
    assert 'href="/demo/elements"' in shop.public.get("/demo").text


def test_the_checkout_page_lets_in_only_stripe_js(shop: Shop) -> None:
    response = shop.public.get("/demo/elements")

    assert response.status_code == 200
    csp = response.headers["content-security-policy"]
    assert f"script-src 'self' {shop.emulator.url};" in csp
    assert f"frame-src {shop.emulator.url};" in csp
    assert "unsafe-inline" not in csp
    assert "<script>" not in response.text
    for name in ("T-shirt", "Coffee mug", "Sticker pack"):
        assert f'aria-label="Quantity of {name}"' in response.text
    script = shop.public.get("/demo/elements.js")
    assert script.headers["content-type"].startswith("text/javascript")
    # The page uses Stripe.js's public API only, loaded from where /api/config says.
    for call in ("stripe.elements(", 'elements.create("payment"', "stripe.confirmPayment("):
        assert call in script.text
    assert "config.stripeJsUrl" in script.text


def test_the_order_of_a_payment_needs_its_client_secret(shop: Shop) -> None:
    created = shop.public.post(
        "/api/create-payment-intent", json={"items": [{"price": "price_mug", "quantity": 1}]}
    )
    assert created.status_code == 200, created.text
    answer = created.json()
    other = shop.public.post(
        "/api/create-payment-intent", json={"items": [{"price": "price_mug", "quantity": 2}]}
    ).json()

    def lookup(secret: str) -> httpx.Response:
        return shop.public.get(
            "/demo/elements/order",
            params={
                "payment_intent": answer["paymentIntentId"],
                "payment_intent_client_secret": secret,
            },
        )

    found = lookup(answer["clientSecret"])
    assert found.status_code == 200, found.text
    assert (found.json()["id"], found.json()["amount"]) == (answer["orderId"], 1200)
    for wrong in (other["clientSecret"], answer["paymentIntentId"] + "_secret_x", "x"):
        refused = lookup(wrong)
        assert refused.status_code == 404
        assert refused.json()["error"]["param"] == "payment_intent"


def test_the_stripe_js_pages_are_404_outside_sandbox(stack: Stack) -> None:
    for path in ("/demo/elements", "/demo/elements/complete", "/demo/elements.js"):
        assert stack.public.get(path).status_code == 404


# ---------------------------------------------------------------------------------------------
# In Chromium


@needs_chromium
def test_a_visa_payment_ends_paid_through_the_webhook(shop: Shop) -> None:
    from playwright.sync_api import expect

    with browsing(shop) as seen:
        page = seen.page
        open_cart(page, shop, {"T-shirt": 2, "Coffee mug": 1})
        expect(page.locator("#estimate")).to_have_text("$52.00")
        order_id = continue_to_payment(page)
        expect(page.locator("#total")).to_have_text("$52.00")
        enter_card(page, VISA)
        page.get_by_role("button", name="Pay now").click()

        assert paid_on_the_return_page(page, shop) == order_id
        expect(page.locator("#history tr")).to_have_count(2)
        screenshot(page, "elements-visa-paid")
        assert seen.errors == []
        assert seen.card_data_sent_to_the_service() == []

    order = shop.order(order_id)
    assert (order["status"], order["amount"], order["amount_received"]) == ("paid", 5200, 5200)
    assert [(h["from"], h["to"]) for h in order["history"]] == [
        (None, "pending"),
        ("pending", "paid"),
    ]
    assert order["history"][1]["source"].startswith("evt_")
    intent = the_intent(shop, order)
    assert (intent.status, intent.amount, intent.currency) == ("succeeded", 5200, "usd")
    charge = intent.latest_charge
    assert isinstance(charge, stripe.Charge)
    assert charge.payment_method_details is not None
    card = charge.payment_method_details.card
    assert card is not None
    assert (card.brand, card.last4) == ("visa", "4242")


@needs_chromium
def test_a_three_d_secure_card_goes_through_the_challenge_page(shop: Shop) -> None:
    from playwright.sync_api import expect

    with browsing(shop) as seen:
        page = seen.page
        open_cart(page, shop, {"Sticker pack": 3})
        order_id = continue_to_payment(page)
        enter_card(page, THREE_D_SECURE)
        page.get_by_role("button", name="Pay now").click()

        page.wait_for_url(re.compile(re.escape(f"{shop.emulator.url}/_emulator/3ds/pi_") + ".*"))
        expect(page.get_by_text("3D Secure 2 test page")).to_be_visible()
        assert shop.order(order_id)["status"] in ("pending", "requires_action")
        page.get_by_role("button", name="Complete").click()

        assert paid_on_the_return_page(page, shop) == order_id
        screenshot(page, "elements-3ds-paid")
        assert seen.errors == []
        assert seen.card_data_sent_to_the_service() == []

    order = shop.order(order_id)
    assert (order["status"], order["amount_received"]) == ("paid", 1500)
    assert "requires_action" in [h["to"] for h in order["history"]]
    intent = the_intent(shop, order)
    assert (intent.status, intent.amount) == ("succeeded", 1500)
    charge = intent.latest_charge
    assert isinstance(charge, stripe.Charge)
    details = charge.payment_method_details
    assert details is not None
    assert details.card is not None
    assert details.card.three_d_secure is not None
    assert details.card.three_d_secure.result == "authenticated"


@needs_chromium
def test_a_declined_card_shows_the_decline_and_the_same_page_then_pays(shop: Shop) -> None:
    from playwright.sync_api import expect

    with browsing(shop) as seen:
        page = seen.page
        open_cart(page, shop, {"T-shirt": 1})
        order_id = continue_to_payment(page)
        enter_card(page, INSUFFICIENT_FUNDS)
        page.get_by_role("button", name="Pay now").click()

        message = page.locator("#payment-message")
        expect(message).to_have_text("Your card has insufficient funds.")
        assert page.url == f"{shop.url}/demo/elements"
        failed = shop.wait_for_order(order_id, "payment_failed")
        assert failed["amount_received"] == 0
        screenshot(page, "elements-declined-message")

        enter_card(page, DECLINED)
        page.get_by_role("button", name="Pay now").click()
        expect(message).to_have_text("Your card was declined.")
        assert shop.order(order_id)["status"] == "payment_failed"

        enter_card(page, VISA)
        page.get_by_role("button", name="Pay now").click()
        assert paid_on_the_return_page(page, shop) == order_id
        expect(page.locator("#retry")).to_be_hidden()
        screenshot(page, "elements-declined-then-paid")
        assert seen.errors == []
        assert seen.card_data_sent_to_the_service() == []

    order = shop.order(order_id)
    assert (order["status"], order["amount"], order["amount_received"]) == ("paid", 2000, 2000)
    assert [h["to"] for h in order["history"]][0] == "pending"
    assert [h["to"] for h in order["history"]][-1] == "paid"
    assert "payment_failed" in [h["to"] for h in order["history"]]
    intent = the_intent(shop, order)
    assert (intent.status, intent.amount) == ("succeeded", 2000)
    charges = shop.stripe.v1.charges.list(params={"payment_intent": intent.id}).data
    assert sorted(c.status for c in charges) == ["failed", "failed", "succeeded"]


@needs_chromium
def test_an_amount_changed_in_the_page_does_not_change_what_is_charged(shop: Shop) -> None:
    from playwright.sync_api import expect

    with browsing(shop) as seen:
        page = seen.page
        open_cart(page, shop, {})
        # The customer edits the page: every price shown as one cent.
        page.evaluate(
            """() => document.querySelectorAll("[data-unit-amount]").forEach((cell) => {
                cell.setAttribute("data-unit-amount", "1");
                cell.textContent = "0.01 USD";
            })"""
        )
        page.get_by_label("Quantity of T-shirt").fill("2")
        expect(page.locator("#estimate")).to_have_text("$0.02")
        order_id = continue_to_payment(page)
        expect(page.locator("#total")).to_have_text("$40.00")
        enter_card(page, VISA)
        page.get_by_role("button", name="Pay now").click()
        assert paid_on_the_return_page(page, shop) == order_id
        screenshot(page, "elements-tampered-page-paid-full-price")
        assert seen.errors == []

    order = shop.order(order_id)
    assert (order["amount"], order["amount_received"]) == (4000, 4000)
    intent = the_intent(shop, order)
    assert (intent.amount, intent.amount_received) == (4000, 4000)


@needs_chromium
def test_an_amount_posted_by_the_page_is_refused_and_nothing_is_made(shop: Shop) -> None:
    from playwright.sync_api import Route, expect

    orders, intents = shop.orders(), shop.intents()

    def with_an_amount(route: Route) -> None:
        body = json.loads(route.request.post_data or "{}")
        route.continue_(post_data=json.dumps({**body, "amount": 1, "currency": "usd"}))

    with browsing(shop) as seen:
        page = seen.page
        page.route("**/api/create-payment-intent", with_an_amount)
        open_cart(page, shop, {"Coffee mug": 1})
        page.get_by_role("button", name="Continue to payment").click()

        expect(page.locator("#error")).to_contain_text("computed by the server")
        expect(page.locator("#payment-form")).to_be_hidden()
        screenshot(page, "elements-posted-amount-refused")
        assert seen.errors == []

    assert (shop.orders(), shop.intents()) == (orders, intents)


# ---------------------------------------------------------------------------------------------
# Stripe.js's other calls, driven from a page of the shop as a frontend's own code would


def with_stripe_js(page: Page, shop: Shop, element: str | None, client_secret: str = "") -> None:
    """A shop page with the emulator's Stripe.js loaded and, if `element` is given, that Element
    mounted (`window.stripeUnderTest`, `window.elementUnderTest`, its change events in
    `window.changes`)."""
    page.goto(f"{shop.url}/demo/elements")
    page.evaluate(
        """async ([url, key, type, clientSecret]) => {
            await new Promise((resolve, reject) => {
                const script = document.createElement("script");
                script.src = url;
                script.onload = resolve;
                script.onerror = reject;
                document.head.appendChild(script);
            });
            window.stripeUnderTest = Stripe(key);
            window.changes = [];
            if (!type) { return; }
            const options = clientSecret ? {clientSecret} : {};
            window.elementsUnderTest = window.stripeUnderTest.elements(options);
            const element = window.elementsUnderTest.create(type);
            const node = document.createElement("div");
            node.id = "element-under-test";
            document.querySelector("main").prepend(node);
            element.on("change", (event) => window.changes.push(event));
            const ready = new Promise((resolve) => element.on("ready", resolve));
            element.mount("#element-under-test");
            window.elementUnderTest = element;
            await ready;
        }""",
        [f"{shop.emulator.url}/v3", "pk_test_elements", element, client_secret],
    )


def start(page: Page, call: str, argument: Any = None) -> None:
    """Run `call` (a JS expression of `stripe`, `elements`, `element` and `arg`) without
    waiting: its result, or what it threw, lands in `window.outcome`."""
    page.evaluate(
        "arg => { const stripe = window.stripeUnderTest; const elements = window.elementsUnderTest;"
        " const element = window.elementUnderTest; window.outcome = undefined;"
        f" Promise.resolve().then(() => {call}).then("
        " (result) => { window.outcome = JSON.parse(JSON.stringify(result)); },"
        " (error) => { window.outcome = {thrown: error.name + ': ' + error.message}; }); }",
        argument,
    )


def outcome(page: Page) -> dict[str, Any]:
    page.wait_for_function("() => window.outcome !== undefined")
    return dict(page.evaluate("() => window.outcome"))


def enter_in(page: Page, title: str, number: str) -> None:
    frame = page.frame_locator(f"iframe[title='{title}']")
    frame.get_by_label("Card number").fill(number)
    frame.get_by_label("Expiration date").fill("12 / 34")
    frame.get_by_label("Security code").fill("123")
    frame.get_by_label("ZIP / Postal code").fill("10001")


def new_intent(shop: Shop, **params: Any) -> stripe.PaymentIntent:
    return shop.stripe.v1.payment_intents.create(
        params={"amount": 1000, "currency": "usd", "metadata": {"kept": "server-side"}, **params}
    )


CARD_FRAME = "Secure card payment input frame"
PAYMENT_FRAME = "Secure payment input frame"
CHALLENGE = "iframe[title='3D Secure authentication']"


@needs_chromium
def test_stripe_js_confirm_card_payment_runs_three_d_secure_in_a_dialog(shop: Shop) -> None:
    from playwright.sync_api import expect

    passed, failed = new_intent(shop), new_intent(shop)
    with browsing(shop) as seen:
        page = seen.page
        with_stripe_js(page, shop, "card")
        enter_in(page, CARD_FRAME, THREE_D_SECURE)
        start(
            page,
            "stripe.confirmCardPayment(arg, {payment_method: {card: element}})",
            passed.client_secret,
        )
        page.frame_locator(CHALLENGE).get_by_role("button", name="Complete").click()
        paid = outcome(page)
        expect(page.locator(CHALLENGE)).to_have_count(0)

        start(
            page,
            "stripe.confirmCardPayment(arg, {payment_method: {card: element}})",
            failed.client_secret,
        )
        page.frame_locator(CHALLENGE).get_by_role("button", name="Fail").click()
        refused = outcome(page)
        screenshot(page, "stripe-js-confirm-card-payment")
        assert page.url == f"{shop.url}/demo/elements"
        assert seen.errors == []

    intent = paid["paymentIntent"]
    assert (intent["id"], intent["status"]) == (passed.id, "succeeded")
    assert "metadata" not in intent
    assert shop.stripe.v1.payment_intents.retrieve(passed.id).status == "succeeded"
    error = refused["error"]
    assert (error["type"], error["code"]) == (
        "invalid_request_error",
        "payment_intent_authentication_failure",
    )
    assert error["payment_intent"]["status"] == "requires_payment_method"
    assert shop.stripe.v1.payment_intents.retrieve(failed.id).status == "requires_payment_method"


@needs_chromium
def test_stripe_js_confirm_payment_if_required_resolves_without_a_redirect(shop: Shop) -> None:
    intent = new_intent(shop, automatic_payment_methods={"enabled": True})
    with browsing(shop) as seen:
        page = seen.page
        with_stripe_js(page, shop, "payment", intent.client_secret or "")
        enter_in(page, PAYMENT_FRAME, VISA)
        start(page, "stripe.confirmPayment({elements, redirect: 'if_required'})")
        result = outcome(page)
        screenshot(page, "stripe-js-if-required")
        assert page.url == f"{shop.url}/demo/elements"
        assert seen.errors == []

    assert result["paymentIntent"]["status"] == "succeeded"
    assert shop.stripe.v1.payment_intents.retrieve(intent.id).amount_received == 1000


@needs_chromium
def test_stripe_js_validates_fields_and_answers_in_stripes_shapes(shop: Shop) -> None:
    intent = new_intent(shop)
    with browsing(shop) as seen:
        page = seen.page
        with_stripe_js(page, shop, "card")
        start(page, "Stripe('sk_test_secret')")
        secret_key = outcome(page)
        start(page, "elements.submit()")
        empty = outcome(page)
        frame = page.frame_locator(f"iframe[title='{CARD_FRAME}']")
        frame.get_by_label("Card number").fill("4242 4242 4242 4241")
        page.wait_for_function(
            "() => window.changes.some((e) => e.error && e.error.code === 'invalid_number')"
        )
        changes = page.evaluate("() => window.changes")
        enter_in(page, CARD_FRAME, VISA)
        start(page, "stripe.createPaymentMethod({type: 'card', card: element})")
        made = outcome(page)
        start(page, "stripe.retrievePaymentIntent(arg)", intent.client_secret)
        retrieved = outcome(page)
        start(page, "stripe.retrievePaymentIntent(arg)", f"{intent.id}_secret_wrong")
        wrong = outcome(page)
        screenshot(page, "stripe-js-shapes")
        assert seen.errors == []
        assert seen.card_data_sent_to_the_service() == []

    assert "secret key" in secret_key["thrown"]
    assert secret_key["thrown"].startswith("IntegrationError")
    assert (empty["error"]["type"], empty["error"]["code"]) == (
        "validation_error",
        "incomplete_number",
    )
    assert empty["error"]["message"] == "Your card number is incomplete."
    invalid = next(e for e in changes if e.get("error", {}).get("code") == "invalid_number")
    assert (invalid["elementType"], invalid["brand"], invalid["complete"]) == (
        "card",
        "visa",
        False,
    )
    assert (invalid["error"]["code"], invalid["error"]["message"]) == (
        "invalid_number",
        "Your card number is invalid.",
    )
    method = made["paymentMethod"]
    assert (method["card"]["brand"], method["card"]["last4"]) == ("visa", "4242")
    assert shop.stripe.v1.payment_methods.retrieve(method["id"]).card.last4 == "4242"  # type: ignore[union-attr]
    assert retrieved["paymentIntent"]["id"] == intent.id
    assert "metadata" not in retrieved["paymentIntent"]
    assert wrong["error"]["param"] == "client_secret"


@needs_chromium
def test_stripe_js_handle_next_action_finishes_a_server_side_confirmation(shop: Shop) -> None:
    intent = new_intent(
        shop,
        automatic_payment_methods={"enabled": True, "allow_redirects": "never"},
        payment_method="pm_card_authenticationRequired",
        confirm=True,
    )
    assert intent.status == "requires_action"
    with browsing(shop) as seen:
        page = seen.page
        with_stripe_js(page, shop, None)
        start(page, "stripe.handleNextAction({clientSecret: arg})", intent.client_secret)
        page.frame_locator(CHALLENGE).get_by_role("button", name="Complete").click()
        result = outcome(page)
        screenshot(page, "stripe-js-handle-next-action")
        assert seen.errors == []

    assert result["paymentIntent"]["status"] == "succeeded"
    assert shop.stripe.v1.payment_intents.retrieve(intent.id).status == "succeeded"


@needs_chromium
def test_stripe_js_redirect_to_checkout_opens_the_hosted_page(shop: Shop) -> None:
    session = shop.stripe.v1.checkout.sessions.create(
        params={
            "mode": "payment",
            "line_items": [{"price": "price_123", "quantity": 1}],
            "success_url": f"{shop.url}/demo",
            "cancel_url": f"{shop.url}/demo",
        }
    )
    with browsing(shop) as seen:
        page = seen.page
        with_stripe_js(page, shop, None)
        start(page, "stripe.redirectToCheckout({sessionId: arg})", session.id)
        page.wait_for_url(f"{shop.emulator.url}/checkout/pay/{session.id}")
        screenshot(page, "stripe-js-redirect-to-checkout")
        assert seen.errors == []
