"""Every fenced code block of README.md runs as written, against real processes.

- ```python: run by this interpreter against an emulator on a free port;
- ```sh (or bash): run by bash with `set -euo pipefail`, `curl` failing on an HTTP error
  (`--fail-with-body`), in a directory whose `var/api_key` holds the service's key (as `make run`
  leaves it) and `.venv` is the project's; a block that calls the service (`localhost:8000`, or
  uses `$H`/`$KEY`) runs after the README's own `KEY=…; H=…; J=…` block, against the stack's
  service; one that calls the emulator (`:12111`), against an emulator of its own;
- ```text, or a `no-run` word in the info string (```sh no-run): not runnable (a diagram, a
  synopsis, `make run`, Docker), skipped, by that explicit mark only.

The hard-coded addresses (`localhost:8000`, `127.0.0.1:12111`, …) are rewritten to the test's
ports before a block runs. A block with no info string, or one this test cannot run, fails.
The examples in the API table's rows (placeholders such as `cus_…`) are not run here.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.fixtures.emulator import EmulatorProcess, start_emulator, stop_emulator
from tests.fixtures.service import API_KEY, Stack

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
FENCE = re.compile(r"^( *)```(.*)$")
SERVICE = re.compile(r"\b(?:localhost|127\.0\.0\.1):8000\b")
EMULATOR = re.compile(r"\b(?:localhost|127\.0\.0\.1):12111\b")
RUNNABLE = {"python", "sh", "bash"}
SKIPPED = {"text"}


@dataclass(frozen=True)
class Block:
    line: int
    info: str
    text: str

    @property
    def words(self) -> list[str]:
        return self.info.split()

    @property
    def language(self) -> str:
        return self.words[0] if self.words else ""

    @property
    def marked_not_runnable(self) -> bool:
        return self.language in SKIPPED or "no-run" in self.words

    @property
    def needs_service(self) -> bool:
        return bool(SERVICE.search(self.text)) or "$H" in self.text

    @property
    def needs_emulator(self) -> bool:
        return bool(EMULATOR.search(self.text))

    def __str__(self) -> str:
        return f"README.md:{self.line} ```{self.info}"


def blocks(text: str) -> list[Block]:
    """The fenced blocks of `text`, their content dedented by their fence's indent."""
    found: list[Block] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if opening is None:
            i += 1
            continue
        indent, info = len(opening.group(1)), opening.group(2).strip()
        body: list[str] = []
        j = i + 1
        while j < len(lines) and lines[j].strip() != "```":
            body.append(lines[j][indent:] if lines[j][:indent].isspace() else lines[j])
            j += 1
        assert j < len(lines), f"README.md:{i + 1}: a fence that is never closed"
        found.append(Block(i + 1, info, "\n".join(body) + "\n"))
        i = j + 1
    return found


BLOCKS = blocks(README.read_text())
KEY_BLOCK = next(b for b in BLOCKS if b.text.startswith("KEY="))


def rewrite(text: str, service: str | None, emulator: str | None) -> str:
    if service is not None:
        text = SERVICE.sub(service, text)
    if emulator is not None:
        text = EMULATOR.sub(emulator, text)
    return text


@pytest.fixture(scope="module")
def workdir() -> Iterator[Path]:
    """A clone's directory after `make run`, as far as the blocks see it."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp)
        (path / "var").mkdir()
        (path / "var" / "api_key").write_text(API_KEY + "\n")
        (path / ".venv").symlink_to(ROOT / ".venv")
        yield path


@pytest.fixture(scope="module")
def own_emulator() -> Iterator[EmulatorProcess]:
    emulator = start_emulator()
    try:
        yield emulator
    finally:
        stop_emulator(emulator)


def run_sh(text: str, cwd: Path, prelude: str = "") -> subprocess.CompletedProcess[str]:
    script = (
        "set -euo pipefail\n"
        'curl() { command curl --fail-with-body -sS "$@"; }\n'
        f"{prelude}\n{text}"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("STRIPE_")}
    # As in a shell where the project's virtualenv is active.
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return subprocess.run(
        ["bash", "-c", script],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def host(url: str) -> str:
    return url.removeprefix("http://")


def test_every_block_is_runnable_or_marked() -> None:
    """The runner knows each block: a language it runs, or an explicit not-runnable mark."""
    unknown = [str(b) for b in BLOCKS if not b.marked_not_runnable and b.language not in RUNNABLE]
    assert not unknown, f"blocks neither runnable nor marked ```text / no-run: {unknown}"
    assert [b for b in BLOCKS if not b.marked_not_runnable and b.needs_service]
    assert [b for b in BLOCKS if b.language == "python"]


def test_the_blocks_parse() -> None:
    sample = "a\n```sh no-run\nmake run\n```\n  ```text\n  x\n    y\n  ```\n```\nz\n```\n"
    parsed = blocks(sample)
    assert [(b.line, b.info, b.text) for b in parsed] == [
        (2, "sh no-run", "make run\n"),
        (5, "text", "x\n  y\n"),
        (9, "", "z\n"),
    ]
    assert [b.marked_not_runnable for b in parsed] == [True, True, False]


def _ids(selected: list[Block]) -> list[str]:
    return [f"line{b.line}-{b.language}" for b in selected]


SERVICE_BLOCKS = [b for b in BLOCKS if not b.marked_not_runnable and b.needs_service]
OTHER_BLOCKS = [b for b in BLOCKS if not b.marked_not_runnable and not b.needs_service]


@pytest.mark.parametrize("block", SERVICE_BLOCKS, ids=_ids(SERVICE_BLOCKS))
def test_service_block_runs(stack: Stack, workdir: Path, block: Block) -> None:
    assert block.language in ("sh", "bash"), f"{block}: only shell blocks call the service"
    text = rewrite(block.text, host(stack.url), None)
    result = run_sh(text, workdir, prelude=KEY_BLOCK.text)
    assert result.returncode == 0, f"{block}\n{text}\n{result.stdout}\n{result.stderr}"
    if "capture_method" in block.text:
        # The manual capture took 45.00 of the 50.00 authorized.
        assert '"amount_received":4500' in result.stdout.replace(" ", ""), result.stdout
    if '"mode":"subscription"' in block.text:
        assert result.stdout.replace(" ", "").count('"order_id":null') == 2, result.stdout


@pytest.mark.parametrize("block", OTHER_BLOCKS, ids=_ids(OTHER_BLOCKS))
def test_block_runs(own_emulator: EmulatorProcess, workdir: Path, block: Block) -> None:
    emulator = host(own_emulator.url) if block.needs_emulator else None
    text = rewrite(block.text, None, emulator)
    if block.language == "python":
        result = subprocess.run(
            [sys.executable, "-c", text],
            cwd=workdir,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    else:
        assert block.language in ("sh", "bash"), f"{block}: this test cannot run it"
        result = run_sh(text, workdir)
    assert result.returncode == 0, f"{block}\n{text}\n{result.stdout}\n{result.stderr}"
    if block is KEY_BLOCK:
        check = run_sh('test "$KEY" = "$(cat var/api_key)" && test -n "$H" -a -n "$J"', workdir,
                       prelude=text)  # fmt: skip
        assert check.returncode == 0, check.stderr
