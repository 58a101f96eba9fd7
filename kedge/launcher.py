"""`kedge up`: run every process of the Procfile from one command, on embedded defaults.

Order: the embedded broker first (until it answers), then ``topology apply``, then everything else.
Each process's output is prefixed with its name; Ctrl-C stops all of them (SIGTERM, then SIGKILL).
"""

from __future__ import annotations

import asyncio
import contextlib
import shlex
import shutil
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from rich.markup import escape

from kedge.errors import KedgeError
from kedge.output import console, print_table
from kedge.settings import Settings

STOP_TIMEOUT_S = 10.0
API_READY_TIMEOUT_S = 60.0


@dataclass
class Entry:
    name: str
    argv: list[str]
    proc: asyncio.subprocess.Process | None = None
    pump: asyncio.Task[None] | None = field(default=None, repr=False)


def read_procfile(path: Path) -> list[Entry]:
    """Parse ``name: command`` lines (comments and blanks ignored)."""
    if not path.is_file():
        raise KedgeError(f"no Procfile at {path}")
    entries = []
    for lineno, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, command = line.partition(":")
        if not sep or not name.strip() or not command.strip():
            raise KedgeError(f"{path}:{lineno}: expected 'name: command', got {raw!r}")
        argv = shlex.split(command)
        if argv[0] == "kedge":  # run with this interpreter, whatever PATH says
            argv = [sys.executable, "-m", "kedge", *argv[1:]]
        entries.append(Entry(name.strip(), argv))
    return entries


def listens(settings: Settings, name: str) -> str:
    """Where a process of the Procfile listens, for the status table."""
    s = settings
    ws = "wss" if s.integration.ws_tls_cert else "ws"
    mqtt = f"mqtt://{s.mqtt.host}:{s.mqtt.port}"
    if s.mqtt.tls_port is not None:
        mqtt += f", mqtts://{s.mqtt.host}:{s.mqtt.tls_port}"
    integration = f"mqtt://{s.integration.mqtt_host}:{s.integration.mqtt_port}"
    if s.integration.mqtt_tls_port is not None:
        integration += f", mqtts://{s.integration.mqtt_host}:{s.integration.mqtt_tls_port}"
    return {
        "broker": f"kafka://{s.broker.host}:{s.broker.port} (memory only)",
        "api": f"{_api_scheme(s)}://{s.api.host}:{s.api.port}",
        "http": f"{'https' if s.http.tls_cert else 'http'}://{s.http.host}:{s.http.port}",
        "mqtt": mqtt,
        "mqtt-integration": integration,
        "ws-integration": f"{ws}://{s.integration.ws_host}:{s.integration.ws_port}",
        "worker": "-",
    }.get(name, "-")


def _api_scheme(settings: Settings) -> str:
    return "https" if settings.api.tls_cert else "http"


async def _pump(entry: Entry, width: int) -> None:
    assert entry.proc is not None and entry.proc.stdout is not None
    colour = ["cyan", "magenta", "green", "yellow", "blue", "red"][hash(entry.name) % 6]
    async for raw in entry.proc.stdout:
        line = escape(raw.decode(errors="replace").rstrip())
        console.print(f"[{colour}]{entry.name:<{width}}[/] | {line}", highlight=False, markup=True,
                      soft_wrap=True)


async def _start(entry: Entry, env: dict[str, str], width: int) -> None:
    entry.proc = await asyncio.create_subprocess_exec(
        *entry.argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        stdin=asyncio.subprocess.DEVNULL, env=env, start_new_session=True,
    )
    entry.pump = asyncio.create_task(_pump(entry, width))


async def _stop(entries: list[Entry]) -> None:
    for entry in reversed(entries):
        if entry.proc and entry.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                entry.proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    for entry in reversed(entries):
        if entry.proc is None:
            continue
        try:
            await asyncio.wait_for(entry.proc.wait(), max(0.1, deadline - time.monotonic()))
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                entry.proc.kill()
            await entry.proc.wait()
        if entry.pump:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(entry.pump, 2)


