"""One `kedge bench` run: provision, start the events consumer, spread the devices over load processes, load,
drain, and build the report (a JSON-able dict).

The load processes are separate Python processes (:mod:`kedge.bench.loadproc`) so the load generator is not
the bottleneck: a run reports their CPU next to the rates, and ``procs`` can be raised until it is not.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import shutil
import string
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import orjson

from kedge.bench.consumer import EventsConsumer
from kedge.bench.payload import PayloadFormat
from kedge.bench.provision import Provisioned, Provisioner
from kedge.bench.spec import LoadSpec
from kedge.bench.stats import Timeline, percentiles
from kedge.errors import KedgeError
from kedge.kafka import common_options
from kedge.settings import KafkaSettings
from topology.names import app_topic

Progress = Callable[[dict[str, Any]], None]
READY_TIMEOUT_S = 300.0


@dataclass
class BenchConfig:
    """Everything a run needs; the CLI builds it from its options."""

    protocol: str  # "mqtt" | "http"
    host: str
    port: int
    api_url: str
    kafka: KafkaSettings
    scenario: str = "publish"
    version: int = 4
    qos: int = 0
    tls: bool = False
    tls_insecure: bool = False
    tls_ca: str | None = None
    channel: str = "telemetry"
    devices: int = 10
    procs: int = 1
    rate: float = 0.0
    payload_size: int = 200
    duration_s: float = 10.0
    inflight: int = 16
    connect_rate: float = 0.0
    drain_s: float = 10.0
    #: API credentials (token, or user + password)
    token: str | None = None
    username: str | None = None
    password: str | None = None
    #: use this existing app and its devices (`device_names`, one password) instead of creating them
    app: str | None = None
    device_names: list[str] = field(default_factory=list)
    device_password: str | None = None
    keep: bool = False
    #: read events-<app> (latency, loss); off to load a plain MQTT broker (a baseline such as Mosquitto)
    consume: bool = True
    #: processes of the server to watch (CPU, RSS); found from the port when empty and psutil is there
    server_pids: list[int] = field(default_factory=list)


def run_id() -> str:
    return "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(8))


class LoadProcess:
    """The parent's handle of one load process."""

    def __init__(self, spec: LoadSpec, errlog: Path) -> None:
        self.spec = spec
        self.errlog = errlog
        self.proc: asyncio.subprocess.Process | None = None
        self.ready: dict[str, Any] = {}
        self.done: dict[str, Any] = {}
        self.sent = 0
        self.confirmed = 0
        self._err = open(errlog, "wb")  # noqa: SIM115 - the child writes it for its whole life

    async def start(self) -> None:
        try:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "kedge.bench.loadproc", stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE, stderr=self._err, limit=64 << 20)
        finally:
            self._err.close()
        assert self.proc.stdin is not None
        self.proc.stdin.write(self.spec.model_dump_json().encode() + b"\n")
        await self.proc.stdin.drain()

    async def line(self) -> dict[str, Any]:
        assert self.proc is not None and self.proc.stdout is not None
        raw = await self.proc.stdout.readline()
        if not raw:
            await self.proc.wait()
            raise KedgeError(f"a load process exited ({self.proc.returncode}):\n"
                             f"{self.errlog.read_text(errors='replace')[-2000:]}")
        data: dict[str, Any] = orjson.loads(raw)
        return data

    async def go(self, start: float, end: float) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write(f"go {start} {end}\n".encode())
        await self.proc.stdin.drain()

    async def follow(self, on_tick: Callable[[LoadProcess, dict[str, Any]], None]) -> None:
        while True:
            msg = await self.line()
            if msg["kind"] == "tick":
                on_tick(self, msg)
            elif msg["kind"] == "done":
                self.done = msg
                return

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.terminate()
            try:
                await asyncio.wait_for(self.proc.wait(), 5)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()


def split(items: list[tuple[int, str]], n: int) -> list[list[tuple[int, str]]]:
    return [part for part in (items[i::n] for i in range(n)) if part]


async def run_bench(config: BenchConfig, progress: Progress | None = None) -> dict[str, Any]:
    """Run the benchmark ``config`` describes; returns the report."""
    from aiokafka.errors import KafkaConnectionError

    try:
        return await _provisioned(config, progress)
    except KafkaConnectionError:
        raise KedgeError(f"cannot reach Kafka at {config.kafka.bootstrap_servers} (--kafka)") from None


