"""Drive `python -m kedge` as a subprocess with its own config dir (XDG_CONFIG_HOME), bounded in time."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.procs import REPO, kedge

TIMEOUT_S = 60.0


@dataclass
class Result:
    argv: list[str]
    code: int
    out: str
    err: str

    def json(self) -> Any:
        try:
            return json.loads(self.out)
        except ValueError as exc:
            raise AssertionError(f"{self.argv[3:]} printed no JSON ({exc}):\n{self}") from None

    def lines(self) -> list[Any]:
        """stdout as JSON lines (``kedge stream -o json``)."""
        return [json.loads(line) for line in self.out.splitlines() if line.strip()]

    def ok(self) -> Result:
        assert self.code == 0, f"expected success:\n{self}"
        return self

    def fails(self, code: int = 1) -> str:
        """Assert the exit code and the one-line error on stderr (no traceback); return that line."""
        assert self.code == code, f"expected exit {code}:\n{self}"
        assert "Traceback" not in self.err, str(self)
        lines = self.err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), f"expected one error line:\n{self}"
        return lines[0]

    def __str__(self) -> str:
        return f"$ kedge {' '.join(self.argv[3:])}\nexit {self.code}\n--- stdout\n{self.out}\n--- stderr\n{self.err}"


class Cli:
    """``await cli("get", "apps", "-o", "json")``; every call has the same config dir."""

    def __init__(self, config_home: Path, env: dict[str, str] | None = None) -> None:
        self.config_home = config_home
        self.env = env or {}

    @property
    def config_file(self) -> Path:
        return self.config_home / "kedge" / "config.yaml"

    def environ(self, env: dict[str, str] | None = None) -> dict[str, str]:
        full = {k: v for k, v in os.environ.items() if not k.startswith("KEDGE_")}
        full.update({"XDG_CONFIG_HOME": str(self.config_home), "COLUMNS": "200", "NO_COLOR": "1"})
        full.update(self.env)
        full.update(env or {})
        return full

    async def spawn(self, *args: str) -> Running:
        """Start a long-running command (``kedge stream``); stop it with :meth:`Running.result`."""
        argv = kedge(*args)
        proc = await asyncio.create_subprocess_exec(
            *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            stdin=asyncio.subprocess.DEVNULL, env=self.environ(), cwd=REPO)
        return Running(argv, proc)

    def _run(self, args: tuple[str, ...], env: dict[str, str], stdin: str | None) -> Result:
        full = self.environ(env)
        argv = kedge(*args)
        proc = subprocess.run(argv, capture_output=True, text=True, env=full, cwd=REPO, timeout=TIMEOUT_S,
                              input=stdin if stdin is not None else "", check=False)
        return Result(argv, proc.returncode, proc.stdout, proc.stderr)

    async def __call__(self, *args: str, env: dict[str, str] | None = None, stdin: str | None = None) -> Result:
        return await asyncio.to_thread(self._run, args, env or {}, stdin)


@dataclass
class Running:
    argv: list[str]
    proc: asyncio.subprocess.Process

    @property
    def exited(self) -> bool:
        return self.proc.returncode is not None

    async def result(self, timeout_s: float = TIMEOUT_S) -> Result:
        """Wait for the exit (killing it after ``timeout_s``) and collect its output."""
        try:
            out, err = await asyncio.wait_for(self.proc.communicate(), timeout_s)
        except TimeoutError:
            self.proc.kill()
            out, err = await self.proc.communicate()
        assert self.proc.returncode is not None
        return Result(self.argv, self.proc.returncode, out.decode(), err.decode())

    def kill(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()
