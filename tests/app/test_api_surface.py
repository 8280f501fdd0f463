"""The API as a whole: documented in /docs, and closed to callers without an API key."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.fixtures.service import Stack

PUBLIC = {
    ("POST", "/api/create-payment-intent"),
    ("GET", "/api/config"),
    ("POST", "/webhooks/stripe"),
    ("GET", "/health"),
    ("GET", "/health/live"),
    ("GET", "/health/ready"),
    ("GET", "/metrics"),
}


def operations(stack: Stack) -> list[tuple[str, str, dict[str, Any]]]:
    spec = stack.public.get("/openapi.json").json()
    return [
        (method.upper(), path, op)
        for path, ops in spec["paths"].items()
        for method, op in ops.items()
    ]


def _has_example(spec: dict[str, Any], schema: dict[str, Any]) -> bool:
    if schema.get("examples") or schema.get("example"):
        return True
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return _has_example(spec, spec["components"]["schemas"][name])
    return any(_has_example(spec, s) for s in schema.get("anyOf", []))


class TestDocs:
    def test_docs_are_served(self, stack: Stack) -> None:
        assert stack.public.get("/docs").status_code == 200

    def test_every_operation_has_a_summary_a_description_and_body_examples(
        self, stack: Stack
    ) -> None:
        spec = stack.public.get("/openapi.json").json()
        missing = []
        for method, path, op in operations(stack):
            if not op.get("summary") or not op.get("description"):
                missing.append(f"{method} {path}: summary/description")
            body = op.get("requestBody", {}).get("content", {}).get("application/json")
            if body is not None and not (
                body.get("examples") or body.get("example") or _has_example(spec, body["schema"])
            ):
                missing.append(f"{method} {path}: body example")
        assert missing == []


class TestApiKeys:
    def test_every_private_operation_refuses_a_missing_or_wrong_key(self, stack: Stack) -> None:
        private = [(m, p) for m, p, _ in operations(stack) if (m, p) not in PUBLIC]
        assert len(private) >= 18
        for method, path in private:
            concrete = re.sub(r"\{[^}]+\}", "x_unknown", path)
            for headers in ({}, {"Authorization": "Bearer wrong_key"}, {"Authorization": "x"}):
                response = stack.public.request(method, concrete, headers=headers, json={})
                assert response.status_code == 401, (method, concrete, response.text)
                error = response.json()["error"]
                assert error["type"] == "authentication_error", (method, concrete)

    @pytest.mark.parametrize("path", ["/health", "/docs", "/openapi.json"])
    def test_public_reads_need_no_key(self, stack: Stack, path: str) -> None:
        assert stack.public.get(path).status_code == 200
