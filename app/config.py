"""Settings from the environment (and `.env`): database, Stripe, API keys, CORS, limits.

A setting that does not validate raises `ConfigurationError`, whose message names the variables
and the rules they break but never their values: pydantic's own error would echo the input, and
the input holds the secrets.
"""

from __future__ import annotations

import re
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

SANDBOX_STRIPE_KEY = "sk_test_sandbox"
SANDBOX_STRIPE_API_BASE = "http://127.0.0.1:12111"
SANDBOX_WEBHOOK_SECRET = "whsec_sandbox"
# What the browser's Stripe.js gets (`GET /api/config`) when Stripe is the emulator: the key the
# emulator's pages use (it takes any `pk_test_…`) and its copy of Stripe.js, at `<base>/v3`.
SANDBOX_PUBLISHABLE_KEY = "pk_test_emulator"
STRIPE_JS_URL = "https://js.stripe.com/v3/"
# The API key `python -m app run` makes in sandbox mode (relative to the working directory).
SANDBOX_API_KEY_FILE = Path("var/api_key")


RATE_WINDOWS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}
_RATE = re.compile(r"^\s*(\d+)\s*/\s*(second|minute|hour|day)\s*$")


class ConfigurationError(ValueError):
    """The settings are unusable; the message names the variables, never their values."""

    @classmethod
    def of(cls, error: ValidationError) -> ConfigurationError:
        problems = []
        for item in error.errors(include_input=False, include_url=False, include_context=False):
            names = ".".join(str(part) for part in item["loc"]).upper()
            message = str(item["msg"]).removeprefix("Value error, ")
            problems.append(f"{names}: {message}" if names else message)
        return cls("invalid settings: " + "; ".join(problems))