async def _provisioned(config: BenchConfig, progress: Progress | None) -> dict[str, Any]:
    from kedge.bench.serverstats import ServerWatch

    rid = run_id()
    watch = ServerWatch(config.server_pids or ServerWatch.find(config.port))
    if config.app:  # given app and devices: nothing to create or clean up
        if not config.device_names or not config.device_password:
            raise KedgeError("--app needs the devices to use and their password")
        given = Provisioned(config.app, config.device_names, config.device_password, False, False)
        return await _run(config, rid, given, watch, progress)
    async with Provisioner(config.api_url, config.kafka, token=config.token, username=config.username,
                           password=config.password) as prov:
        provisioned = await prov.create(f"bench-{rid}", config.devices, secrets.token_urlsafe(12))
        try:
            return await _run(config, rid, provisioned, watch, progress)
        finally:
            if not config.keep:
                await prov.delete(provisioned)


async def _run(config: BenchConfig, rid: str, prov: Provisioned, watch: Any,
               progress: Progress | None) -> dict[str, Any]:
    fmt = PayloadFormat(rid, config.payload_size)
    timeline = Timeline(time.time())
    devices = list(enumerate(prov.devices))
    parts = split(devices, max(1, min(config.procs, len(devices))))
    consumer: EventsConsumer | None = None
    if config.scenario == "publish" and config.consume:
        consumer = EventsConsumer(common_options(config.kafka), app_topic(prov.app), fmt, timeline)
        await consumer.start()
    tmp = Path(tempfile.mkdtemp(prefix="kedge-bench-"))
    procs = [LoadProcess(LoadSpec(
        protocol=config.protocol, scenario=config.scenario, host=config.host, port=config.port, tls=config.tls,
        tls_insecure=config.tls_insecure, tls_ca=config.tls_ca, version=config.version, qos=config.qos,
        channel=config.channel, app=prov.app, password=prov.password, devices=part,
        rate=config.rate / len(parts), payload_size=config.payload_size, run_id=rid, inflight=config.inflight,
        connect_rate=config.connect_rate / len(parts), drain_s=config.drain_s), tmp / f"load-{i}.log")
        for i, part in enumerate(parts)]
    watch.sample("before")
    cpu0 = time.process_time()
    try:
        for p in procs:
            await p.start()
        for p in procs:
            msg = await asyncio.wait_for(p.line(), READY_TIMEOUT_S)
            p.ready = msg
        connected = sum(p.ready["connected"] for p in procs)
        if config.scenario != "connect-storm" and connected == 0:
            errors = {k: v for p in procs for k, v in p.ready["errors"].items()}
            raise KedgeError(f"no device could connect to {config.host}:{config.port}: {errors}")
        watch.sample("connected")
        start = time.time() + 0.3
        end = start + config.duration_s
        timeline.t0 = start

        def on_tick(proc: LoadProcess, msg: dict[str, Any]) -> None:
            bucket = timeline.bucket(msg["at"])
            bucket.sent += msg["sent"] - proc.sent
            bucket.confirmed += msg["confirmed"] - proc.confirmed
            proc.sent, proc.confirmed = msg["sent"], msg["confirmed"]

        for p in procs:
            await p.go(start, end)
        followers = asyncio.gather(*(p.follow(on_tick) for p in procs))
        while not followers.done():
            await asyncio.wait([followers], timeout=0.5)
            if progress:
                progress(_progress(config, procs, consumer, timeline, start))
        await followers
        watch.sample("loaded")
        load_done = time.time()
        confirmed_total = sum(sent - len(unconfirmed) for p in procs
                              for sent, unconfirmed in p.done["devices"].values())
        if consumer is not None:
            await consumer.wait_for(confirmed_total, quiet_s=3.0, timeout_s=config.drain_s + 10)
        return _report(config, rid, prov, procs, consumer, timeline, start, load_done, watch,
                       time.process_time() - cpu0)
    finally:
        if consumer is not None:
            await consumer.stop()
        for p in procs:
            await p.stop()
        shutil.rmtree(tmp, ignore_errors=True)  # the load processes' stderr (shown above when one failed)


