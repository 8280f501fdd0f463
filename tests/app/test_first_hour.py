"""The first hour with the service (issue 15): `python -m app run` on chosen ports, refusing taken
ports, `.env.example` copied as `.env` staying in sandbox mode, and the start-up banner.

Every `run` here is a real process in a temporary working directory (its `.env`, `var/api_key`
and SQLite file live there, never in the repository's), on free ports."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy import create_engine, text

from app.config import SANDBOX_STRIPE_KEY, Settings
from app.startup import banner
from tests.fixtures.emulator import free_port, free_ports
from tests.fixtures.service import _backends, postgres_database, sync_url

ROOT = Path(__file__).resolve().parents[2]
SETTINGS = [name.upper() for name in Settings.model_fields]


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without any service setting or port: as a fresh shell."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in SETTINGS and k != "PORT" and not k.startswith("EMULATOR_")
    }
    return {**env, "ALEMBIC_CONFIG": str(ROOT / "alembic.ini"), "PYTHONUNBUFFERED": "1", **extra}


def listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


@contextlib.contextmanager
def taken(port: int) -> Iterator[None]:
    """Someone else listening on `port` (as another emulator or service would be)."""
    with socket.socket() as holder:
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        holder.bind(("127.0.0.1", port))
        holder.listen()
        yield


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """A working directory as a fresh clone's after `cp .env.example .env`."""
    shutil.copy(ROOT / ".env.example", tmp_path / ".env")
    return tmp_path


class Run:
    """`python -m app run ARGS` in `cwd`, its output (stdout and stderr) in `cwd/run.log`."""

    def __init__(self, cwd: Path, *args: str, **env: str) -> None:
        self.cwd = cwd
        self.log_path = cwd / "run.log"
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "app", "run", *args],
                cwd=cwd,
                env=clean_env(**env),
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, url: str, timeout: float = 90) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"run exited {self.process.returncode}:\n{self.log}"
            with contextlib.suppress(httpx.HTTPError):
                response = httpx.get(f"{url}/health/ready", timeout=3)
                if response.status_code == 200:
                    return dict(response.json())
            time.sleep(0.2)
        raise AssertionError(f"not ready in {timeout} s:\n{self.log}")

    def wait(self, timeout: float = 30) -> int:
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            raise AssertionError(f"run still running after {timeout} s:\n{self.log}") from None

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def child(self, module: str) -> int:
        """The pid of run's child process `python -m <module>`."""
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            with contextlib.suppress(OSError):
                stat = (entry / "stat").read_text()
                ppid = int(stat.rsplit(")", 1)[1].split()[1])
                argv = (entry / "cmdline").read_bytes().split(b"\0")
                if ppid == self.process.pid and module.encode() in argv:
                    return int(entry.name)
        raise AssertionError(f"no child `python -m {module}` of run")


