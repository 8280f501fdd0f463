"""`python -m app …`: the service's command line.

python -m app migrate    bring the database to the latest schema (alembic upgrade head)
python -m app run        migrate, then serve; with no STRIPE_SECRET_KEY (sandbox mode) it also
                         starts the Stripe emulator wired to the service's webhook endpoint
python -m app reconcile  apply what Stripe holds to orders whose webhooks were lost (every
                         unfinished order's payment intent, then Stripe events not in the
                         inbox); prints each change; exits 1 if an item failed
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import subprocess
import sys
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy.engine import make_url

from app.config import SANDBOX_STRIPE_API_BASE, SANDBOX_WEBHOOK_SECRET, ConfigurationError, Settings
from app.reconcile import MAX_EVENT_DAYS, reconcile

SANDBOX_KEY_FILE = Path("var/api_key")


def migrate(settings: Settings) -> None:
    url = make_url(settings.database_url)
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    config = Config(os.environ.get("ALEMBIC_CONFIG", "alembic.ini"))
    config.attributes["database_url"] = settings.database_url
    config.attributes["configure_logger"] = False
    command.upgrade(config, "head")


def _sandbox_api_key() -> str:
    """The sandbox's API key: made once, kept in var/api_key so it survives restarts."""
    if SANDBOX_KEY_FILE.exists():
        return SANDBOX_KEY_FILE.read_text().strip()
    SANDBOX_KEY_FILE.parent.mkdir(parents=True, exist_ok=True)
    key = "sandbox_" + secrets.token_urlsafe(24)
    SANDBOX_KEY_FILE.write_text(key + "\n")
    SANDBOX_KEY_FILE.chmod(0o600)
    return key


def run(host: str, port: int) -> None:
    settings = Settings()
    env = dict(os.environ)
    emulator: subprocess.Popen[bytes] | None = None
    if settings.sandbox:
        if not settings.api_keys:
            env["API_KEYS"] = _sandbox_api_key()
        emulator_port = SANDBOX_STRIPE_API_BASE.rsplit(":", 1)[1]
        emulator = subprocess.Popen(
            [sys.executable, "-m", "emulator", "--port", emulator_port,
             "--webhook-url", f"http://{host}:{port}/webhooks/stripe",
             "--webhook-secret", SANDBOX_WEBHOOK_SECRET]
        )  # fmt: skip
    migrate(settings)
    print(f"Payments service on http://{host}:{port}/docs", flush=True)  # noqa: T201
    if settings.sandbox:
        print(  # noqa: T201
            f"Sandbox mode: Stripe is the emulator at {SANDBOX_STRIPE_API_BASE}; "
            f"API key: {env['API_KEYS'].split(',')[0]}",
            flush=True,
        )
    try:
        subprocess.run(
            [sys.executable, "-m", "uvicorn", "app.main:app", "--host", host, "--port", str(port)],
            env=env,
            check=False,
        )
    except KeyboardInterrupt:
        pass
    finally:
        if emulator is not None:
            emulator.terminate()
            emulator.wait()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m app",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("migrate", help="alembic upgrade head on DATABASE_URL")
    run_parser = commands.add_parser("run", help="migrate and serve (with the emulator in sandbox)")
    run_parser.add_argument("--host", default="127.0.0.1")
    run_parser.add_argument("--port", type=int, default=8000)
    reconcile_parser = commands.add_parser(
        "reconcile", help="apply Stripe's state to orders whose webhooks were lost"
    )
    reconcile_parser.add_argument(
        "--min-age",
        type=int,
        metavar="SECONDS",
        help="only orders at least this old (default: RECONCILE_MIN_AGE_SECONDS, 300)",
    )
    reconcile_parser.add_argument(
        "--since-days",
        type=int,
        default=MAX_EVENT_DAYS,
        choices=range(1, MAX_EVENT_DAYS + 1),
        metavar="DAYS",
        help=f"Stripe events of the last DAYS days, 1 to {MAX_EVENT_DAYS} (default)",
    )
    args = parser.parse_args(argv)
    try:
        _dispatch(args)
    except ConfigurationError as error:
        raise SystemExit(f"payments service: refusing to start: {error}") from None


def _dispatch(args: argparse.Namespace) -> None:
    if args.command == "migrate":
        migrate(Settings())
    elif args.command == "reconcile":
        settings = Settings()
        min_age = settings.reconcile_min_age_seconds if args.min_age is None else args.min_age
        report = asyncio.run(
            reconcile(
                settings,
                min_age_seconds=max(0, min_age),
                since_days=args.since_days,
                out=lambda line: print(line, flush=True),  # noqa: T201
            )
        )
        sys.exit(1 if report.errors else 0)
    else:
        run(args.host, args.port)


if __name__ == "__main__":
    main()
