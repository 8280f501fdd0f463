"""Emulator settings, from the command line or the environment (`EMULATOR_*`)."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass

API_VERSION = "2026-10-28.endive"
# The publishable key pages give Stripe.js (served at `/v3`) in sandbox; any `pk_test_…` works.
PUBLISHABLE_KEY = "pk_test_emulator"


@dataclass(frozen=True, slots=True)
class Config:
    host: str = "127.0.0.1"
    port: int = 12111
    webhook_urls: tuple[str, ...] = ()
    webhook_secret: str = "whsec_emulator"
    latency_ms: int = 0
    empty: bool = False
    public_url: str = ""
    webhook_retry_base_ms: int = 500
    webhook_max_attempts: int = 8
    webhook_timeout_s: float = 10.0
    # Billing: days after a renewal's first failed payment at which it is retried, then what
    # becomes of the subscription (`cancel`, `unpaid`, `past_due`) and of its invoice (`open`,
    # `uncollectible`) once every retry failed: Stripe's "Manage failed payments" settings.
    billing_retry_days: tuple[int, ...] = (3, 5, 7)
    billing_after_retries: str = "cancel"
    billing_invoice_after_retries: str = "open"

    @property
    def base_url(self) -> str:
        return self.public_url.rstrip("/") or f"http://{self.host}:{self.port}"


def _env(name: str, default: str) -> str:
    return os.environ.get(f"EMULATOR_{name}", default)


def parse_args(argv: list[str] | None = None) -> Config:
    env_urls = [u for u in _env("WEBHOOK_URL", "").split(",") if u]
    parser = argparse.ArgumentParser(
        prog="python -m emulator",
        description="An offline, stateful Stripe emulator. Every flag can also be set as "
        "EMULATOR_<FLAG> in the environment (EMULATOR_WEBHOOK_URL takes a comma-separated list).",
    )
    parser.add_argument("--host", default=_env("HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(_env("PORT", "12111")))
    parser.add_argument(
        "--webhook-url",
        action="append",
        default=None,
        help="where to POST signed events; may be given more than once",
    )
    parser.add_argument("--webhook-secret", default=_env("WEBHOOK_SECRET", "whsec_emulator"))
    parser.add_argument(
        "--latency-ms",
        type=int,
        default=int(_env("LATENCY_MS", "0")),
        help="delay added to every /v1 call, as Stripe's own latency",
    )
    parser.add_argument(
        "--empty",
        action="store_true",
        default=_env("EMPTY", "") not in ("", "0", "false"),
        help="start without the demo catalogue (price_123, price_monthly)",
    )
    parser.add_argument(
        "--public-url",
        default=_env("PUBLIC_URL", ""),
        help="base URL of the hosted checkout pages (default http://HOST:PORT)",
    )
    parser.add_argument(
        "--webhook-retry-base-ms", type=int, default=int(_env("WEBHOOK_RETRY_BASE_MS", "500"))
    )
    parser.add_argument(
        "--webhook-max-attempts", type=int, default=int(_env("WEBHOOK_MAX_ATTEMPTS", "8"))
    )
    parser.add_argument(
        "--billing-retry-days",
        default=_env("BILLING_RETRY_DAYS", "3,5,7"),
        help="days after a failed renewal payment at which it is retried (comma-separated)",
    )
    parser.add_argument(
        "--billing-after-retries",
        choices=("cancel", "unpaid", "past_due"),
        default=_env("BILLING_AFTER_RETRIES", "cancel"),
        help="the subscription once every retry failed",
    )
    parser.add_argument(
        "--billing-invoice-after-retries",
        choices=("open", "uncollectible"),
        default=_env("BILLING_INVOICE_AFTER_RETRIES", "open"),
        help="the invoice once every retry failed",
    )
    args = parser.parse_args(argv)
    try:
        retry_days = tuple(int(d) for d in args.billing_retry_days.split(",") if d.strip())
    except ValueError:
        parser.error("--billing-retry-days takes comma-separated whole days, e.g. 3,5,7")
    if any(d < 1 for d in retry_days) or list(retry_days) != sorted(retry_days):
        parser.error("--billing-retry-days takes increasing positive days, e.g. 3,5,7")
    return Config(
        host=args.host,
        port=args.port,
        webhook_urls=tuple(args.webhook_url if args.webhook_url is not None else env_urls),
        webhook_secret=args.webhook_secret,
        latency_ms=args.latency_ms,
        empty=args.empty,
        public_url=args.public_url,
        webhook_retry_base_ms=args.webhook_retry_base_ms,
        webhook_max_attempts=args.webhook_max_attempts,
        billing_retry_days=retry_days,
        billing_after_retries=args.billing_after_retries,
        billing_invoice_after_retries=args.billing_invoice_after_retries,
    )
