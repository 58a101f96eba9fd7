"""A load process: ``python -m kedge.bench.loadproc``, its :class:`LoadSpec` as the first line on stdin.

Protocol with the parent (JSON lines on stdout, commands on stdin):

1. reads the spec, connects every device of it, then prints ``{"kind": "ready", ...}`` (connected, failed,
   connect latencies);
2. waits for ``go <start> <end>`` (wall-clock seconds) on stdin, loads from start to end, printing
   ``{"kind": "tick", "at", "sent", "confirmed"}`` (cumulative) twice a second;
3. waits up to ``drain_s`` for outstanding acknowledgements, prints ``{"kind": "done", "devices":
   {index: [sent, [unconfirmed seqs]]}, "errors", "cpu_s"}``, disconnects and exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import ssl
import sys
import threading
import time
from collections import Counter
from typing import Any

import orjson

from kedge.bench.http_load import HttpDevice, request_head
from kedge.bench.mqtt_load import MqttDevice
from kedge.bench.payload import PayloadFormat
from kedge.bench.spec import LoadSpec
from kedge.bench.wire import PublishTemplate, connect_bytes, disconnect_bytes

TICK_S = 0.5
#: QoS 0 flat out: frames written per connection per round (until its transport pauses)
BATCH = 32
#: connect-storm keeps at most this many connection latencies (a sample is enough for percentiles)
MAX_SAMPLES = 200_000


def emit(kind: str, **data: Any) -> None:
    sys.stdout.buffer.write(orjson.dumps({"kind": kind, **data}) + b"\n")
    sys.stdout.buffer.flush()


def cpu_s() -> float:
    t = os.times()
    return t.user + t.system


class Generator:
    """The devices of one process and the pacing of their traffic."""

    def __init__(self, spec: LoadSpec) -> None:
        self.spec = spec
        self.fmt = PayloadFormat(spec.run_id, spec.payload_size)
        self.template = PublishTemplate(spec.channel, spec.qos, spec.version, spec.payload_size)
        self.flat_out = spec.rate <= 0
        self.running = False
        self.batch = BATCH
        self.sent = 0
        self.confirmed = 0
        self.errors: Counter[str] = Counter()
        self.conns: list[MqttDevice | HttpDevice] = []
        self.failed = 0
        self.connect_latencies: list[float] = []
        self.ssl: ssl.SSLContext | None = None
        if spec.tls:
            self.ssl = ssl.create_default_context(cafile=spec.tls_ca)
            if spec.tls_insecure:
                self.ssl.check_hostname = False
                self.ssl.verify_mode = ssl.CERT_NONE

    def error(self, what: str) -> None:
        self.errors[what] += 1

    def on_closed(self, conn: MqttDevice | HttpDevice) -> None:
        return None

    # ------------------------------------------------------------------------------------------ connect

    def _factory(self, index: int, name: str) -> MqttDevice | HttpDevice:
        s = self.spec
        user = f"{name}@{s.app}"
        if s.protocol == "http":
            return HttpDevice(self, index, request_head(s.host, s.channel, user, s.password, s.payload_size))
        return MqttDevice(self, index, connect_bytes(f"{s.run_id}-{index}", user, s.password, s.version,
                                                     s.keepalive))

    async def open(self, index: int, name: str) -> MqttDevice | HttpDevice | None:
        loop = asyncio.get_running_loop()
        try:
            _, conn = await asyncio.wait_for(loop.create_connection(
                lambda: self._factory(index, name), self.spec.host, self.spec.port, ssl=self.ssl),
                self.spec.connect_timeout_s)
            waiter = conn.ready if isinstance(conn, HttpDevice) else conn.connack
            code = await asyncio.wait_for(asyncio.shield(waiter), self.spec.connect_timeout_s)
        except (OSError, TimeoutError) as exc:
            self.error(f"connect: {type(exc).__name__}")
            return None
        if code != 0:
            self.error("connect refused" if code < 0 else f"CONNACK 0x{code:02x}")
            conn.abort()
            return None
        return conn

    async def connect_all(self) -> None:
        gate = asyncio.Semaphore(self.spec.connect_concurrency)
        interval = 1.0 / self.spec.connect_rate if self.spec.connect_rate > 0 else 0.0
        started = time.perf_counter()

        async def one(i: int, index: int, name: str) -> None:
            async with gate:
                if interval:
                    await asyncio.sleep(max(0.0, started + i * interval - time.perf_counter()))
                conn = await self.open(index, name)
                if conn is None:
                    self.failed += 1
                else:
                    self.conns.append(conn)
                    self.connect_latencies.append(conn.connect_latency)

        await asyncio.gather(*(one(i, index, name) for i, (index, name) in enumerate(self.spec.devices)))

    # ------------------------------------------------------------------------------------------ load

    async def publish_load(self, start: float, end: float) -> None:
        conns = self.conns
        rate = self.spec.rate
        cursor = 0
        self.running = True
        if self.flat_out:
            for c in conns:
                c.publish(self.spec.inflight if self.spec.qos else self.batch)
        while (now := time.time()) < end and conns:
            if self.flat_out:
                if self.spec.protocol == "mqtt" and self.spec.qos == 0:
                    for c in conns:
                        c.publish(self.batch)
                else:  # refill connections that lost a reply to an error
                    for c in conns:
                        if c.room():
                            c.publish(c.room())
                await asyncio.sleep(0.002)
                continue
            due = int(rate * (now - start)) - self.sent
            tries = len(conns)
            while due > 0 and tries > 0:
                c = conns[cursor]
                cursor = (cursor + 1) % len(conns)
                sent = c.publish(min(due, max(1, due // len(conns))))
                due -= sent
                tries = tries - 1 if not sent else len(conns)
            await asyncio.sleep(0.005)
        self.running = False

    async def drain(self) -> None:
        deadline = time.monotonic() + self.spec.drain_s
        # polling: the acks arrive in protocol callbacks across many connections
        while time.monotonic() < deadline and any(c.inflight and not c.closed for c in self.conns):  # noqa: ASYNC110
            await asyncio.sleep(0.02)

    async def storm(self, start: float, end: float) -> None:
        """connect-storm: connect (and at once disconnect) devices at ``connect_rate`` until ``end``."""
        rate = self.spec.connect_rate or 100.0
        devices = self.spec.devices
        tasks: set[asyncio.Task[None]] = set()
        latencies: list[float] = []
        bye = disconnect_bytes(self.spec.version)
        gate = asyncio.Semaphore(self.spec.connect_concurrency)
        # one connection per device at a time: a second CONNECT of a device whose first is still being answered
        # takes it over (last connect wins), which is the takeover path, not the connect path measured here
        busy = {index: asyncio.Lock() for index, _ in devices}

        async def one(index: int, name: str) -> None:
            async with busy[index], gate:
                conn = await self.open(index, name)
                if conn is None:
                    self.failed += 1
                    return
                self.confirmed += 1
                if len(latencies) < MAX_SAMPLES:
                    latencies.append(conn.connect_latency)
                conn.close(bye)

        n = 0
        while (now := time.time()) < end:
            while n < int(rate * (now - start)):
                index, name = devices[n % len(devices)]
                task = asyncio.create_task(one(index, name))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                n += 1
                self.sent += 1
            await asyncio.sleep(0.002)
        if tasks:
            await asyncio.wait(tasks, timeout=self.spec.connect_timeout_s)
        self.connect_latencies = latencies

    def result(self) -> dict[int, tuple[int, list[int]]]:
        out: dict[int, tuple[int, list[int]]] = {}
        for c in self.conns:
            out[c.index] = (c.seq, sorted([*c.unconfirmed, *c.inflight.values()]))
        return out


async def ticker(gen: Generator, stop: asyncio.Event) -> None:
    while not stop.is_set():
        emit("tick", at=time.time(), sent=gen.sent, confirmed=gen.confirmed)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), TICK_S)
    emit("tick", at=time.time(), sent=gen.sent, confirmed=gen.confirmed)


async def main(spec: LoadSpec) -> None:
    loop = asyncio.get_running_loop()
    gen = Generator(spec)
    cpu0 = cpu_s()
    if spec.scenario != "connect-storm":
        await gen.connect_all()
    emit("ready", connected=len(gen.conns), failed=gen.failed, errors=dict(gen.errors),
         connect_latencies_ms=[round(x * 1000, 3) for x in gen.connect_latencies[:MAX_SAMPLES]],
         cpu_s=cpu_s() - cpu0)
    go: asyncio.Future[str] = loop.create_future()
    threading.Thread(target=lambda: loop.call_soon_threadsafe(go.set_result, sys.stdin.readline()),
                     daemon=True).start()
    words = (await go).split()
    if len(words) != 3 or words[0] != "go":
        return
    start, end = float(words[1]), float(words[2])
    await asyncio.sleep(max(0.0, start - time.time()))
    cpu1 = cpu_s()
    stop = asyncio.Event()
    tick = asyncio.create_task(ticker(gen, stop))
    if spec.scenario == "publish":
        await gen.publish_load(start, end)
        await gen.drain()
    elif spec.scenario == "connect-storm":
        await gen.storm(start, end)
    else:  # idle: hold the connections
        await asyncio.sleep(max(0.0, end - time.time()))
    stop.set()
    await tick
    closed = sum(c.closed for c in gen.conns)
    emit("done", devices={str(k): v for k, v in gen.result().items()}, errors=dict(gen.errors),
         cpu_s=cpu_s() - cpu1, failed=gen.failed, closed_during_run=closed,
         storm_latencies_ms=[round(x * 1000, 3) for x in gen.connect_latencies]
         if spec.scenario == "connect-storm" else [])
    bye = disconnect_bytes(spec.version)
    for c in gen.conns:
        c.close(bye)
    await asyncio.sleep(0.05)


def run() -> None:
    spec = LoadSpec.model_validate_json(sys.stdin.readline())
    try:
        import uvloop

        uvloop.run(main(spec))
    except ImportError:  # pragma: no cover - uvloop is a dependency; stdlib asyncio works too
        asyncio.run(main(spec))


if __name__ == "__main__":
    run()
