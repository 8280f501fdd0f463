"""/docs and /redoc, served whole by the service (no CDN: they work offline), and the OpenAPI
document they show: the API key's scheme on exactly the operations that need it, `Idempotency-Key`
on every POST, and per operation only the error statuses it can answer, each with an example of
its own envelope.

The browser tests drive Debian's Chromium (as tests/app/test_demo.py does) with every request to
anything but the service aborted."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from html.parser import HTMLParser
from typing import Any

import pytest

from tests.app.test_api_surface import PUBLIC
from tests.app.test_demo import CHROMIUM, CHROMIUM_ARGS
from tests.fixtures.service import API_KEY, Stack

# Every error status each operation documents (its 2xx aside).
STATUSES: dict[tuple[str, str], set[int]] = {
    ("POST", "/customers"): {400, 401, 404, 409, 413, 500, 502, 503},
    ("GET", "/customers"): {400, 401, 500, 503},
    ("GET", "/customers/{customer_id}"): {400, 401, 404, 500, 502, 503},
    ("PATCH", "/customers/{customer_id}"): {400, 401, 404, 413, 500, 502, 503},
    ("POST", "/customers/{customer_id}/payment-methods"): {
        400, 401, 402, 404, 409, 413, 500, 502, 503,
    },
    ("GET", "/customers/{customer_id}/payment-methods"): {400, 401, 404, 500, 502, 503},
    ("GET", "/customers/{customer_id}/entitlements"): {400, 401, 404, 500, 503},
    ("POST", "/payment-intents"): {400, 401, 402, 404, 409, 413, 500, 502, 503},
    ("GET", "/payment-intents"): {400, 401, 500, 503},
    ("GET", "/payment-intents/search"): {400, 401, 500, 503},
    ("GET", "/payment-intents/{intent_id}"): {400, 401, 404, 500, 502, 503},
    ("POST", "/payment-intents/{intent_id}/confirm"): {
        400, 401, 402, 404, 409, 413, 500, 502, 503,
    },
    ("POST", "/payment-intents/{intent_id}/capture"): {400, 401, 404, 409, 413, 500, 502, 503},
    ("POST", "/payment-intents/{intent_id}/cancel"): {400, 401, 404, 409, 413, 500, 502, 503},
    ("POST", "/checkout-sessions"): {400, 401, 404, 409, 413, 500, 502, 503},
    ("GET", "/checkout-sessions/{session_id}"): {400, 401, 404, 500, 502, 503},
    ("POST", "/checkout-sessions/{session_id}/expire"): {400, 401, 404, 409, 413, 500, 502, 503},
    ("POST", "/refunds"): {400, 401, 404, 409, 413, 500, 502, 503},
    ("GET", "/refunds"): {400, 401, 500, 503},
    ("GET", "/refunds/{refund_id}"): {400, 401, 404, 500, 502, 503},
    ("GET", "/orders/{order_id}"): {400, 401, 404, 500, 503},
    ("GET", "/orders"): {400, 401, 500, 503},
    ("POST", "/subscriptions"): {400, 401, 402, 404, 409, 413, 500, 502, 503},
    ("GET", "/subscriptions"): {400, 401, 500, 503},
    ("GET", "/subscriptions/{subscription_id}"): {400, 401, 404, 500, 503},
    ("POST", "/subscriptions/{subscription_id}"): {400, 401, 404, 409, 413, 500, 502, 503},
    ("POST", "/subscriptions/{subscription_id}/cancel"): {
        400, 401, 404, 409, 413, 500, 502, 503,
    },
    ("GET", "/invoices"): {400, 401, 500, 503},
    ("GET", "/invoices/{invoice_id}"): {400, 401, 404, 500, 503},
    ("GET", "/events"): {400, 401, 500, 503},
    ("GET", "/events/{event_id}"): {400, 401, 404, 500, 503},
    ("POST", "/events/{event_id}/redeliver"): {400, 401, 404, 409, 413, 500, 503},
    ("GET", "/events/{event_id}/deliveries"): {400, 401, 404, 500, 503},
    ("POST", "/webhook-endpoints"): {400, 401, 409, 413, 500, 503},
    ("GET", "/webhook-endpoints"): {400, 401, 500, 503},
    ("GET", "/webhook-endpoints/{endpoint_id}"): {400, 401, 404, 500, 503},
    ("POST", "/webhook-endpoints/{endpoint_id}"): {400, 401, 404, 409, 413, 500, 503},
    ("DELETE", "/webhook-endpoints/{endpoint_id}"): {400, 401, 404, 500, 503},
    ("POST", "/webhook-endpoints/{endpoint_id}/rotate-secret"): {
        400, 401, 404, 409, 413, 500, 503,
    },
    ("GET", "/webhook-endpoints/{endpoint_id}/deliveries"): {400, 401, 404, 500, 503},
    ("POST", "/api/create-payment-intent"): {400, 404, 409, 413, 429, 500, 502, 503},
    ("GET", "/api/config"): {400, 500},
    ("POST", "/webhooks/stripe"): {400, 409, 413, 500, 502, 503},
    ("GET", "/health"): {500, 503},
    ("GET", "/health/live"): {500},
    ("GET", "/health/ready"): {500, 503},
    ("GET", "/metrics"): {500},
}  # fmt: skip
# The codes an example of each status may show (503: which depends on what the operation calls).
CODES = {
    400: {"parameter_invalid", "webhook_signature_invalid"},
    401: {"api_key_missing"},
    402: {"card_declined"},
    404: {"resource_missing"},
    409: {"idempotency_key_in_use"},
    413: {"request_too_large"},
    429: {"rate_limited"},
    500: {"internal_error"},
    502: {"stripe_auth_error"},
    503: {
        "stripe_outcome_unknown",
        "stripe_unavailable",
        "database_unavailable",
        "order_not_ready",
    },
}
# Operations whose 503 names what the service kept for the retry.
KEPT = {
    ("POST", "/payment-intents"): "order_id",
    ("POST", "/api/create-payment-intent"): "order_id",
    ("POST", "/checkout-sessions"): "order_id",
    ("POST", "/refunds"): "order_id",
    ("POST", "/customers"): "customer_row",
    ("POST", "/subscriptions"): "subscription_row",
}
CONTENT_TYPES = {
    "script": "text/javascript",
    "stylesheet": "text/css",
    "icon": "image/png",
}


@pytest.fixture(scope="module")
def spec(stack: Stack) -> dict[str, Any]:
    response = stack.public.get("/openapi.json")
    assert response.status_code == 200
    return dict(response.json())


def operations(spec: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            yield method.upper(), path, op


class _Assets(HTMLParser):
    """Every URL a page loads: scripts, stylesheets, icons."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[tuple[str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag == "script" and attributes.get("src"):
            self.found.append(("script", attributes["src"] or ""))
        if tag == "link" and attributes.get("href"):
            rel = attributes.get("rel") or ""
            self.found.append(("icon" if "icon" in rel else rel, attributes["href"] or ""))


