"""`python -m app …`: the service's command line.

python -m app migrate    bring the database to the latest schema (alembic upgrade head)
python -m app run        migrate, then serve; with no STRIPE_SECRET_KEY (sandbox mode) it also
                         starts the Stripe emulator wired to the service's webhook endpoint;
                         --port (8000) and --emulator-port (12111); exits 1 if either port is
                         taken or either process fails
python -m app reconcile  apply what Stripe holds to orders whose webhooks were lost (Stripe's
                         events since its stored cursor that are not in the inbox; with no
                         cursor, --full, or one older than 30 days, every unfinished order's
                         payment intent first), links or abandons orders with no intent, cancels
                         uncaptured orphan intents; prints each change; exits 1 if an item failed
                         or a captured orphan was found, 2 if another reconcile is running
python -m app audit      hold the orders of a window against Stripe (paid here and not there or
                         the reverse, amounts, orphan intents, double charges, unmatched events);
                         exits 1 if anything affects money
python -m app replay-event EVT_ID
                         fetch one event from Stripe and apply it as its webhook would be,
                         through the inbox: an event already there was applied once and is not
                         applied again (run `reconcile` to bring its order to Stripe's state)
python -m app relay      hand the outbox's events on to RabbitMQ (EVENTS_AMQP_URL) and to the
                         subscribers' webhook endpoints until SIGTERM/SIGINT; as many as you
                         like, beside or instead of the service processes' own relays
                         (EVENTS_RELAY=off on those); --metrics-port serves its counters
python -m app create-api-key
                         print a new random API key and the API_KEYS line for it; nothing is
                         stored: the service reads its keys from the environment
python -m app webhooks register URL
                         create the service's webhook endpoint on Stripe (the pinned API version,
                         the events the service handles) and print its signing secret; in
                         sandbox mode nothing: the emulator is already wired to the service
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import json
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any, cast
from urllib.parse import urlsplit

import httpx
from alembic import command
from alembic.config import Config
from prometheus_client import start_http_server
from sqlalchemy import select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from app.audit import audit
from app.batch import connected
from app.config import SANDBOX_API_KEY_FILE, SANDBOX_WEBHOOK_SECRET, ConfigurationError, Settings
from app.db import create_engine, create_sessionmaker
from app.errors import AppError
from app.log import configure_logging
from app.models import WebhookEvent
from app.observability import Metrics, write_job_metrics
from app.reconcile import MAX_EVENT_DAYS, apply_event, reconcile
from app.relay.runner import Relay
from app.stripe_gateway import API_VERSION, StripeGateway
from app.webhooks.handlers import HANDLERS, OrderNotReady


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
    if SANDBOX_API_KEY_FILE.exists():
        return SANDBOX_API_KEY_FILE.read_text().strip()
    SANDBOX_API_KEY_FILE.parent.mkdir(parents=True, exist_ok=True)
    key = "sandbox_" + secrets.token_urlsafe(24)
    SANDBOX_API_KEY_FILE.write_text(key + "\n")
    SANDBOX_API_KEY_FILE.chmod(0o600)
    return key


DEFAULT_PORT = 8000
DEFAULT_EMULATOR_PORT = 12111
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
START_SECONDS = 60


class RunError(Exception):
    """`run` cannot start, or a process it started failed: the message says why and what to do."""


def port_number(text: str) -> int:
    """argparse's type for a TCP port."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"not a port number (1 to 65535): {port}")
    return port


def _emulator_port(option: int | None, settings: Settings) -> int:
    """The sandbox emulator's port: `--emulator-port`, else EMULATOR_PORT, else the port of a
    local STRIPE_API_BASE, else 12111."""
    if option is not None:
        return option
    if os.environ.get("EMULATOR_PORT", "").strip():
        try:
            return port_number(os.environ["EMULATOR_PORT"].strip())
        except argparse.ArgumentTypeError as error:
            raise RunError(f"EMULATOR_PORT: {error}") from None
    if settings.stripe_api_base:
        base = urlsplit(settings.stripe_api_base)
        if base.scheme != "http" or base.hostname not in LOCAL_HOSTS or base.port is None:
            raise RunError(
                f"STRIPE_API_BASE={settings.stripe_api_base} is not an emulator on this machine "
                "(http://127.0.0.1:PORT), and sandbox mode starts its own emulator: unset it, or "
                "choose the emulator's port with `make run EMULATOR_PORT=…` "
                "(python -m app run --emulator-port …)"
            )
        return base.port
    return DEFAULT_EMULATOR_PORT


