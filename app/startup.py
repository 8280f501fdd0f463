"""The start-up banner: which mode, database, Stripe and API keys a service process runs with.

Logged once from the app's lifespan, so `make run` and a plain `uvicorn app.main:app` both say
it. It names where things are, never a secret: the database URL without its password, the
Stripe key by its mode only, the API keys by where they come from and how many."""

from __future__ import annotations

import logging

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from app.config import SANDBOX_API_KEY_FILE, Settings

STRIPE_API = "https://api.stripe.com"
NO_API_KEY = (
    "API keys: none, API_KEYS is unset: every API call is refused with 401. `make run` "
    f"(python -m app run) makes one in {SANDBOX_API_KEY_FILE} in sandbox mode; with uvicorn, "
    "start with API_KEYS set, e.g. to the key `python -m app create-api-key` prints"
)

logger = logging.getLogger("app.startup")


def database(url: str) -> str:
    """`url` without its password (also one given as a `password=` query parameter)."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        return "(not a database URL)"
    query = {k: v for k, v in parsed.query.items() if "password" not in k.lower()}
    return parsed._replace(password=None).set(query=query).render_as_string(hide_password=True)


def _sandbox_key_file_holds(settings: Settings) -> bool:
    try:
        stored = SANDBOX_API_KEY_FILE.read_text().strip()
    except OSError:
        return False
    return any(key.get_secret_value() == stored for key in settings.api_keys)


def banner(settings: Settings) -> list[str]:
    """The start-up lines, in order: mode, database, Stripe, API keys."""
    if settings.sandbox:
        mode = "sandbox (no STRIPE_SECRET_KEY): Stripe is the emulator, /demo is on"
    else:
        test = settings.stripe_key.startswith(("sk_test_", "rk_test_"))
        mode = f"live (STRIPE_SECRET_KEY is a {'test-mode' if test else 'live-mode'} key)"
    lines = [
        f"mode: {mode}",
        f"database: {database(settings.database_url)}",
        f"stripe: {settings.stripe_base or STRIPE_API}",
    ]
    count = len(settings.api_keys)
    if count and settings.sandbox and _sandbox_key_file_holds(settings):
        lines.append(
            f"API key: the one in {SANDBOX_API_KEY_FILE} (made by `python -m app run`); "
            "send `Authorization: Bearer <key>`"
        )
    elif count:
        lines.append(f"API keys: {count} from API_KEYS")
    elif SANDBOX_API_KEY_FILE.exists():
        lines.append(
            f"{NO_API_KEY}; {SANDBOX_API_KEY_FILE} holds the one `make run` made: "
            f"API_KEYS=$(cat {SANDBOX_API_KEY_FILE}) uvicorn app.main:app"
        )
    else:
        lines.append(NO_API_KEY)
    return lines


def log_banner(settings: Settings) -> None:
    for line in banner(settings):
        warn = line.startswith(NO_API_KEY)
        (logger.warning if warn else logger.info)("start-up: %s", line)