class TestPages:
    @pytest.mark.parametrize("page", ["/docs", "/redoc"])
    def test_the_page_and_everything_it_loads_come_from_the_service(
        self, stack: Stack, page: str
    ) -> None:
        response = stack.public.get(page)
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/html")
        html = response.text
        # No other host is named anywhere in the page (a CDN, Google Fonts, a favicon).
        assert re.search(r"(https?:)?//[\w-]", html) is None, html
        parser = _Assets()
        parser.feed(html)
        expected = {"script", "stylesheet", "icon"} if page == "/docs" else {"script", "icon"}
        assert {kind for kind, _ in parser.found} == expected
        for kind, url in parser.found:
            assert url.startswith("/"), url
            asset = stack.public.get(url)
            assert asset.status_code == 200, url
            assert asset.headers["content-type"].startswith(CONTENT_TYPES[kind]), url
            assert len(asset.content) > (100_000 if kind != "icon" else 100), url

    def test_the_pages_are_not_operations(self, spec: dict[str, Any]) -> None:
        paths = set(spec["paths"])
        assert not {p for p in paths if p.startswith(("/docs", "/redoc", "/demo"))}


class TestSecurity:
    def test_the_api_key_is_an_http_bearer_scheme(self, spec: dict[str, Any]) -> None:
        schemes = spec["components"]["securitySchemes"]
        assert list(schemes) == ["apiKey"]
        assert schemes["apiKey"]["type"] == "http"
        assert schemes["apiKey"]["scheme"] == "bearer"
        assert "security" not in spec  # per operation only

    def test_exactly_the_operations_that_need_the_key_list_it(
        self, spec: dict[str, Any], stack: Stack
    ) -> None:
        private = []
        for method, path, op in operations(spec):
            if (method, path) in PUBLIC:
                assert "security" not in op, (method, path)
                assert "401" not in op["responses"], (method, path)
            else:
                assert op.get("security") == [{"apiKey": []}], (method, path)
                assert "401" in op["responses"], (method, path)
                private.append((method, path))
        assert len(private) == len(STATUSES) - len(PUBLIC)
        # And what is declared is what the service does.
        for method, path in private:
            concrete = re.sub(r"\{[^}]+\}", "x_unknown", path)
            response = stack.public.request(method, concrete, json={})
            assert response.status_code == 401, (method, path)


