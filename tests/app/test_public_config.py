"""`GET /api/config`: where the browser loads Stripe.js from and with which publishable key; and
the settings behind it, which refuse what cannot work or would hand browsers a secret.

Stripe requires live pages to load Stripe.js from js.stripe.com (docs.stripe.com/js/including:
"always load Stripe.js directly from https://js.stripe.com"), and a publishable key is the only
key a browser may hold (docs.stripe.com/keys)."""

from __future__ import annotations

import os
import subprocess
import sys

import httpx
import pytest

from app.config import (
    SANDBOX_PUBLISHABLE_KEY,
    STRIPE_JS_URL,
    ConfigurationError,
    Settings,
)
from tests.fixtures.service import CORS_ORIGIN, Stack

LIVE_KEY = "sk_live_51SecretLiveKeyThatMustNotBePrinted"
WEBHOOK_SECRET = "whsec_SecretWebhookValueNotToBePrinted"
LIVE = {
    "stripe_secret_key": LIVE_KEY,
    "stripe_webhook_secret": WEBHOOK_SECRET,
    "api_keys": "k_0123456789abcdef",
}


def settings(**values: str) -> Settings:
    """Settings from these values only (no environment, no `.env`)."""
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


class TestConfigEndpoint:
    def test_answers_without_an_api_key(self, stack: Stack) -> None:
        response = stack.public.get("/api/config")

        assert response.status_code == 200, response.text
        # The stack's Stripe is an emulator (STRIPE_API_BASE): its key and its Stripe.js.
        assert response.json() == {
            "publishableKey": SANDBOX_PUBLISHABLE_KEY,
            "stripeJsUrl": f"{stack.emulator.url}/v3",
        }

    def test_the_script_it_names_is_stripe_js(self, stack: Stack) -> None:
        url = stack.public.get("/api/config").json()["stripeJsUrl"]

        script = httpx.get(url, timeout=10)

        assert script.status_code == 200
        assert script.headers["content-type"].startswith("application/javascript")
        assert "window.Stripe = Stripe;" in script.text

    def test_cors_allows_the_configured_origin_only(self, stack: Stack) -> None:
        allowed = stack.public.get("/api/config", headers={"Origin": CORS_ORIGIN})
        other = stack.public.get("/api/config", headers={"Origin": "http://evil.example"})
        # The same rule as the create endpoint's.
        create = stack.public.options(
            "/api/create-payment-intent",
            headers={"Origin": CORS_ORIGIN, "Access-Control-Request-Method": "POST"},
        )

        assert allowed.headers["access-control-allow-origin"] == CORS_ORIGIN
        assert create.headers["access-control-allow-origin"] == CORS_ORIGIN
        assert "access-control-allow-origin" not in other.headers
        assert other.status_code == 200

    def test_documented_as_public(self, stack: Stack) -> None:
        operation = stack.public.get("/openapi.json").json()["paths"]["/api/config"]["get"]

        assert "security" not in operation
        assert set(operation["responses"]) == {"200", "400", "500"}
        schema = operation["responses"]["200"]["content"]["application/json"]["schema"]
        assert schema["$ref"].endswith("/PublicConfig")


class TestSettings:
    @pytest.fixture(autouse=True)
    def _no_environment(self, monkeypatch: pytest.MonkeyPatch) -> None:
        for name in Settings.model_fields:
            monkeypatch.delenv(name.upper(), raising=False)

    def test_sandbox_is_the_emulators_key_and_script(self) -> None:
        found = settings()

        assert found.publishable_key == SANDBOX_PUBLISHABLE_KEY
        assert found.js_url == "http://127.0.0.1:12111/v3"

    def test_sandbox_follows_the_emulators_address(self) -> None:
        found = settings(stripe_api_base="http://127.0.0.1:12200/")

        assert found.js_url == "http://127.0.0.1:12200/v3"

    def test_test_mode_against_stripe_uses_stripes_script(self) -> None:
        found = settings(stripe_secret_key="sk_test_x", stripe_webhook_secret="whsec_x")

        assert found.publishable_key is None
        assert found.js_url == STRIPE_JS_URL

    def test_set_values_are_used(self) -> None:
        found = settings(
            stripe_secret_key="sk_test_x",
            stripe_webhook_secret="whsec_x",
            stripe_publishable_key="pk_test_mine",
            stripe_js_url="https://js.stripe.com/v3/",
        )

        assert (found.publishable_key, found.js_url) == ("pk_test_mine", STRIPE_JS_URL)

    def test_live_with_stripes_own_key_and_script(self) -> None:
        found = settings(**LIVE, stripe_publishable_key="pk_live_mine")

        assert (found.publishable_key, found.js_url) == ("pk_live_mine", STRIPE_JS_URL)

    @pytest.mark.parametrize(
        ("values", "named"),
        [
            ({**LIVE}, "pk_live_"),
            ({**LIVE, "stripe_publishable_key": "pk_test_mine"}, "pk_live_"),
            (
                {
                    **LIVE,
                    "stripe_publishable_key": "pk_live_mine",
                    "stripe_js_url": "http://127.0.0.1:12111/v3",
                },
                "STRIPE_JS_URL",
            ),
            ({"stripe_publishable_key": "sk_test_SecretTestKeyNotToBeEchoed"}, "publishable"),
            ({"stripe_publishable_key": "pk_live_mine"}, "test-mode publishable key"),
            ({"stripe_js_url": "js.stripe.com/v3"}, "STRIPE_JS_URL"),
        ],
    )
    def test_refused_settings_are_named_without_their_values(
        self, values: dict[str, str], named: str
    ) -> None:
        with pytest.raises(ConfigurationError) as refused:
            settings(**values)

        message = str(refused.value)
        assert named in message
        for secret in (LIVE_KEY, WEBHOOK_SECRET, "SecretTestKeyNotToBeEchoed"):
            assert secret not in message

    def test_a_live_service_without_a_publishable_key_refuses_to_start(self) -> None:
        environment = {
            k: v for k, v in os.environ.items() if not k.startswith("STRIPE_") and k != "API_KEYS"
        }
        environment.update(
            DATABASE_URL="sqlite+aiosqlite:////tmp/payments-js-never-used.db",
            STRIPE_SECRET_KEY=LIVE_KEY,
            STRIPE_WEBHOOK_SECRET=WEBHOOK_SECRET,
            API_KEYS="k_0123456789abcdef",
        )

        result = subprocess.run(
            [sys.executable, "-m", "uvicorn", "app.main:app", "--port", "1"],
            env=environment,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

        assert result.returncode != 0
        output = result.stdout + result.stderr
        assert "refusing to start" in output
        assert "STRIPE_PUBLISHABLE_KEY" in output
        assert LIVE_KEY not in output
        assert LIVE_KEY[8:] not in output
