"""The relay connects, in live mode, only to addresses it checked itself: its HTTP client resolves
names through `PublicOnlyResolver` (app/subscribers/urls.py), so that a name that resolved to a
public address when `refused_reason` asked cannot send the POST to a private one on the second
lookup (DNS rebinding). A name whose answer changes between two lookups needs a DNS server of
our own, which this machine does not have; the tests drive the resolver and the relay's client
with names the machine resolves itself (`localhost`) and a real HTTP server on loopback."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest

from app.config import Settings
from app.relay.deliveries import http_session
from app.subscribers.urls import PublicOnlyResolver
from tests.app.test_webhook_endpoints import LIVE


def settings(**values: Any) -> Settings:
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@pytest.fixture(autouse=True)
def _no_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)


def test_a_name_resolving_to_loopback_is_refused() -> None:
    with pytest.raises(OSError, match="localhost resolves to 127.0.0.1, a loopback address"):
        asyncio.run(PublicOnlyResolver().resolve("localhost", 80))


def test_a_public_address_passes_as_resolved() -> None:
    found = asyncio.run(PublicOnlyResolver().resolve("93.184.215.14", 443))
    assert [(result["host"], result["port"]) for result in found] == [("93.184.215.14", 443)]


async def _post_to_a_local_server(config: Settings) -> int | str:
    """A real server on 127.0.0.1 answering 200, reached by name (`localhost`) through the
    relay's HTTP client: its status, or the connection error's text."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with http_session(config, 5) as http:
            try:
                async with http.post(f"http://localhost:{port}/hook", data=b"{}") as response:
                    return response.status
            except aiohttp.ClientConnectorError as exc:
                return str(exc)
    finally:
        server.close()
        await server.wait_closed()


def test_the_live_relay_does_not_connect_to_a_name_resolving_to_loopback() -> None:
    outcome = asyncio.run(_post_to_a_local_server(settings(**LIVE)))
    assert isinstance(outcome, str)
    assert "refused: its host localhost resolves to" in outcome, outcome
    assert "a loopback address" in outcome, outcome


def test_the_relay_connects_to_private_addresses_when_allowed() -> None:
    assert asyncio.run(_post_to_a_local_server(settings())) == 200
    allowed = settings(**LIVE, webhook_endpoints_allow_private=True)
    assert asyncio.run(_post_to_a_local_server(allowed)) == 200
