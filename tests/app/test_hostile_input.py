"""Bad input that used to get a 5xx (issue 14), now a 400 in the error envelope with nothing
written and nothing sent to Stripe: JSON nested a thousand deep (an unauthenticated 500, or a
connection closed without an answer), U+0000 in a string, a key, an id or a query parameter (a
503 `database_unavailable`, as if the database were down), an unpaired surrogate in a string (a
500), and signed webhook events that are JSON but not usable events (a 500, or a 503 on every
redelivery)."""

from __future__ import annotations

import json
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from tests.app.test_validation import intents_marked, session_body, sessions_marked
from tests.app.test_webhooks import create_intent, event, foreign_intent
from tests.fixtures.service import API_KEY, Stack, sign_event

PUBLIC = "/api/create-payment-intent"
WEBHOOK = "/webhooks/stripe"
TABLES = (
    "orders",
    "customers",
    "payment_intents",
    "checkout_sessions",
    "refunds",
    "idempotency_keys",
    "webhook_events",
)


@pytest.fixture(autouse=True)
def quiet(stack: Stack) -> Iterator[None]:
    """The emulator's own deliveries are dropped, so the row counts move only for these tests."""
    stack.controls("/_emulator/faults", {"webhook": "drop"})
    try:
        yield
    finally:
        httpx.delete(f"{stack.emulator.url}/_emulator/faults", timeout=10).raise_for_status()


def counts(stack: Stack) -> dict[str, int]:
    return {table: stack.rows(f"SELECT count(*) AS n FROM {table}")[0]["n"] for table in TABLES}


def mark() -> str:
    return f"hostile-{uuid.uuid4().hex[:12]}"


def assert_refused(response: httpx.Response, code: str, param: str | None) -> dict[str, Any]:
    assert response.status_code == 400, response.text
    error = dict(response.json()["error"])
    assert error["type"] == "invalid_request_error", error
    assert (error["code"], error["param"]) == (code, param), error
    assert error["message"], error
    return error


def signed(client: httpx.Client, payload: str) -> httpx.Response:
    headers = {"Content-Type": "application/json", "Stripe-Signature": sign_event(payload)}
    return client.post(WEBHOOK, content=payload, headers=headers)


def nested_objects(depth: int) -> str:
    return '{"a": ' * depth + "1" + "}" * depth


def nested_arrays(depth: int) -> str:
    return "[" * depth + "]" * depth


SHAPES: dict[str, str] = {
    "objects": nested_objects(1000),
    "arrays": nested_arrays(1000),
    "mixed": '{"a": [' * 500 + "]}" * 500,
    "never closed": "[" * 50_000,
    "deep inside a valid request": json.dumps(
        {"amount": 2000, "currency": "usd", "metadata": {"k": "v"}}
    ).replace('"v"', nested_arrays(1000)),
}


class TestNesting:
    @pytest.mark.parametrize("shape", SHAPES)
    @pytest.mark.parametrize(
        ("client", "path"),
        [
            ("api", "/payment-intents"),
            ("api", "/customers"),
            ("api", "/checkout-sessions"),
            ("api", "/refunds"),
            ("public", PUBLIC),
        ],
    )
    def test_a_body_nested_a_thousand_deep_is_refused_and_the_connection_kept(
        self, stack: Stack, client: str, path: str, shape: str
    ) -> None:
        http: httpx.Client = getattr(stack, client)
        before = counts(stack)
        response = http.post(
            path,
            content=SHAPES[shape],
            headers={"Content-Type": "application/json", "Idempotency-Key": mark()},
        )

        error = assert_refused(response, "json_too_deep", None)
        assert "32 levels" in error["message"]
        assert counts(stack) == before
        # The same connection answers the next request (a 500 used to close it).
        assert response.headers.get("connection") != "close"
        assert http.get("/health").status_code == 200

    @pytest.mark.parametrize("shape", SHAPES)
    def test_a_signed_webhook_nested_a_thousand_deep_is_refused(
        self, stack: Stack, shape: str
    ) -> None:
        evt = event("payment_intent.succeeded", foreign_intent(metadata={"k": "v"}))
        payload = json.dumps(evt).replace('"v"', SHAPES[shape])
        before = counts(stack)

        assert_refused(signed(stack.public, payload), "json_too_deep", None)
        assert counts(stack) == before
        assert stack.public.get("/health").status_code == 200

    def test_32_levels_reach_the_endpoint_and_33_do_not(self, stack: Stack) -> None:
        def body(depth: int) -> str:
            # The body is one level, `metadata` a second: the rest are arrays.
            inner = nested_arrays(depth - 2)
            return json.dumps({"amount": 2000, "currency": "usd", "metadata": {"k": "v"}}).replace(
                '"v"', inner
            )

        before = counts(stack)
        headers = {"Content-Type": "application/json"}
        at_limit = stack.api.post("/payment-intents", content=body(32), headers=headers)
        over = stack.api.post("/payment-intents", content=body(33), headers=headers)

        # Parsed and validated by the endpoint: a metadata value must be a string.
        assert_refused(at_limit, "parameter_invalid", "metadata[k]")
        assert_refused(over, "json_too_deep", None)
        assert counts(stack) == before

    def test_brackets_and_escaped_quotes_inside_strings_do_not_count(self, stack: Stack) -> None:
        value = "[" * 60 + '\\"' + "{" * 60 + '"\\'
        email = f"{mark()}@example.com"
        response = stack.api.post("/customers", json={"email": email, "metadata": {"v": value}})

        assert response.status_code == 200, response.text
        assert response.json()["metadata"] == {"v": value}

    def test_the_deepest_request_the_api_takes_is_accepted(self, stack: Stack) -> None:
        label = mark()
        body = session_body(label)
        body["line_items"][0]["price_data"]["product_data"]["metadata"] = {"sku": "mug-1"}
        response = stack.api.post("/checkout-sessions", json=body)

        assert response.status_code == 200, response.text
        assert len(sessions_marked(stack, label)) == 1