def _bind_error(host: str, port: int) -> OSError | None:
    """Why binding `host:port` fails, as the server's own bind would (SO_REUSEADDR); None if
    it does not."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror as error:
        raise RunError(f"cannot resolve the host {host!r}: {error}") from None
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as error:
            return error
    return None


def _port_problem(host: str, port: int, in_use: str) -> str | None:
    error = _bind_error(host, port)
    if error is None:
        return None
    if error.errno == errno.EADDRINUSE:
        return in_use
    return f"cannot listen on {host}:{port}: {error.strerror or error}"


def _check_ports(host: str, port: int, emulator_port: int | None) -> None:
    if emulator_port == port:
        raise RunError(
            f"the service and the emulator cannot share port {port}: "
            "run `make run PORT=… EMULATOR_PORT=…` (python -m app run --port … --emulator-port …)"
        )
    problems = [
        _port_problem(
            host,
            port,
            f"port {port} is in use (another service?): stop it or run `make run PORT=…` "
            "(python -m app run --port …)",
        )
    ]
    if emulator_port is not None:
        problems.append(
            _port_problem(
                "127.0.0.1",
                emulator_port,
                f"port {emulator_port} is in use (another emulator or service?): stop it or run "
                "`make run EMULATOR_PORT=…` (python -m app run --emulator-port …)",
            )
        )
    found = [problem for problem in problems if problem]
    if found:
        raise RunError("; ".join(found))


def _url_host(host: str) -> str:
    """`host` as a client on this machine reaches a server bound to it."""
    if host in ("0.0.0.0", "", "::"):
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host


def _wait_until_up(
    process: subprocess.Popen[bytes], url: str, name: str, seconds: float = START_SECONDS
) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        code = process.poll()
        if code is not None:
            raise RunError(f"{name} exited at start with code {code} (its log is above)")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RunError(f"{name} did not answer {url} within {seconds:.0f} s")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def run(host: str, port: int, emulator_port_option: int | None = None) -> int:
    """Migrate, start the emulator (sandbox) and the service, and supervise them: the exit
    status is 0 after Ctrl-C or SIGTERM, non-zero when a port is taken or either process fails."""
    settings = Settings()
    env = dict(os.environ)
    emulator_port = _emulator_port(emulator_port_option, settings) if settings.sandbox else None
    if emulator_port_option is not None and emulator_port is None:
        print(  # noqa: T201
            "--emulator-port is ignored: STRIPE_SECRET_KEY is set, so no emulator is started",
            file=sys.stderr,
        )
    _check_ports(host, port, emulator_port)
    local = f"http://{_url_host(host)}:{port}"
    if emulator_port is not None:
        if not settings.api_keys:
            env["API_KEYS"] = _sandbox_api_key()
        env["STRIPE_API_BASE"] = f"http://127.0.0.1:{emulator_port}"
    migrate(settings)
    processes: list[tuple[str, subprocess.Popen[bytes]]] = []
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        if emulator_port is not None:
            emulator = subprocess.Popen(
                [sys.executable, "-m", "emulator", "--host", "127.0.0.1",
                 "--port", str(emulator_port), "--webhook-url", f"{local}/webhooks/stripe",
                 "--webhook-secret", SANDBOX_WEBHOOK_SECRET]
            )  # fmt: skip
            processes.append((f"the emulator (port {emulator_port})", emulator))
            _wait_until_up(emulator, f"{env['STRIPE_API_BASE']}/_emulator/health", processes[-1][0])
        service = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "app.main:app", "--host", host, "--port", str(port)],
            env=env,
        )
        processes.append((f"the service (port {port})", service))
        _wait_until_up(service, f"{local}/health/live", processes[-1][0])
        print(f"Payments service on {local}/docs", flush=True)  # noqa: T201
        if emulator_port is not None:
            print(  # noqa: T201
                f"Sandbox mode: Stripe is the emulator at {env['STRIPE_API_BASE']}; "
                f"API key: {env['API_KEYS'].split(',')[0]}",
                flush=True,
            )
        while True:
            for name, process in processes:
                code = process.poll()
                if code is not None:
                    raise RunError(f"{name} exited with code {code}; everything is stopped")
            time.sleep(0.2)
    except KeyboardInterrupt:
        return 0
    finally:
        signal.signal(signal.SIGTERM, previous)
        for _, process in reversed(processes):
            _stop(process)


def say(line: str) -> None:
    print(line, flush=True)  # noqa: T201


async def replay_event(settings: Settings, event_id: str, out: Callable[[str], None]) -> int:
    """Fetch `event_id` from Stripe and apply it through the webhook inbox; the exit status.

    The inbox's unique event id is what makes each event count once, so an event already in it
    is reported and not applied again: its order is brought to Stripe's current state by
    `reconcile`, never by running a handler twice."""
    async with connected(settings) as (sessionmaker, gateway):
        async with sessionmaker() as session:
            stored = await session.scalar(
                select(WebhookEvent).where(WebhookEvent.stripe_event_id == event_id)
            )
        if stored is not None:
            out(_already_applied(event_id, stored.type, stored.outcome))
            return 0
        try:
            event = await gateway.retrieve_event(event_id)
            payload: dict[str, Any] = event.to_dict(for_json=True)
            applied = await apply_event(sessionmaker, gateway, payload)
        except OrderNotReady:
            out(f"{event_id}: its order is not in this database; nothing applied")
            return 1
        except AppError as exc:
            out(f"{event_id}: failed: {exc.code}: {exc.message}; nothing applied")
            return 1
        if applied.duplicate:
            out(_already_applied(event_id, payload["type"], "its webhook arrived meanwhile"))
            return 0
        order = f" order {applied.order_id}" if applied.order_id else ""
        out(f"{event_id} {payload['type']}: {applied.outcome}{order}")
        for line in applied.moves:
            out(line)
        if not applied.moves:
            out("no order status changed")
        return 0


def run_audit(settings: Settings, args: argparse.Namespace) -> int:
    """`audit`'s exit status: 0 nothing affects money, 1 something does, 2 it could not run."""
    min_age = settings.reconcile_min_age_seconds if args.min_age is None else args.min_age
    try:
        report = asyncio.run(
            audit(settings, since_days=args.since, min_age_seconds=max(0, min_age))
        )
    except (AppError, DBAPIError) as exc:
        reason = exc.message if isinstance(exc, AppError) else type(exc.orig or exc).__name__
        print(f"audit: could not run: {reason}", file=sys.stderr)  # noqa: T201
        return 2
    if args.json:
        say(json.dumps(report.as_json()))
    else:
        for finding in report.findings:
            say(finding.line())
        say(report.summary())
    if args.metrics_file:
        counts = {**report.counts(), "money": report.money, "orders_checked": report.orders_checked}
        write_job_metrics(args.metrics_file, "audit", counts)
    return 1 if report.money else 0