def _forget_worker_tables(settings: Settings) -> None:
    """A fresh embedded broker has no changelogs and no offsets: local RocksDB tables of an earlier run would
    claim devices that are long gone (and Faust refuses tables ahead of their changelog). Start them empty."""
    tables = settings.data_dir / "worker"
    if tables.exists():
        shutil.rmtree(tables)
        console.print(f"embedded broker: starting the worker's tables afresh ({tables})", highlight=False)


async def _wait_api_ready(settings: Settings, entry: Entry, stop: asyncio.Event) -> None:
    """Wait until the API host answers ``/ready`` (its database is migrated), it dies, or Ctrl-C."""
    import httpx

    url = f"{_api_scheme(settings)}://{settings.api.host}:{settings.api.port}/ready"
    deadline = time.monotonic() + API_READY_TIMEOUT_S
    # verify=False only for this probe of our own child process (it sends nothing but GET /ready): the API's
    # certificate may be for a public name and a private CA that this process has no reason to know
    async with httpx.AsyncClient(timeout=2.0, verify=False) as client:
        while time.monotonic() < deadline and not stop.is_set():
            if entry.proc is None or entry.proc.returncode is not None:
                return  # the main loop reports the dead process
            with contextlib.suppress(httpx.HTTPError):
                if (await client.get(url)).status_code == 200:
                    return
            await asyncio.sleep(0.2)
    if not stop.is_set():
        raise KedgeError(f"the API host did not become ready at {url} within {API_READY_TIMEOUT_S:g}s")


async def up(settings: Settings, procfile: Path, *, only: list[str] | None = None,
             embedded_broker: bool = True) -> int:
    """Run the Procfile until Ctrl-C or until a process dies; returns the exit code."""
    from kedge.broker import wait_until_ready
    from kedge.commands.topology import run as topology_run

    entries = read_procfile(procfile)
    if not embedded_broker:
        entries = [e for e in entries if e.name != "broker"]
    if only:
        unknown = set(only) - {e.name for e in entries}
        if unknown:
            raise KedgeError(f"not in {procfile}: {', '.join(sorted(unknown))}")
        entries = [e for e in entries if e.name in only or e.name == "broker"]
    env = settings.environment_for_child()
    if embedded_broker and any(e.name == "worker" for e in entries):
        _forget_worker_tables(settings)
    if embedded_broker:
        env["KEDGE_KAFKA__BOOTSTRAP_SERVERS"] = f"{settings.broker.host}:{settings.broker.port}"
        settings = settings.model_copy(update={"kafka": settings.kafka.model_copy(
            update={"bootstrap_servers": env["KEDGE_KAFKA__BOOTSTRAP_SERVERS"]})})
    width = max(len(e.name) for e in entries)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    started: list[Entry] = []
    try:
        for entry in entries:
            if stop.is_set():
                break
            await _start(entry, env, width)
            started.append(entry)
            if entry.name == "broker":
                await wait_until_ready(settings.kafka.bootstrap_servers, settings.broker.ready_timeout_s)
                states = await topology_run(settings, create=True)
                console.print(f"topology: {sum(s.status.value == 'created' for s in states)} topics created, "
                              f"{len(states)} declared", highlight=False)
            elif entry.name == "api":  # it migrates the registry database the endpoints read
                await _wait_api_ready(settings, entry, stop)
        if embedded_broker and "broker" not in {e.name for e in entries}:
            await wait_until_ready(settings.kafka.bootstrap_servers, settings.broker.ready_timeout_s)
        print_table(["PROCESS", "PID", "STATE", "LISTENS"],
                    [(e.name, e.proc.pid if e.proc else "", "running", listens(settings, e.name))
                     for e in started], title="kedge up: Ctrl-C stops everything")
        died: Entry | None = None
        while not stop.is_set() and died is None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.5)
            died = next((e for e in started if e.proc and e.proc.returncode is not None), None)
        if died is not None:
            console.print(f"[red]{died.name} exited with code {died.proc.returncode if died.proc else '?'}; "
                          "stopping everything[/]")
            return 1
        return 0
    finally:
        console.print("stopping …", highlight=False)
        await _stop(started)
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)