class TestNulCharacter:
    @pytest.mark.parametrize(
        ("change", "param"),
        [
            ({"name": "Jane\u0000Doe"}, "name"),
            ({"metadata": {"k": "v\u0000"}}, "metadata[k]"),
            ({"metadata": {"k\u0000": "v"}}, "metadata[k\u0000]"),
            ({"preferred_locales": ["en", "fr\u0000"]}, "preferred_locales[1]"),
        ],
    )
    def test_in_a_body_string_or_key_it_is_refused_naming_the_parameter(
        self, stack: Stack, change: dict[str, Any], param: str
    ) -> None:
        email = f"{mark()}@example.com"
        before = counts(stack)
        response = stack.api.post(
            "/customers", json={"email": email, **change}, headers={"Idempotency-Key": mark()}
        )

        error = assert_refused(response, "parameter_invalid", param)
        assert "NUL" in error["message"]
        assert counts(stack) == before
        assert stack.stripe.v1.customers.list(params={"email": email}).data == []

    def test_in_a_nested_line_item_it_is_refused_before_stripe(self, stack: Stack) -> None:
        label = mark()
        body = session_body(label)
        body["line_items"][0]["price_data"]["product_data"]["name"] = "Mug\u0000"
        before = counts(stack)

        assert_refused(
            stack.api.post("/checkout-sessions", json=body),
            "parameter_invalid",
            "line_items[0][price_data][product_data][name]",
        )
        assert counts(stack) == before
        assert sessions_marked(stack, label) == []

    def test_in_a_payment_intent_it_is_refused_before_stripe(self, stack: Stack) -> None:
        label, since = mark(), int(time.time()) - 1
        body = {
            "amount": 2000,
            "currency": "usd",
            "description": "\u0000",
            "metadata": {"mark": label},
        }
        before = counts(stack)

        assert_refused(
            stack.api.post("/payment-intents", json=body), "parameter_invalid", "description"
        )
        assert counts(stack) == before
        assert intents_marked(stack, label, since) == []

    def test_on_the_public_endpoint_it_is_refused(self, stack: Stack) -> None:
        before = counts(stack)
        response = stack.public.post(PUBLIC, json={"order_id": "ord_\u0000"})

        assert_refused(response, "parameter_invalid", "order_id")
        assert counts(stack) == before

    def test_in_an_update_it_changes_nothing(self, stack: Stack) -> None:
        email = f"{mark()}@example.com"
        created = stack.api.post("/customers", json={"email": email, "metadata": {"k": "v"}})
        assert created.status_code == 200, created.text
        customer_id = created.json()["id"]
        before = counts(stack)
        [row] = stack.rows("SELECT version FROM customers WHERE stripe_id = :id", id=customer_id)

        response = stack.api.patch(f"/customers/{customer_id}", json={"metadata": {"k": "\u0000"}})

        assert_refused(response, "parameter_invalid", "metadata[k]")
        assert counts(stack) == before
        assert stack.rows(
            "SELECT version FROM customers WHERE stripe_id = :id", id=customer_id
        ) == [row]
        assert stack.stripe.v1.customers.retrieve(customer_id).metadata.to_dict() == {"k": "v"}

    def test_as_a_raw_byte_in_the_body_it_is_refused(self, stack: Stack) -> None:
        email = f"{mark()}@example.com"
        before = counts(stack)
        response = stack.api.post(
            "/customers",
            content=f'{{"email": "{email}", "name": "a\x00b"}}'.encode(),
            headers={"Content-Type": "application/json"},
        )

        error = assert_refused(response, "parameter_invalid", None)
        assert "NUL" in error["message"]
        assert counts(stack) == before
        assert stack.stripe.v1.customers.list(params={"email": email}).data == []

    def test_json_in_utf_16_is_refused_for_its_nul_bytes(self, stack: Stack) -> None:
        # Python's json.loads would decode it; the nesting scan reads UTF-8 only.
        before = counts(stack)
        response = stack.api.post(
            "/payment-intents",
            content=nested_arrays(1000).encode("utf-16"),
            headers={"Content-Type": "application/json"},
        )

        assert_refused(response, "parameter_invalid", None)
        assert counts(stack) == before

    @pytest.mark.parametrize(
        ("method", "path"),
        [
            ("GET", "/customers/cus_%00x"),
            ("PATCH", "/customers/cus_%00x"),
            ("GET", "/orders/ord_%00x"),
            ("GET", "/payment-intents/pi_%00x"),
            ("POST", "/payment-intents/pi_%00x/cancel"),
            ("GET", "/refunds/re_%00x"),
            ("GET", "/checkout-sessions/cs_%00x"),
        ],
    )
    def test_in_a_path_id_it_is_refused_naming_the_id(
        self, stack: Stack, method: str, path: str
    ) -> None:
        before = counts(stack)
        body = {"json": {"name": "x"}} if method != "GET" else {}
        response = stack.api.request(method, path, **body)

        error = assert_refused(response, "parameter_invalid", "id")
        assert "NUL" in error["message"]
        assert counts(stack) == before

    @pytest.mark.parametrize(
        ("path", "param"),
        [
            ("/customers?email=a%00b", "email"),
            ("/orders?starting_after=ord_%00", "starting_after"),
            ("/payment-intents/search?query=status%3A%27a%00%27", "query"),
            ("/refunds?payment_intent=pi_%00", "payment_intent"),
        ],
    )
    def test_in_a_query_parameter_it_is_refused_naming_it(
        self, stack: Stack, path: str, param: str
    ) -> None:
        before = counts(stack)
        assert_refused(stack.api.get(path), "parameter_invalid", param)
        assert counts(stack) == before

    def test_in_the_idempotency_key_header_it_never_reaches_the_database(
        self, stack: Stack
    ) -> None:
        # httpx refuses to send it; uvicorn's parser answers 400 before the app, which is what
        # keeps it from the idempotency table.
        email = f"{mark()}@example.com"
        body = json.dumps({"email": email}).encode()
        key = mark()
        url = urlsplit(stack.url)
        request = (
            (
                f"POST /customers HTTP/1.1\r\nHost: {url.netloc}\r\n"
                f"Authorization: Bearer {API_KEY}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n"
            ).encode()
            + b"Idempotency-Key: "
            + key.encode()
            + b"\x00x\r\n\r\n"
            + body
        )
        before = counts(stack)
        with socket.create_connection((url.hostname, url.port), timeout=10) as connection:
            connection.sendall(request)
            answer = b""
            while chunk := connection.recv(65536):
                answer += chunk

        assert answer.startswith(b"HTTP/1.1 400 "), answer
        assert counts(stack) == before
        assert stack.rows("SELECT key FROM idempotency_keys WHERE key LIKE :k", k=f"{key}%") == []
        assert stack.stripe.v1.customers.list(params={"email": email}).data == []

    def test_in_a_signed_webhook_it_is_refused_on_every_delivery(self, stack: Stack) -> None:
        evt = event("payment_intent.succeeded", foreign_intent(metadata={"k": "a\u0000b"}))
        payload = json.dumps(evt)
        before = counts(stack)

        for _ in range(2):
            error = assert_refused(
                signed(stack.public, payload), "parameter_invalid", "data[object][metadata][k]"
            )
            assert "NUL" in error["message"]
        assert counts(stack) == before