def _already_applied(event_id: str, event_type: str, outcome: str) -> str:
    return (
        f"{event_id} {event_type}: already in the webhook inbox ({outcome}); it was applied once "
        "and is not applied again; nothing changed. `python -m app reconcile` brings orders to "
        "what Stripe holds now."
    )


def create_api_key(out: Callable[[str], None]) -> None:
    key = "pay_" + secrets.token_urlsafe(32)
    out(f"API key: {key}")
    out("Add it to the service's environment (comma-separated with the keys already there):")
    out(f"API_KEYS={key}")
    out(
        "Nothing was stored: the service reads its API keys from API_KEYS only; keep this key "
        "in your secret store, restart the service with it, then give it to the client."
    )


async def register_webhook(settings: Settings, url: str, out: Callable[[str], None]) -> int:
    """Create the service's webhook endpoint on Stripe; the exit status.

    In sandbox mode nothing is registered: the emulator `run` starts already delivers every event
    to the service, signed with the sandbox secret the service checks. An endpoint registered
    on top would be a second delivery stream of every event, signed with a secret of its own
    that the service does not have (Stripe's API, which the emulator follows, lets no caller
    choose an endpoint's secret), so each of its deliveries would be refused with 400."""
    if settings.sandbox:
        out(
            "Sandbox mode (no STRIPE_SECRET_KEY): the emulator that `python -m app run` starts is "
            "already wired to the service: it sends every event to /webhooks/stripe, signed with "
            f"the sandbox secret ({SANDBOX_WEBHOOK_SECRET}) the service checks. Registering {url} "
            "would add a second delivery of every event, signed with another secret, that the "
            "service would refuse. Nothing registered. With a real STRIPE_SECRET_KEY this command "
            "registers the endpoint with Stripe and prints its STRIPE_WEBHOOK_SECRET."
        )
        return 0
    gateway = StripeGateway(settings)
    events = sorted(HANDLERS)
    try:
        existing = await gateway.list_webhook_endpoints({"limit": 100})
        for endpoint in existing.data:
            if endpoint.url == url:
                out(
                    f"{url} is already registered on Stripe as {endpoint.id}; Stripe shows an "
                    "endpoint's signing secret only when it is created: roll its secret in the "
                    "Dashboard, or delete it and run this again. Nothing created."
                )
                return 1
        created = await gateway.create_webhook_endpoint(
            {
                "url": url,
                "api_version": cast(Any, API_VERSION),
                "enabled_events": cast(Any, events),
                "description": "payments service",
            },
            idempotency_key=f"webhooks-register:{uuid.uuid4()}",
        )
    except AppError as exc:
        out(f"failed: {exc.code}: {exc.message}; nothing created")
        return 1
    finally:
        await gateway.close()
    out(f"Registered {created.id} for {url} at API version {API_VERSION}, events:")
    for name in events:
        out(f"  {name}")
    out("Set its signing secret in the service's environment, then restart the service:")
    out(f"STRIPE_WEBHOOK_SECRET={created.secret}")
    return 0


