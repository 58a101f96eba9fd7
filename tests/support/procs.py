"""Start Kedge processes as subprocesses with bounded readiness waits; show their logs when a test fails."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Proc:
    """A child process whose combined output goes to ``log_path``."""

    name: str
    argv: list[str]
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)
    popen: subprocess.Popen[bytes] | None = None

    def start(self) -> Proc:
        env = {k: v for k, v in os.environ.items() if not k.startswith("KEDGE_")}
        env.update(self.env)
        env["PYTHONUNBUFFERED"] = "1"
        with open(self.log_path, "ab") as log:
            self.popen = subprocess.Popen(
                self.argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, cwd=REPO,
                start_new_session=True,
            )
        return self

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    @property
    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    async def wait_for_log(self, needle: str, timeout_s: float, *, after: int = 0) -> None:
        """Wait until ``needle`` appears in the log (past byte ``after``), the process dies, or time runs out."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if needle in self.log()[after:]:
                return
            if not self.running:
                raise AssertionError(f"{self.name} exited ({self.returncode}) before logging {needle!r}:\n"
                                     f"{tail(self.log())}")
            await asyncio.sleep(0.1)
        raise AssertionError(f"{self.name} did not log {needle!r} within {timeout_s}s:\n{tail(self.log())}")

    @property
    def returncode(self) -> int | None:
        return None if self.popen is None else self.popen.poll()

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.running and self.popen is not None:
            os.killpg(self.popen.pid, sig)
            self.popen.wait(10)

    def stop(self, timeout_s: float = 10.0) -> int | None:
        """SIGTERM, then SIGKILL after ``timeout_s``."""
        if self.popen is None:
            return None
        if self.popen.poll() is None:
            os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout_s)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(5)
        return self.popen.returncode


def tail(text: str, lines: int = 60) -> str:
    return "\n".join(text.splitlines()[-lines:])


def python(*args: str) -> list[str]:
    return [sys.executable, *args]


def kedge(*args: str) -> list[str]:
    return [sys.executable, "-m", "kedge", *args]


async def eventually(check: Callable[[], object], timeout_s: float, what: str, interval_s: float = 0.05) -> None:
    """Poll ``check`` (sync or async) until truthy; fail with ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    last: object = None
    while time.monotonic() < deadline:
        last = check()
        if asyncio.iscoroutine(last):
            last = await last
        if last:
            return
        await asyncio.sleep(interval_s)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what} (last: {last!r})")


class ProcGroup:
    """Processes started by one test; stopped at teardown, with their logs printed on failure."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.procs: list[Proc] = []

    def start(self, name: str, argv: Sequence[str], env: dict[str, str] | None = None) -> Proc:
        proc = Proc(name, list(argv), self.tmp / f"{name}-{len(self.procs)}.log", dict(env or {}))
        self.procs.append(proc.start())
        return proc

    def stop_all(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()

    def logs(self) -> str:
        return "\n".join(f"===== {p.name} ({p.log_path}) =====\n{tail(p.log(), 80)}" for p in self.procs)