class TestIdempotencyKey:
    def test_every_post_declares_it_with_its_rules(self, spec: dict[str, Any]) -> None:
        posts = 0
        for method, path, op in operations(spec):
            declared = [
                p
                for p in op.get("parameters", [])
                if p["name"].lower() == "idempotency-key" and p["in"] == "header"
            ]
            if method != "POST":
                assert declared == [], (method, path)
                continue
            posts += 1
            assert len(declared) == 1, (method, path)
            header = declared[0]
            assert header["required"] is False
            assert header["schema"] == {"type": "string", "maxLength": 255}
            rules = header["description"]
            for rule in (
                "24 hours",
                "400 `idempotency_key_reused`",
                "409 `idempotency_key_in_use`",
                "5xx",
                "before Stripe was called",
            ):
                assert rule in rules, rule
        assert posts == 18


class TestErrorStatuses:
    def test_each_operation_documents_the_statuses_it_can_answer(
        self, spec: dict[str, Any]
    ) -> None:
        documented = {
            (method, path): {int(s) for s in op["responses"] if s[0] in "45"}
            for method, path, op in operations(spec)
        }
        assert documented == STATUSES

    def test_each_status_has_an_example_of_its_own(self, spec: dict[str, Any]) -> None:
        for method, path, op in operations(spec):
            for status, response in op["responses"].items():
                if status[0] not in "45" or (path, status) == ("/health/ready", "503"):
                    continue
                content = response["content"]["application/json"]
                assert content["schema"] == {"$ref": "#/components/schemas/ErrorEnvelope"}
                error = content["example"]["error"]
                where = (method, path, status)
                assert error["code"] in CODES[int(status)], where
                assert set(error) >= {"type", "code", "message", "param"}, where
                if status == "402":
                    assert error["type"] == "card_error"
                    assert error["decline_code"], where
                    # Only a payment intent's decline names an order.
                    assert ("order_id" in error) is path.startswith("/payment-intents"), where
                if status in ("409", "429") or (status == "503" and path != "/health"):
                    assert "Retry-After" in response["headers"], where
                if status == "503" and (method, path) in KEPT:
                    assert error["code"] == "stripe_outcome_unknown", where
                    assert KEPT[(method, path)] in error, where
                if status == "503" and method == "GET" and path != "/health":
                    assert error["code"] != "stripe_outcome_unknown", where

    def test_routers_keep_their_own_descriptions(self, spec: dict[str, Any]) -> None:
        create = spec["paths"]["/payment-intents"]["post"]["responses"]
        assert (
            "`decline_code`, the `payment_intent` and the `order_id`"
            in (create["402"]["description"])
        )
        assert "`order_id` names the order kept" in create["503"]["description"]
        webhook = spec["paths"]["/webhooks/stripe"]["post"]["responses"]
        assert "Stripe-Signature" in webhook["400"]["description"]
        assert webhook["400"]["content"]["application/json"]["example"]["error"]["code"] == (
            "webhook_signature_invalid"
        )

    def test_the_examples_are_what_the_service_answers(
        self, spec: dict[str, Any], stack: Stack
    ) -> None:
        responses = spec["paths"]["/orders/{order_id}"]["get"]["responses"]
        for status, response in (
            ("404", stack.api.get("/orders/ord_missing")),
            ("401", stack.public.get("/orders/ord_missing")),
        ):
            example = responses[status]["content"]["application/json"]["example"]["error"]
            actual = response.json()["error"]
            assert response.status_code == int(status)
            assert (actual["type"], actual["code"]) == (example["type"], example["code"])
            assert set(actual) == set(example)


