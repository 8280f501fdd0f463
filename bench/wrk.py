"""Running wrk and reading its figures: the Lua scripts' `done` prints one `JSON {...}` line."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass
class Run:
    requests: int
    seconds: float
    errors: int
    p50_ms: float
    p99_ms: float

    @property
    def rps(self) -> float:
        return self.requests / self.seconds


def run_wrk(
    url: str,
    script: str,
    *,
    connections: int,
    seconds: int,
    env: Mapping[str, str],
    threads: int = 1,
    extra: tuple[str, ...] = (),
) -> Run:
    out = subprocess.run(
        ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", *extra, "-s", script, url],
        env=dict(env),
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    data = json.loads(next(line for line in out.splitlines() if line.startswith("JSON "))[5:])
    return Run(
        requests=data["requests"],
        seconds=data["duration_us"] / 1e6,
        errors=data["errors"],
        p50_ms=data["p50_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
    )
