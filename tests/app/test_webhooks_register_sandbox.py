"""`python -m app webhooks register URL` in sandbox mode (no STRIPE_SECRET_KEY): the emulator is
already wired to the service, so nothing is registered (a second endpoint would deliver every
event again, signed with a secret the service does not have: each delivery refused with 400)."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

from tests.fixtures.service import Stack, run_app

ROOT = Path(__file__).resolve().parents[2]


def test_sandbox_registers_nothing_and_says_why(stack: Stack) -> None:
    url = f"http://127.0.0.1:8000/webhooks/stripe?sandbox={uuid.uuid4().hex[:8]}"
    before = [e.id for e in stack.stripe.v1.webhook_endpoints.list({"limit": 100}).data]
    # Sandbox: no STRIPE_* variable but the base, where this emulator would register it.
    result = run_app(
        "webhooks",
        "register",
        url,
        database_url=stack.database_url,
        stripe_base=None,
        STRIPE_API_BASE=stack.emulator.url,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert "already wired to the service" in result.stdout
    assert "Nothing registered" in result.stdout
    assert "STRIPE_WEBHOOK_SECRET=" not in result.stdout
    after = stack.stripe.v1.webhook_endpoints.list({"limit": 100}).data
    assert [e.id for e in after] == before
    assert not [e for e in after if e.url == url]


def test_the_help_says_so() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "app", "webhooks", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert "the emulator is already wired to the service" in " ".join(result.stdout.split())