def _split(value: object) -> object:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class Settings(BaseSettings):
    """With no `STRIPE_SECRET_KEY` the service runs in sandbox mode against the emulator."""

    # An empty value (`STRIPE_SECRET_KEY=` in `.env` or the environment) means unset: the
    # default applies, so `.env.example` copied as it is leaves the service in sandbox mode.
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", env_ignore_empty=True)

    database_url: str = "sqlite+aiosqlite:///./var/payments.db"
    # Postgres connections of SQLAlchemy's pool per process, kept open once opened: a request
    # holds one only while it reads or writes (never while Stripe answers on the create path),
    # so a few dozen serve hundreds in flight.
    database_pool_size: int = Field(default=20, ge=1, le=500)
    # Postgres connections of app.pg_direct's pool per process: the hot paths' short statements,
    # which never wait for Stripe or a lock; about Postgres's cores, as more only contend.
    database_direct_pool_size: int = Field(default=8, ge=1, le=500)
    stripe_secret_key: SecretStr | None = None
    stripe_api_base: str | None = None
    stripe_webhook_secret: SecretStr | None = None
    # For the browser (`GET /api/config`): Stripe.js's key and where the page loads Stripe.js.
    stripe_publishable_key: str | None = None
    stripe_js_url: str | None = None
    stripe_max_network_retries: int = Field(default=2, ge=0, le=10)
    stripe_timeout_seconds: float = Field(default=30.0, gt=0)
    # Stripe's 429: retried this many times, each after Retry-After capped at the wait below.
    stripe_rate_limit_retries: int = Field(default=2, ge=0, le=10)
    stripe_rate_limit_max_wait_seconds: float = Field(default=2.0, ge=0)
    # `python -m app reconcile` leaves younger orders to the requests and webhooks in flight.
    reconcile_min_age_seconds: int = Field(default=300, ge=0)
    api_keys: Annotated[list[SecretStr], NoDecode] = Field(default_factory=list)
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    webhook_tolerance_seconds: int = 300
    # An event naming an order or intent the service does not hold is answered 503 (Stripe
    # delivers it again) while it may be racing the order's commit; after this many seconds from
    # its `created`, it is stored as `unmatched`, acknowledged, and listed by `audit`.
    webhook_unmatched_after_seconds: int = Field(default=600, ge=0)
    idempotency_ttl_seconds: int = 24 * 60 * 60
    # How long a `past_due` subscription still entitles its customer, from the moment it went
    # past due (on its test clock's time, if it has one): 0, not at all.
    subscription_grace_seconds: int = Field(default=0, ge=0)
    # Requests per client IP on the public endpoint: "<n>/<second|minute|hour|day>", or "off".
    public_rate_limit: str = "60/minute"
    # Shared counters for the rate limit across replicas (redis://…); in process memory without.
    rate_limit_redis_url: SecretStr | None = None
    max_body_bytes: int = Field(default=1024 * 1024, gt=0)
    public_max_body_bytes: int = Field(default=64 * 1024, gt=0)
    # Events out (app/relay): where the relay runs, RabbitMQ, and the subscribers' deliveries.
    # `in-process`: every service process runs the relay (they share the work through row locks);
    # `off`: only `python -m app relay` processes deliver.
    events_relay: Literal["in-process", "off"] = "in-process"
    events_amqp_url: SecretStr | None = None
    events_amqp_exchange: str = Field(default="payments.events", min_length=1, max_length=255)
    events_delivery_timeout_seconds: float = Field(default=10.0, gt=0, le=60)
    # A failed delivery is retried after base × 2^(attempts − 1), at most the max interval, until
    # the window from the first attempt closes (Stripe's: exponential back-off over three days).
    events_retry_base_seconds: float = Field(default=30.0, gt=0)
    events_retry_max_interval_seconds: float = Field(default=6 * 3600.0, gt=0)
    events_retry_window_seconds: float = Field(default=3 * 24 * 3600.0, gt=0)
    # Published events whose deliveries are all settled are deleted after this many days.
    events_retention_days: float = Field(default=30.0, gt=0)
    # How often an idle relay looks for new events and due deliveries.
    events_relay_poll_seconds: float = Field(default=0.05, gt=0, le=60)
    # `/health/ready` reports the outbox as behind when its oldest unpublished event is older.
    events_backlog_alert_seconds: float = Field(default=60.0, gt=0)
    # Subscriber URLs on private, loopback or link-local addresses: refused with a live Stripe
    # key unless this is true (they would let an API key holder probe the service's network).
    webhook_endpoints_allow_private: bool = False
    log_format: Literal["text", "json"] = "text"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    def __init__(self, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as error:
            raise ConfigurationError.of(error) from None

    @field_validator("public_rate_limit")
    @classmethod
    def _rate(cls, value: str) -> str:
        if value.strip().lower() != "off" and not _RATE.match(value):
            raise ValueError("must be '<n>/<second|minute|hour|day>' (e.g. '60/minute') or 'off'")
        return value.strip()

    @model_validator(mode="before")
    @classmethod
    def _split_lists(cls, data: object) -> object:
        if isinstance(data, dict):
            for name in ("api_keys", "cors_origins", "API_KEYS", "CORS_ORIGINS"):
                if name in data:
                    data[name] = _split(data[name])
        return data

    @model_validator(mode="after")
    def _refuse_unsafe(self) -> Settings:
        key = self.stripe_secret_key.get_secret_value() if self.stripe_secret_key else ""
        if key.startswith(("sk_live_", "rk_live_")) and not self.api_keys:
            raise ValueError(
                "a live Stripe key (sk_live_…) needs API_KEYS: without them anyone could move money"
            )
        if key and not self.stripe_webhook_secret:
            raise ValueError("STRIPE_WEBHOOK_SECRET is required with STRIPE_SECRET_KEY")
        self._refuse_unsafe_frontend()
        return self

    def _refuse_unsafe_frontend(self) -> None:
        """Stripe.js settings that cannot work, or that would hand browsers a secret: a key that
        is not publishable, a mode other than the secret key's, and for live payments anything
        but Stripe's own key and script (Stripe requires Stripe.js from js.stripe.com)."""
        publishable = self.stripe_publishable_key or ""
        if publishable and not publishable.startswith(("pk_test_", "pk_live_")):
            raise ValueError(
                "STRIPE_PUBLISHABLE_KEY must be a publishable key (pk_test_… or pk_live_…): it is "
                "sent to every browser"
            )
        js_url = self.stripe_js_url or ""
        if js_url and not js_url.startswith(("https://", "http://")):
            raise ValueError("STRIPE_JS_URL must be an http(s) URL")
        if self.live:
            if not publishable.startswith("pk_live_"):
                raise ValueError(
                    "a live Stripe key needs STRIPE_PUBLISHABLE_KEY set to the account's "
                    "live publishable key (pk_live_…)"
                )
            if js_url and js_url.rstrip("/") != STRIPE_JS_URL.rstrip("/"):
                raise ValueError(
                    f"a live Stripe key needs Stripe.js from Stripe: STRIPE_JS_URL must be "
                    f"{STRIPE_JS_URL} (or unset)"
                )
        elif publishable.startswith("pk_live_"):
            raise ValueError(
                "STRIPE_PUBLISHABLE_KEY is a live key but STRIPE_SECRET_KEY is not: use the "
                "test-mode publishable key (pk_test_…)"
            )

    @cached_property
    def public_rate(self) -> tuple[int, int] | None:
        """The public endpoint's limit as (requests, window seconds); None when off."""
        match = _RATE.match(self.public_rate_limit)
        if match is None:
            return None
        return int(match.group(1)), RATE_WINDOWS[match.group(2)]

    def secrets(self) -> list[str]:
        """Every configured secret, for the log redaction to remove wherever it appears."""
        found = [self.stripe_key, self.webhook_secret]
        found += [key.get_secret_value() for key in self.api_keys]
        if self.events_amqp_url is not None:
            found.append(self.events_amqp_url.get_secret_value())
        return [value for value in found if len(value) >= 8]

    @property
    def sandbox(self) -> bool:
        return self.stripe_secret_key is None

    @property
    def live(self) -> bool:
        """Whether the Stripe key moves real money (`sk_live_…`, `rk_live_…`)."""
        return self.stripe_key.startswith(("sk_live_", "rk_live_"))

    @cached_property
    def stripe_key(self) -> str:
        if self.stripe_secret_key is None:
            return SANDBOX_STRIPE_KEY
        return self.stripe_secret_key.get_secret_value()

    @cached_property
    def stripe_base(self) -> str | None:
        """Where Stripe calls go: the emulator in sandbox mode, else `STRIPE_API_BASE` if set."""
        return self.stripe_api_base or (SANDBOX_STRIPE_API_BASE if self.sandbox else None)

    @cached_property
    def publishable_key(self) -> str | None:
        """The browser's Stripe.js key: `STRIPE_PUBLISHABLE_KEY`, else the emulator's when Stripe
        is not Stripe itself (sandbox, or `STRIPE_API_BASE` set); None otherwise."""
        if self.stripe_publishable_key:
            return self.stripe_publishable_key
        if self.sandbox or self.stripe_api_base:
            return SANDBOX_PUBLISHABLE_KEY
        return None

    @cached_property
    def js_url(self) -> str:
        """Where pages load Stripe.js: `STRIPE_JS_URL`, else the emulator's copy (`<base>/v3`)
        when Stripe is not Stripe itself, else Stripe's own."""
        if self.stripe_js_url:
            return self.stripe_js_url
        if not self.live and self.stripe_base:
            return self.stripe_base.rstrip("/") + "/v3"
        return STRIPE_JS_URL

    @cached_property
    def webhook_secret(self) -> str:
        if self.stripe_webhook_secret is None:
            return SANDBOX_WEBHOOK_SECRET
        return self.stripe_webhook_secret.get_secret_value()