class TestUnpairedSurrogate:
    @pytest.mark.parametrize(
        ("metadata", "param"),
        [('{"k": "a\\ud800"}', "metadata[k]"), ('{"\\udfff": "v"}', "metadata[\udfff]")],
    )
    def test_in_a_body_string_or_key_it_is_refused_naming_the_parameter(
        self, stack: Stack, metadata: str, param: str
    ) -> None:
        email = f"{mark()}@example.com"
        before = counts(stack)
        response = stack.api.post(
            "/customers",
            content=f'{{"email": "{email}", "metadata": {metadata}}}',
            headers={"Content-Type": "application/json"},
        )

        error = assert_refused(response, "parameter_invalid", param)
        assert "unpaired surrogate" in error["message"]
        assert counts(stack) == before
        assert stack.stripe.v1.customers.list(params={"email": email}).data == []

    def test_a_surrogate_pair_is_one_character_and_accepted(self, stack: Stack) -> None:
        email = f"{mark()}@example.com"
        response = stack.api.post(
            "/customers",
            content=f'{{"email": "{email}", "metadata": {{"k": "\\ud83d\\ude00"}}}}',
            headers={"Content-Type": "application/json"},
        )

        assert response.status_code == 200, response.text
        assert response.json()["metadata"] == {"k": "\U0001f600"}

    def test_in_a_signed_webhook_it_is_refused_and_not_stored(self, stack: Stack) -> None:
        evt = event("payment_intent.succeeded", foreign_intent(metadata={"k": "\ud800"}))
        before = counts(stack)

        assert_refused(signed(stack.public, json.dumps(evt)), "webhook_payload_invalid", None)
        assert counts(stack) == before


