"""Settings from the environment (and `.env`): database, Stripe, API keys, CORS."""

from __future__ import annotations

from functools import cached_property
from typing import Annotated

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

SANDBOX_STRIPE_KEY = "sk_test_sandbox"
SANDBOX_STRIPE_API_BASE = "http://127.0.0.1:12111"
SANDBOX_WEBHOOK_SECRET = "whsec_sandbox"


def _split(value: object) -> object:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class Settings(BaseSettings):
    """With no `STRIPE_SECRET_KEY` the service runs in sandbox mode against the emulator."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    database_url: str = "sqlite+aiosqlite:///./var/payments.db"
    stripe_secret_key: SecretStr | None = None
    stripe_api_base: str | None = None
    stripe_webhook_secret: SecretStr | None = None
    stripe_max_network_retries: int = Field(default=2, ge=0, le=10)
    stripe_timeout_seconds: float = Field(default=30.0, gt=0)
    api_keys: Annotated[list[SecretStr], NoDecode] = Field(default_factory=list)
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    webhook_tolerance_seconds: int = 300
    idempotency_ttl_seconds: int = 24 * 60 * 60

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
            raise ValueError("a live Stripe key needs API_KEYS: refusing to start unprotected")
        if key and not self.stripe_webhook_secret:
            raise ValueError("STRIPE_WEBHOOK_SECRET is required with STRIPE_SECRET_KEY")
        return self

    @property
    def sandbox(self) -> bool:
        return self.stripe_secret_key is None

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
    def webhook_secret(self) -> str:
        if self.stripe_webhook_secret is None:
            return SANDBOX_WEBHOOK_SECRET
        return self.stripe_webhook_secret.get_secret_value()
