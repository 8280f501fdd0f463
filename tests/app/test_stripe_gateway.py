"""The gateway itself, against the emulator: what it asks of the SDK beyond the calls."""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

import pytest
import stripe._util
from pydantic import SecretStr

from app.config import Settings
from app.stripe_gateway import StripeGateway
from tests.fixtures.emulator import EmulatorProcess
from tests.fixtures.service import STRIPE_TEST_KEY


def _create_a_customer(emulator: EmulatorProcess) -> None:
    async def call() -> None:
        settings = Settings(
            stripe_secret_key=SecretStr(STRIPE_TEST_KEY),
            stripe_api_base=emulator.url,
            stripe_webhook_secret=SecretStr("whsec_gateway_tests"),
        )
        gateway = StripeGateway(settings)
        try:
            await gateway.create_customer(
                {"email": "log@example.com"}, idempotency_key=str(uuid.uuid4())
            )
        finally:
            await gateway.close()

    asyncio.run(call())


def test_the_sdk_formats_its_log_lines_only_when_they_are_written(
    emulator_process: EmulatorProcess,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    formatted: list[dict[str, Any]] = []
    logfmt = stripe._util.logfmt

    def counted(props: dict[str, Any]) -> str:
        formatted.append(props)
        return str(logfmt(props))

    monkeypatch.setattr(stripe._util, "logfmt", counted)
    monkeypatch.delenv("STRIPE_LOG", raising=False)
    sdk_logger = logging.getLogger("stripe")
    level = sdk_logger.level
    sdk_logger.setLevel(logging.NOTSET)
    try:
        _create_a_customer(emulator_process)
    finally:
        sdk_logger.setLevel(level)
    assert formatted == []

    with caplog.at_level(logging.INFO, logger="stripe"):
        _create_a_customer(emulator_process)
    lines = [r.getMessage() for r in caplog.records if r.name == "stripe"]
    assert any("Request to Stripe api" in line for line in lines), lines
    assert any("response_code=200" in line for line in lines), lines
    assert not any("API response body" in line for line in lines), "DEBUG written at INFO"
    assert [p["message"] for p in formatted] == ["Request to Stripe api", "Stripe API response"]