async def run_relay(settings: Settings, metrics_port: int | None) -> int:
    """The relay on its own, until SIGTERM or SIGINT."""
    configure_logging(fmt=settings.log_format, level=settings.log_level, secrets=settings.secrets())
    engine = create_engine(
        settings.database_url, settings.database_pool_size, settings.database_direct_pool_size
    )
    metrics = Metrics()
    if metrics_port is not None:
        start_http_server(metrics_port, registry=metrics.registry)
    relay = Relay(create_sessionmaker(engine), settings, metrics)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, relay.stop)
    logging.getLogger("app.relay").info(
        "relay started (RabbitMQ: %s)", "on" if settings.events_amqp_url else "off"
    )
    try:
        await relay.run()
    finally:
        await engine.dispose()
    return 0


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
    run_parser.add_argument(
        "--port", type=port_number, default=DEFAULT_PORT, help="the service's port (default 8000)"
    )
    run_parser.add_argument(
        "--emulator-port",
        type=port_number,
        help="the sandbox emulator's port (default: EMULATOR_PORT, else STRIPE_API_BASE's port, "
        f"else {DEFAULT_EMULATOR_PORT}); the service's STRIPE_API_BASE points at it",
    )
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
        help=f"Stripe events and intents of the last DAYS days, 1 to {MAX_EVENT_DAYS} (default)",
    )
    reconcile_parser.add_argument(
        "--full",
        action="store_true",
        help="ignore the events cursor: retrieve every unfinished order's payment intent, look "
        "for orphans and apply events over --since-days, then store a new cursor",
    )
    reconcile_parser.add_argument(
        "--metrics-file",
        metavar="PATH",
        help="also write the run's counts there, for node_exporter's textfile collector",
    )
    audit_parser = commands.add_parser(
        "audit", help="hold the orders against Stripe; exit 1 if a difference affects money"
    )
    audit_parser.add_argument(
        "--since",
        type=int,
        default=MAX_EVENT_DAYS,
        choices=range(1, 366),
        metavar="DAYS",
        help=f"orders and intents created in the last DAYS days (default {MAX_EVENT_DAYS})",
    )
    audit_parser.add_argument(
        "--min-age",
        type=int,
        metavar="SECONDS",
        help="leave out younger objects (default: RECONCILE_MIN_AGE_SECONDS, 300)",
    )
    audit_parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    audit_parser.add_argument(
        "--metrics-file",
        metavar="PATH",
        help="also write the finding counts there, for node_exporter's textfile collector",
    )
    replay_parser = commands.add_parser(
        "replay-event",
        help="fetch a Stripe event and apply it through the webhook inbox (once, ever)",
    )
    replay_parser.add_argument("event_id", metavar="EVT_ID")
    relay_parser = commands.add_parser(
        "relay", help="hand outbox events on to RabbitMQ and webhook endpoints until stopped"
    )
    relay_parser.add_argument(
        "--metrics-port",
        type=port_number,
        help="serve this relay's Prometheus counters on that port",
    )
    commands.add_parser("create-api-key", help="print a new API key for API_KEYS (stores nothing)")
    webhooks_parser = commands.add_parser("webhooks", help="the service's webhook endpoint")
    webhooks_commands = webhooks_parser.add_subparsers(dest="webhooks_command", required=True)
    register_parser = webhooks_commands.add_parser(
        "register",
        help="create the webhook endpoint on Stripe and print its signing secret (in sandbox "
        "mode: nothing to do, the emulator is already wired to the service)",
    )
    register_parser.add_argument(
        "url", metavar="URL", help="e.g. https://pay.example.com/webhooks/stripe"
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
                full=args.full,
                out=say,
            )
        )
        if report.busy:
            sys.exit(2)
        if args.metrics_file:
            write_job_metrics(args.metrics_file, "reconcile", report.counts())
        sys.exit(1 if report.failed else 0)
    elif args.command == "audit":
        sys.exit(run_audit(Settings(), args))
    elif args.command == "replay-event":
        sys.exit(asyncio.run(replay_event(Settings(), args.event_id, say)))
    elif args.command == "relay":
        sys.exit(asyncio.run(run_relay(Settings(), args.metrics_port)))
    elif args.command == "create-api-key":
        create_api_key(say)
    elif args.command == "webhooks":
        sys.exit(asyncio.run(register_webhook(Settings(), args.url, say)))
    else:
        try:
            status = run(args.host, args.port, args.emulator_port)
        except RunError as error:
            raise SystemExit(f"payments service: {error}") from None
        sys.exit(status)


if __name__ == "__main__":
    main()