def _progress(config: BenchConfig, procs: list[LoadProcess], consumer: EventsConsumer | None,
              timeline: Timeline, start: float) -> dict[str, Any]:
    now = time.time()
    last = timeline.buckets.get(int(now - start) - 1)
    return {"elapsed_s": max(0.0, now - start), "duration_s": config.duration_s,
            "sent": sum(p.sent for p in procs), "confirmed": sum(p.confirmed for p in procs),
            "delivered": consumer.tracker.delivered if consumer else 0,
            "delivered_last_s": last.delivered if last else 0,
            "p99_last_s_ms": percentiles(last.latencies_ms)["p99"] if last else None}


def _report(config: BenchConfig, rid: str, prov: Provisioned, procs: list[LoadProcess],
            consumer: EventsConsumer | None, timeline: Timeline, start: float, load_done: float, watch: Any,
            own_cpu_s: float) -> dict[str, Any]:
    confirmed_map: dict[int, tuple[int, list[int]]] = {}
    errors: dict[str, int] = {}
    for p in procs:
        for k, (sent, unconfirmed) in p.done["devices"].items():
            confirmed_map[int(k)] = (sent, unconfirmed)
        for k, v in (p.done["errors"] or p.ready["errors"]).items():  # done's count includes ready's
            errors[k] = errors.get(k, 0) + v
    sent = sum(s for s, _ in confirmed_map.values())
    unconfirmed = sum(len(u) for _, u in confirmed_map.values())
    duration = config.duration_s
    load_cpu = sum(p.done["cpu_s"] for p in procs)
    connect_lat = [x for p in procs for x in p.ready["connect_latencies_ms"]]
    report: dict[str, Any] = {
        "benchmark": "kedge-bench", "run_id": rid, "protocol": config.protocol, "scenario": config.scenario,
        "target": f"{config.host}:{config.port}", "tls": config.tls,
        "mqtt_version": "5" if config.version == 5 else "3.1.1", "qos": config.qos,
        "app": prov.app, "devices": len(prov.devices), "connected": sum(p.ready["connected"] for p in procs),
        "connect_failures": sum(p.ready["failed"] for p in procs), "procs": len(procs),
        "payload_bytes": config.payload_size, "duration_s": duration, "target_rate": config.rate or None,
        "sent": sent, "confirmed": sent - unconfirmed, "unconfirmed": unconfirmed,
        "rates": {"sent_per_s": round(sent / duration, 1),
                  "confirmed_per_s": round((sent - unconfirmed) / duration, 1)},
        "connect_latency_ms": _rounded(percentiles(connect_lat)),
        "errors": errors,
        "load_generator_cpu": {"seconds": round(load_cpu, 2), "cores": round(load_cpu / duration, 2)},
        "bench_process_cpu": {"seconds": round(own_cpu_s, 2)},
        "server": watch.report(),
    }
    if consumer is not None:
        t = consumer.tracker
        span = max(1e-3, (consumer.last_arrival or load_done) - start)
        report.update({
            "delivered": t.delivered, "duplicates": t.duplicates, "lost": t.missing(confirmed_map),
            "unexpected": t.unexpected(confirmed_map), "other_events": consumer.foreign,
            "latency_ms": _rounded(percentiles(consumer.latencies_ms)),
        })
        report["rates"]["delivered_per_s"] = round(t.delivered / span, 1)
    if config.scenario == "publish":
        report["timeline"] = timeline.rows()
    if config.scenario == "connect-storm":
        storm = [x for p in procs for x in p.done["storm_latencies_ms"]]
        ok = sum(len(p.done["storm_latencies_ms"]) for p in procs)
        report.update({"connects": ok, "connect_failures": sum(p.done["failed"] for p in procs),
                       "connects_per_s": round(ok / duration, 1), "connect_latency_ms": _rounded(percentiles(storm)),
                       "target_connect_rate": config.connect_rate})
    if config.scenario == "idle":
        report["idle"] = watch.per_connection("before", "connected", report["connected"])
    report["config"] = {k: v for k, v in asdict(config).items()
                        if k not in ("token", "password", "device_password", "kafka", "device_names")}
    return report


def _rounded(p: dict[str, float | None]) -> dict[str, float | None]:
    return {k: None if v is None else round(v, 3) for k, v in p.items()}