@pytest.fixture(params=_backends())
def database_url(request: pytest.FixtureRequest, workdir: Path) -> Iterator[str]:
    """The run's DATABASE_URL: SQLite under the working directory's ./var (the default, from
    `.env`), or a new database on TEST_DATABASE_URL's Postgres server."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{workdir}/var/payments.db"
        return
    with postgres_database(os.environ["TEST_DATABASE_URL"], "first_hour") as url:
        yield url


def rows(database_url: str, sql: str, **params: Any) -> list[dict[str, Any]]:
    engine = create_engine(sync_url(database_url))
    try:
        with engine.begin() as connection:
            return [dict(r._mapping) for r in connection.execute(text(sql), params)]
    finally:
        engine.dispose()


class TestRun:
    def test_serves_on_the_chosen_ports_with_stripe_and_webhooks_on_its_emulator(
        self, workdir: Path, database_url: str
    ) -> None:
        port, emulator_port = free_ports(2)
        env = {} if database_url.startswith("sqlite") else {"DATABASE_URL": database_url}
        run = Run(workdir, "--port", str(port), "--emulator-port", str(emulator_port), **env)
        try:
            url, stripe = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{emulator_port}"
            ready = run.wait_ready(url)

            assert ready["status"] == "ok"
            assert httpx.get(f"{stripe}/_emulator/health", timeout=5).status_code == 200
            key = (workdir / "var" / "api_key").read_text().strip()
            api = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=30)
            sdk = httpx.Client(
                base_url=stripe, headers={"Authorization": f"Bearer {SANDBOX_STRIPE_KEY}"}
            )
            with api, sdk:
                created = api.post(
                    "/payment-intents",
                    json={
                        "amount": 1500,
                        "currency": "usd",
                        "automatic_payment_methods": {"enabled": True},
                    },
                )
                assert created.status_code == 200, created.text
                intent = created.json()
                # The intent is on the emulator at --emulator-port.
                assert sdk.get(f"/v1/payment_intents/{intent['id']}").status_code == 200
                confirmed = api.post(
                    f"/payment-intents/{intent['id']}/confirm",
                    json={"payment_method": "pm_card_visa", "return_url": "https://example.com/"},
                )
                assert confirmed.status_code == 200, confirmed.text
            # Its webhook reached the service at --port: the event is in the service's inbox.
            deadline = time.monotonic() + 20
            sql = "SELECT type FROM webhook_events WHERE object_id = :id"
            while time.monotonic() < deadline:
                types = {r["type"] for r in rows(database_url, sql, id=intent["id"])}
                if "payment_intent.succeeded" in types:
                    break
                time.sleep(0.2)
            else:
                raise AssertionError(f"no webhook reached the service:\n{run.log}")
            log = run.log
            assert f"Payments service on {url}/docs" in log
            assert f"Sandbox mode: Stripe is the emulator at {stripe}; API key: {key}" in log
            # The lifespan's banner, under `app run`: no secret in it.
            assert "start-up: mode: sandbox" in log
            assert f"start-up: stripe: {stripe}\n" in log
            assert "start-up: API key: the one in var/api_key" in log

            # The emulator dies: run stops the service and exits non-zero.
            os.kill(run.child("emulator"), signal.SIGKILL)
            assert run.wait() != 0
            assert f"the emulator (port {emulator_port}) exited" in run.log
            assert not listening(port)
        finally:
            run.stop()

    def test_sigterm_stops_both_processes_and_exits_0(self, workdir: Path) -> None:
        port, emulator_port = free_ports(2)
        run = Run(workdir, "--port", str(port), "--emulator-port", str(emulator_port))
        try:
            run.wait_ready(f"http://127.0.0.1:{port}")

            run.process.terminate()

            assert run.wait() == 0, run.log
            assert not listening(port)
            assert not listening(emulator_port)
        finally:
            run.stop()

    def test_the_service_fails_after_start_run_exits_non_zero(self, workdir: Path) -> None:
        port, emulator_port = free_ports(2)
        run = Run(workdir, "--port", str(port), "--emulator-port", str(emulator_port))
        try:
            run.wait_ready(f"http://127.0.0.1:{port}")

            os.kill(run.child("uvicorn"), signal.SIGKILL)

            assert run.wait() != 0
            assert f"the service (port {port}) exited" in run.log
            assert not listening(emulator_port)
        finally:
            run.stop()

    def test_a_taken_emulator_port_stops_it_before_anything_starts(self, workdir: Path) -> None:
        port, emulator_port = free_ports(2)
        with taken(emulator_port):
            run = Run(workdir, "--port", str(port), "--emulator-port", str(emulator_port))
            code = run.wait()

        assert code != 0
        assert (
            f"port {emulator_port} is in use (another emulator or service?): stop it or run "
            "`make run EMULATOR_PORT=…`"
        ) in run.log
        assert not listening(port)
        assert not (workdir / "var").exists()

    def test_the_emulator_port_comes_from_stripe_api_base(self, workdir: Path) -> None:
        port, emulator_port = free_ports(2)
        with taken(emulator_port):
            run = Run(
                workdir, "--port", str(port), STRIPE_API_BASE=f"http://127.0.0.1:{emulator_port}"
            )
            code = run.wait()

        assert code != 0
        assert f"port {emulator_port} is in use" in run.log

    def test_a_taken_service_port_stops_it_before_anything_starts(self, workdir: Path) -> None:
        port, emulator_port = free_ports(2)
        with taken(port):
            run = Run(workdir, "--port", str(port), "--emulator-port", str(emulator_port))
            code = run.wait()

        assert code != 0
        assert f"port {port} is in use (another service?): stop it or run `make run PORT=…`" in (
            run.log
        )
        assert not listening(emulator_port)
        assert "Payments service on" not in run.log


class TestEnvExample:
    def test_copied_as_env_it_is_sandbox_with_every_default(
        self, workdir: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        for name in SETTINGS:
            monkeypatch.delenv(name, raising=False)
        monkeypatch.chdir(workdir)
        from_example = Settings()
        (workdir / ".env").unlink()

        assert from_example.sandbox
        assert from_example.stripe_base == "http://127.0.0.1:12111"
        assert from_example.api_keys == []
        assert from_example.rate_limit_redis_url is None
        assert from_example.model_dump() == Settings().model_dump()

    def test_an_empty_variable_is_unset(
        self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
    ) -> None:
        monkeypatch.chdir(tmp_path)
        for name in SETTINGS:
            monkeypatch.delenv(name, raising=False)
        defaults = Settings()
        for name in SETTINGS:
            monkeypatch.setenv(name, "")

        settings = Settings()

        assert settings.sandbox
        assert settings.model_dump() == defaults.model_dump()


class TestBanner:
    def test_plain_uvicorn_in_sandbox_says_it_has_no_api_key(self, tmp_path: Path) -> None:
        port = free_port()
        log_path = tmp_path / "uvicorn.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "uvicorn", "app.main:app", "--port", str(port)],
                cwd=tmp_path,
                env=clean_env(),
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and process.poll() is None:
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(f"http://127.0.0.1:{port}/health/live").status_code == 200:
                        break
                time.sleep(0.2)
            output = log_path.read_text()
        finally:
            process.terminate()
            process.wait(timeout=30)

        lines = [
            line.split("start-up: ", 1)[1] for line in output.splitlines() if "start-up: " in line
        ]
        assert lines[:3] == [
            "mode: sandbox (no STRIPE_SECRET_KEY): Stripe is the emulator, /demo is on",
            "database: sqlite+aiosqlite:///./var/payments.db",
            "stripe: http://127.0.0.1:12111",
        ], output
        assert lines[3].startswith("API keys: none, API_KEYS is unset: every API call is refused")
        assert "python -m app create-api-key" in lines[3]
        assert len(lines) == 4

    def test_live_mode_names_no_secret(self) -> None:
        settings = Settings(
            database_url="postgresql+asyncpg://pay:pw-s3cret@db.internal:5432/pay?password=x2",
            stripe_secret_key="sk_test_0123456789abcdef",
            stripe_webhook_secret="whsec_0123456789abcdef",
            api_keys=[SecretStr("key-0123456789"), SecretStr("key-9876543210")],
        )

        lines = banner(settings)

        assert lines == [
            "mode: live (STRIPE_SECRET_KEY is a test-mode key)",
            "database: postgresql+asyncpg://pay@db.internal:5432/pay",
            "stripe: https://api.stripe.com",
            "API keys: 2 from API_KEYS",
        ]