def _without(key: str) -> Callable[[dict[str, Any]], None]:
    return lambda evt: evt.pop(key)


def _set(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    return lambda evt: evt.update({key: value})


def _set_object(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    return lambda evt: evt["data"]["object"].update({key: value})


def _without_object_id(evt: dict[str, Any]) -> None:
    evt["data"]["object"].pop("id")


MALFORMED: dict[str, tuple[Callable[[dict[str, Any]], None], str]] = {
    "data null": (_set("data", None), "`data.object`"),
    "data a list": (_set("data", [{"object": {"id": "pi_x"}}]), "`data.object`"),
    "data without object": (_set("data", {}), "`data.object`"),
    "object a string": (_set("data", {"object": "pi_x"}), "`data.object`"),
    "object a list": (_set("data", {"object": [{"id": "pi_x"}]}), "`data.object`"),
    "object without id": (_without_object_id, "`data.object.id`"),
    "object id a number": (_set_object("id", 5), "`data.object.id`"),
    "object id empty": (_set_object("id", ""), "`data.object.id`"),
    "object id too long": (_set_object("id", "pi_" + "x" * 253), "`data.object.id`"),
    "id a number": (_set("id", 5), "`id`"),
    "id missing": (_without("id"), "`id`"),
    "id too long": (_set("id", "evt_" + "x" * 252), "`id`"),
    "type a list": (_set("type", ["payment_intent.succeeded"]), "`type`"),
    "type null": (_set("type", None), "`type`"),
}


class TestMalformedEvents:
    @pytest.mark.parametrize("case", MALFORMED)
    def test_a_signed_event_that_is_not_usable_is_refused_and_not_stored(
        self, stack: Stack, case: str
    ) -> None:
        change, named = MALFORMED[case]
        evt = event("payment_intent.succeeded", foreign_intent())
        change(evt)
        before = counts(stack)

        for _ in range(2):
            error = assert_refused(
                signed(stack.public, json.dumps(evt)), "webhook_payload_invalid", None
            )
            assert named in error["message"], error
        assert counts(stack) == before

    @pytest.mark.parametrize(
        ("linked", "fields"),
        [
            (True, {"status": ["succeeded"]}),
            (True, {"amount_received": "lots"}),
            (False, {"status": "succeeded", "metadata": "ord_x"}),
        ],
        ids=["linked-status-list", "linked-amount-text", "metadata-text"],
    )
    def test_a_well_shaped_event_with_unreadable_fields_is_refused_not_a_500(
        self, stack: Stack, linked: bool, fields: dict[str, Any]
    ) -> None:
        # `linked`: the intent of one of our orders (on Postgres the webhook fast path's case).
        intent = foreign_intent()
        order = None
        if linked:
            created = create_intent(stack)
            intent["id"], order = created["id"], stack.order(created["order_id"])
        evt = event("payment_intent.succeeded", {**intent, **fields})
        before = counts(stack)

        for _ in range(2):
            error = assert_refused(
                signed(stack.public, json.dumps(evt)), "webhook_payload_invalid", None
            )
            assert "payment_intent.succeeded" in error["message"], error
        assert counts(stack) == before
        if order is not None:
            assert stack.order(order["id"]) == order

    def test_an_object_without_an_id_is_stored_when_its_type_is_only_stored(
        self, stack: Stack
    ) -> None:
        # Stripe's balance object has no id; the service acts on no balance event.
        evt = event("balance.available", {"object": "balance", "available": [], "pending": []})
        response = signed(stack.public, json.dumps(evt))

        assert response.status_code == 200, response.text
        assert response.json() == {"received": True, "duplicate": False, "outcome": "ignored"}
        rows = stack.rows(
            "SELECT object_id, outcome FROM webhook_events WHERE stripe_event_id = :id",
            id=evt["id"],
        )
        assert rows == [{"object_id": None, "outcome": "ignored"}]
