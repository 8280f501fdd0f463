"""The route table: resource modules register their handlers here at import time.

A handler is a plain synchronous function `(ctx, params) -> dict | Response`. It runs on the event
loop without awaiting, so everything it reads and writes in the store happens atomically.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from emulator.schema import EMPTY_HASH, Hash, compile_params

if TYPE_CHECKING:
    from emulator.context import Ctx

Body = Literal["form", "json", "none"]


@dataclass(slots=True)
class Response:
    """A non-JSON answer (the hosted checkout page, a redirect)."""

    status: int
    body: bytes
    content_type: str = "text/html; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)


Handler = Callable[["Ctx", dict[str, Any]], "dict[str, Any] | Response"]


@dataclass(slots=True)
class Route:
    method: str
    template: str
    regex: re.Pattern[str]
    handler: Handler
    schema: Hash
    body: Body
    api: bool  # under /v1: needs a secret key, takes Idempotency-Key, may be faulted

    @property
    def name(self) -> str:
        return f"{self.method} {self.template}"


_PARAM = re.compile(r"\{(\w+)\}")


class Router:
    def __init__(self) -> None:
        self.routes: list[Route] = []
        self._static: dict[tuple[str, str], Route] = {}
        self._dynamic: dict[tuple[str, int], list[Route]] = {}

    def route(
        self, method: str, template: str, params: type | None = None, *, body: Body | None = None
    ) -> Callable[[Handler], Handler]:
        def register(handler: Handler) -> Handler:
            api = template.startswith("/v1/")
            kind: Body = body or ("form" if api and method != "GET" else "none")
            pattern = "^" + _PARAM.sub(r"(?P<\1>[^/]+)", template) + "$"
            route = Route(
                method=method,
                template=template,
                regex=re.compile(pattern),
                handler=handler,
                schema=compile_params(params) if params is not None else EMPTY_HASH,
                body=kind,
                api=api,
            )
            self.routes.append(route)
            if "{" in template:
                key = (method, template.count("/"))
                self._dynamic.setdefault(key, []).append(route)
            else:
                self._static[(method, template)] = route
            return handler

        return register

    def match(self, method: str, path: str) -> tuple[Route, dict[str, str]] | None:
        route = self._static.get((method, path))
        if route is not None:
            return route, {}
        for candidate in self._dynamic.get((method, path.count("/")), ()):
            m = candidate.regex.match(path)
            if m is not None:
                return candidate, m.groupdict()
        return None

    def knows_path(self, path: str) -> bool:
        return any(r.regex.match(path) for r in self.routes)


router = Router()
