"""Errors a person can act on: a request body that is not JSON, is malformed JSON, or is empty is
answered with what is wrong in words (where the JSON breaks, the Content-Type expected, that the
body is empty) and `param: null`, on every endpoint that takes a body, through the real service.
A wrong parameter is still named in `param`."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.fixtures.service import Stack

JSON = {"Content-Type": "application/json"}
# (path, authenticated): endpoints that take a JSON body.
ENDPOINTS = [
    ("/customers", True),
    ("/payment-intents", True),
    ("/refunds", True),
    ("/checkout-sessions", True),
    ("/api/create-payment-intent", False),
]


def client(stack: Stack, authenticated: bool) -> httpx.Client:
    return stack.api if authenticated else stack.public


def error_of(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 400, response.text
    error: dict[str, Any] = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    return error


@pytest.mark.parametrize(("path", "authenticated"), ENDPOINTS)
class TestBodyProblems:
    def test_malformed_json_names_its_line_and_column(
        self, stack: Stack, path: str, authenticated: bool
    ) -> None:
        body = '{"amount": 2000,\n  "currency": }'
        response = client(stack, authenticated).post(path, content=body, headers=JSON)
        error = error_of(response)
        assert error["param"] is None
        assert error["message"] == (
            "The request body is not valid JSON: Expecting value at line 2, column 15."
        )

    def test_a_body_without_content_type_expects_json(
        self, stack: Stack, path: str, authenticated: bool
    ) -> None:
        response = client(stack, authenticated).post(path, content=b'{"amount": 2000}')
        assert "content-type" not in response.request.headers
        error = error_of(response)
        assert error["param"] is None
        assert "expected application/json, got no Content-Type" in error["message"]

    def test_a_body_of_another_content_type_expects_json(
        self, stack: Stack, path: str, authenticated: bool
    ) -> None:
        response = client(stack, authenticated).post(
            path, content=b'{"amount": 2000}', headers={"Content-Type": "text/plain"}
        )
        error = error_of(response)
        assert error["param"] is None
        assert "expected application/json, got `text/plain`" in error["message"]

    @pytest.mark.parametrize("headers", [JSON, {}], ids=["json", "no-content-type"])
    def test_an_empty_body_is_called_empty(
        self, stack: Stack, path: str, authenticated: bool, headers: dict[str, str]
    ) -> None:
        response = client(stack, authenticated).post(path, content=b"", headers=headers)
        error = error_of(response)
        assert error["param"] is None
        assert error["message"].startswith("The request body is empty"), error

    def test_a_blank_body_is_called_empty(
        self, stack: Stack, path: str, authenticated: bool
    ) -> None:
        response = client(stack, authenticated).post(path, content=b"  \n ", headers=JSON)
        assert error_of(response)["message"].startswith("The request body is empty")

    def test_a_json_array_is_not_an_object(
        self, stack: Stack, path: str, authenticated: bool
    ) -> None:
        response = client(stack, authenticated).post(path, json=[{"amount": 2000}])
        error = error_of(response)
        assert error["param"] is None
        assert error["message"].startswith("The request body must be a JSON object, not an array")


def test_the_position_counts_characters_on_the_line(stack: Stack) -> None:
    response = stack.api.post("/customers", content='{"email": "a@example.com",}', headers=JSON)
    error = error_of(response)
    assert error["message"] == (
        "The request body is not valid JSON: Expecting property name enclosed in double quotes "
        "at line 1, column 27."
    )


def test_a_wrong_parameter_is_still_named(stack: Stack) -> None:
    response = stack.api.post("/payment-intents", json={"amount": "lots", "currency": "usd"})
    error = error_of(response)
    assert error["param"] == "amount"
    assert error["message"].startswith("amount: ")
