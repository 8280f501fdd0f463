"""Schemathesis against the service's own /openapi.json: every operation, with and without an API
key, finds no 5xx and no response that breaks the document (undeclared status, body not matching
its schema, wrong content type).

A bounded run is part of `make test` (FUZZ_EXAMPLES per operation, default 8, on SQLite only);
`make fuzz` runs it with many more. The service under fuzz is its own process, with its own
emulator and database and no rate limit, so its load touches no other test.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.generation.modes import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.app.test_logs import LoggedService, wired_service
from tests.fixtures.service import API_KEY

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "8"))
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@pytest.fixture(scope="module")
def fuzzed() -> Iterator[LoggedService]:
    with wired_service(PUBLIC_RATE_LIMIT="off") as both:
        yield both.service


@pytest.fixture(scope="module")
def http() -> Iterator[requests.Session]:
    with requests.Session() as session:
        yield session


def test_the_api_keeps_its_own_contract(
    fuzzed: LoggedService, http: requests.Session, subtests: pytest.Subtests
) -> None:
    schema = schemathesis.openapi.from_url(f"{fuzzed.url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 20

    for operation in operations:
        with subtests.test(msg=operation.label):

            @given(
                case=operation.as_strategy(GenerationMode.POSITIVE)
                | operation.as_strategy(GenerationMode.NEGATIVE)
            )
            @settings(
                max_examples=EXAMPLES,
                deadline=None,
                derandomize=True,
                suppress_health_check=list(HealthCheck),
                database=None,
            )
            def fuzz(case: schemathesis.Case) -> None:
                for headers in ({"Authorization": f"Bearer {API_KEY}"}, {}):
                    case.call_and_validate(
                        base_url=fuzzed.url, session=http, headers=headers, checks=CHECKS
                    )

            fuzz()
