"""Which URLs a webhook endpoint may have: http or https, a host, no user name or password, at
most 2,048 characters; and in live mode (unless `WEBHOOK_ENDPOINTS_ALLOW_PRIVATE`) a host that is
neither `localhost` nor an address (literal, or any its name resolves to) outside the public
internet, so that an API key cannot make the service probe its own network. The relay asks again
at delivery time (`refused_reason`): what a name resolves to can change."""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import socket
from urllib.parse import urlsplit

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver

from app.config import Settings
from app.errors import InvalidRequest

MAX_URL_LENGTH = 2048
RESOLVE_TIMEOUT_SECONDS = 5.0

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def format_problem(url: str) -> str | None:
    """What makes `url` unusable as an endpoint in any mode; None if nothing."""
    if len(url) > MAX_URL_LENGTH:
        return f"it is longer than {MAX_URL_LENGTH} characters"
    if any(c <= " " or c == "\x7f" for c in url):
        return "it contains spaces or control characters"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return "it is not a valid URL (its host or port cannot be read)"
    if parts.scheme.lower() not in ("http", "https"):
        return "it must start with http:// or https://"
    if "@" in parts.netloc:
        return "it must not hold a user name or password (user:pass@)"
    if not parts.hostname:
        return "it has no host"
    if port == 0:
        return "its port must be between 1 and 65535"
    return None


async def refused_reason(url: str, settings: Settings) -> str | None:
    """Why `url` may not receive deliveries under `settings`; None when it may."""
    problem = format_problem(url)
    if problem is not None or not settings.live or settings.webhook_endpoints_allow_private:
        return problem
    parts = urlsplit(url)
    host = (parts.hostname or "").rstrip(".")
    if host == "localhost" or host.endswith(".localhost"):
        return f"its host {host} is localhost"
    try:
        literal = ipaddress.ip_address(host)
    except ValueError:
        return await _resolved_problem(host, parts.port)
    kind = _address_kind(literal)
    return None if kind is None else f"its host {host} is {kind}"


async def check_url(url: str, settings: Settings) -> None:
    """A 400 on `url` naming why, when it is refused."""
    problem = format_problem(url)
    if problem is not None:
        raise InvalidRequest(f"url: {problem}.", code="parameter_invalid", param="url")
    reason = await refused_reason(url, settings)
    if reason is not None:
        raise InvalidRequest(
            f"url: {reason}: a live service sends events to public addresses only "
            "(WEBHOOK_ENDPOINTS_ALLOW_PRIVATE=true allows the others).",
            code="url_refused",
            param="url",
        )


async def _resolved_problem(host: str, port: int | None) -> str | None:
    try:
        found = await asyncio.wait_for(
            asyncio.to_thread(socket.getaddrinfo, host, port, type=socket.SOCK_STREAM),
            RESOLVE_TIMEOUT_SECONDS,
        )
    except (OSError, UnicodeError, TimeoutError):
        return f"its host {host} could not be resolved"
    if not found:
        return f"its host {host} could not be resolved"
    return _non_public(host, [str(sockaddr[0]) for *_, sockaddr in found])


def _non_public(host: str, addresses: list[str]) -> str | None:
    """Why `host`, resolved to `addresses`, may not receive deliveries; None if all are public."""
    for found in addresses:
        address = ipaddress.ip_address(found.partition("%")[0])
        kind = _address_kind(address)
        if kind is not None:
            return f"its host {host} resolves to {address}, {kind}"
    return None


class PublicOnlyResolver(AbstractResolver):
    """The relay's resolver in live mode (unless `WEBHOOK_ENDPOINTS_ALLOW_PRIVATE`): a name's
    addresses, refused (`OSError`) when any is not public. The connection goes to exactly the
    addresses checked here, so a name that resolved to a public address when `refused_reason`
    asked cannot lead the POST to a private one on a second lookup (DNS rebinding)."""

    def __init__(self) -> None:
        self._resolver: ThreadedResolver | None = None  # made in the event loop it serves

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        if self._resolver is None:
            self._resolver = ThreadedResolver()
        found = await self._resolver.resolve(host, port, family)
        problem = _non_public(host, [result["host"] for result in found])
        if problem is not None:
            raise OSError(errno.EACCES, f"refused: {problem}")
        return found

    async def close(self) -> None:
        if self._resolver is not None:
            await self._resolver.close()


def _address_kind(address: Address) -> str | None:
    """What makes `address` not a public one (an IPv4-mapped IPv6 address is judged as the IPv4
    address it maps); None for a public address."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    checks = (
        (address.is_unspecified, "an unspecified address"),
        (address.is_loopback, "a loopback address"),
        (address.is_link_local, "a link-local address"),
        (address.is_multicast, "a multicast address"),
        (address.is_reserved, "a reserved address"),
        (address.is_private, "a private address"),
        (not address.is_global, "not a public address"),
    )
    return next((kind for refused, kind in checks if refused), None)