@pytest.fixture
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.skip("needs Debian's Chromium at /usr/bin/chromium; CI installs it")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


def _service_only(browser: Any, stack: Stack) -> tuple[Any, list[str], list[str]]:
    """A page whose requests to anything but the service are aborted (and listed)."""
    page = browser.new_page()
    blocked: list[str] = []
    failures: list[str] = []

    def route(request_route: Any) -> None:
        url = request_route.request.url
        if url.startswith(f"{stack.url}/"):
            request_route.continue_()
        else:
            blocked.append(url)
            request_route.abort()

    page.route("**/*", route)
    page.on("pageerror", lambda error: failures.append(str(error)))
    page.on(
        "console",
        lambda m: failures.append(f"console: {m.text}") if m.type == "error" else None,
    )
    page.on(
        "response",
        lambda r: failures.append(f"{r.status} {r.url}") if r.status >= 400 else None,
    )
    return page, blocked, failures


class TestInABrowser:
    def test_docs_render_the_operations_offline(self, browser: Any, stack: Stack) -> None:
        from playwright.sync_api import expect

        page, blocked, failures = _service_only(browser, stack)
        page.goto(f"{stack.url}/docs")
        create = page.locator(".opblock-post", has=page.locator('[data-path="/payment-intents"]'))
        expect(create).to_be_visible(timeout=15_000)
        expect(page.locator(".opblock")).to_have_count(len(STATUSES))
        assert blocked == []
        assert failures == []

    def test_redoc_renders_offline(self, browser: Any, stack: Stack) -> None:
        from playwright.sync_api import expect

        page, blocked, failures = _service_only(browser, stack)
        page.goto(f"{stack.url}/redoc")
        expect(page.get_by_text("Create a payment intent").first).to_be_attached(timeout=15_000)
        assert blocked == []
        # ReDoc's bundle shows Redocly's logo from its CDN: the page's policy stops the browser
        # from asking for it (the bundle then hides the image).
        assert [f for f in failures if "cdn.redoc.ly/redoc/logo-mini.svg" not in f] == []

    def test_authorize_then_try_it_out(self, browser: Any, stack: Stack) -> None:
        from playwright.sync_api import expect

        page, blocked, failures = _service_only(browser, stack)
        page.goto(f"{stack.url}/docs")
        page.locator("button.authorize").first.click()
        dialog = page.locator(".dialog-ux .modal-ux")
        dialog.locator("input").fill(API_KEY)
        dialog.locator("button.modal-btn.authorize").click()
        dialog.locator("button.btn-done").click()

        create = page.locator(".opblock-post", has=page.locator('[data-path="/payment-intents"]'))
        create.locator(".opblock-summary").click()
        create.get_by_role("button", name="Try it out").click()
        create.locator("textarea.body-param__text").fill(
            json.dumps({"amount": 1500, "currency": "usd"})
        )
        create.get_by_role("button", name="Execute").click()

        status = create.locator(".live-responses-table tr.response .response-col_status").first
        expect(status).to_have_text("200", timeout=15_000)
        answer = create.locator(".live-responses-table tr.response .microlight").first
        body = json.loads(answer.inner_text())
        assert body["id"].startswith("pi_")
        assert body["order_id"].startswith("ord_")
        assert blocked == []
        assert failures == []
