"""HTTP ingress throughput: publish requests/s through the HTTP endpoint, next to the same app answering
without Kafka and the raw aiokafka producer on the same broker, all measured in one run.

Run: `.venv/bin/python benchmarks/http_ingress.py [--seconds 5] [--connections 64] [--load-processes 1]`.
Writes `benchmarks/results/http_ingress.json` and prints a table; no assertions.

Set-up: an embedded Tansu broker (memory only), a SQLite registry with one app and device (the
authenticator's verification cache answers after the first request), the endpoint as its own process
(uvicorn, uvloop, httptools, one worker), and the load from separate processes: a raw-socket HTTP/1.1
keep-alive client on uvloop (``--connections`` connections, one request in flight each). Rows:

* ``uvicorn_minimal``: a bare ASGI app answering 202 on the same uvicorn set-up (the HTTP server's ceiling);
* ``fastapi_minimal``: the same through a one-route FastAPI app (what the framework would cost; the endpoint is
  a plain ASGI app because of this difference);
* ``http_no_kafka``: the same endpoint app with a sink that accepts without Kafka (auth, parsing, event
  building, response; the ceiling the HTTP layer allows);
* ``http_kafka_ack``: the real endpoint; each 202 is sent after Kafka acknowledged the record (acks=all);
* ``http_kafka_ack_2_processes``: two endpoint processes sharing the port (``http.reuse_port``);
* ``raw_producer_concurrent``: aiokafka alone, ``--connections`` concurrent send-and-wait loops;
* ``raw_producer_pipelined``: aiokafka alone, everything sent before waiting (the producer's ceiling).

Everything shares the machine's cores (on the 2-core dev box: server, load generator and broker).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import functools
import json
import os
import platform
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import Request, Response  # module level: FastAPI resolves the route's annotations here

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

APP, DEVICE, PASSWORD = "bench", "dev-1", "secret"
RESULTS = REPO / "benchmarks" / "results" / "http_ingress.json"
PLOT = RESULTS.with_suffix(".svg")


# ---------------------------------------------------------------------------------------------- server


class NullSink:
    """Accepts every event without Kafka (the ``http_no_kafka`` row)."""

    connected = True

    async def publish(self, event: Any, *, topic_ready: bool = True) -> None:
        return None

    def publish_nowait(self, event: Any, *, topic_ready: bool = True) -> None:
        return None


async def minimal_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The ``uvicorn_minimal`` row: an ASGI app that reads the body and answers 202 (the server's ceiling)."""
    if scope["type"] != "http":
        return
    await receive()
    await send({"type": "http.response.start", "status": 202, "headers": [(b"content-length", b"0")]})
    await send({"type": "http.response.body", "body": b""})


def fastapi_app() -> Any:
    """The ``fastapi_minimal`` row: the same minimal answer through FastAPI (the framework's cost)."""
    from fastapi import FastAPI

    app = FastAPI()

    @app.post("/v1/{channel}")
    async def publish(channel: str, request: Request) -> Response:
        await request.body()
        return Response(status_code=202)

    return app


def serve(sink: str, port: int = 0) -> None:
    """The endpoint process: like `kedge serve http`, optionally with the null sink (or the minimal app)."""
    import logging

    from ingress.http import Resources
    from ingress.http.server import bind, build_app, run
    from ingress.metrics import IngressMetrics
    from kedge.settings import Settings
    from kedge.wiring import http_resources, registry_authenticator

    settings = Settings.load()
    logging.basicConfig(level="WARNING")
    metrics = IngressMetrics("http")
    if sink == "kafka":
        resources = http_resources(settings, metrics)
    else:
        @asynccontextmanager
        async def resources() -> AsyncIterator[Resources]:
            async with registry_authenticator(settings) as authenticator:
                yield Resources(authenticator, NullSink())

    sock = bind("127.0.0.1", port, reuse_port=port != 0)
    port = sock.getsockname()[1]
    app = build_app(settings, metrics, resources,
                    on_ready=lambda: print(f"listening on http://127.0.0.1:{port}", flush=True))
    if sink in ("minimal", "fastapi"):
        import uvicorn

        print(f"listening on http://127.0.0.1:{port}", flush=True)
        target = minimal_app if sink == "minimal" else fastapi_app()
        uvicorn.Server(uvicorn.Config(target, loop="uvloop", http="httptools", lifespan="off",
                                      log_level="warning", access_log=False)).run(sockets=[sock])
        return
    run(app, sock, log_level="warning")


# ---------------------------------------------------------------------------------------------- load


class _Conn(asyncio.Protocol):
    def __init__(self, request: bytes, stats: dict[str, Any], start: float, end: float,
                 done: asyncio.Future[None]) -> None:
        self.request, self.stats, self.start, self.end, self.done = request, stats, start, end, done
        self.buf = b""
        self.sent_at = 0.0
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's transports are not asyncio's classes
        self._send()

    def _send(self) -> None:
        assert self.transport is not None
        self.sent_at = time.perf_counter()
        self.transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while True:
            head_end = self.buf.find(b"\r\n\r\n")
            if head_end < 0:
                return
            head = self.buf[:head_end].lower()
            m = re.search(rb"content-length: *(\d+)", head)
            total = head_end + 4 + (int(m.group(1)) if m else 0)
            if len(self.buf) < total:
                return
            status = int(self.buf[9:12])
            self.buf = self.buf[total:]
            now = time.perf_counter()
            if self.start <= now < self.end:
                self.stats["statuses"][status] = self.stats["statuses"].get(status, 0) + 1
                self.stats["latencies"].append(now - self.sent_at)
            if now >= self.end:
                assert self.transport is not None
                self.transport.close()
                return
            self._send()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_result(None)


async def _load(url: str, connections: int, warmup_s: float, seconds: float, payload: int) -> dict[str, Any]:
    host, port = url.split("//", 1)[1].rsplit(":", 1)
    auth = base64.b64encode(f"{DEVICE}@{APP}:{PASSWORD}".encode()).decode()
    body = json.dumps({"temp": 21.5, "pad": "x" * max(0, payload - 27)}).encode()
    request = (f"POST /v1/telemetry HTTP/1.1\r\nHost: {host}\r\nAuthorization: Basic {auth}\r\n"
               f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body
    loop = asyncio.get_running_loop()
    start = time.perf_counter() + warmup_s
    end = start + seconds
    stats: dict[str, Any] = {"statuses": {}, "latencies": []}
    done = []
    for _ in range(connections):
        fut: asyncio.Future[None] = loop.create_future()
        await loop.create_connection(functools.partial(_Conn, request, stats, start, end, fut), host, int(port))
        done.append(fut)
    await asyncio.wait_for(asyncio.gather(*done), warmup_s + seconds + 30)
    return {"statuses": stats["statuses"], "latencies": stats["latencies"], "seconds": seconds}


def load_main(url: str, connections: int, warmup_s: float, seconds: float, payload: int, out: str) -> None:
    import uvloop

    result = uvloop.run(_load(url, connections, warmup_s, seconds, payload))
    Path(out).write_text(json.dumps(result))


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def run_load(url: str, args: argparse.Namespace) -> dict[str, Any]:
    per = max(1, args.connections // args.load_processes)
    outs = [Path(args.tmp) / f"load-{i}.json" for i in range(args.load_processes)]
    procs = [subprocess.Popen([sys.executable, __file__, "load", "--url", url, "--connections", str(per),
                               "--warmup", str(args.warmup), "--seconds", str(args.seconds),
                               "--payload", str(args.payload), "--out", str(out)])
             for out in outs]
    statuses: dict[str, int] = {}
    latencies: list[float] = []
    for p, out in zip(procs, outs, strict=True):
        if p.wait(timeout=args.warmup + args.seconds + 60) != 0:
            raise SystemExit(f"load generator exited with {p.returncode}")
        data = json.loads(out.read_text())
        for k, v in data["statuses"].items():
            statuses[k] = statuses.get(k, 0) + v
        latencies.extend(data["latencies"])
    ok = statuses.get("202", 0)
    return {"requests_per_s": round(sum(statuses.values()) / args.seconds),
            "accepted_per_s": round(ok / args.seconds), "statuses": statuses,
            "p50_ms": round(_percentile(latencies, 0.5) * 1000, 2),
            "p99_ms": round(_percentile(latencies, 0.99) * 1000, 2),
            "connections": per * args.load_processes, "load_processes": args.load_processes}


# ---------------------------------------------------------------------------------------------- baseline


async def raw_producer(bootstrap: str, args: argparse.Namespace) -> dict[str, Any]:
    from kedge import kafka
    from kedge.settings import KafkaSettings
    from schemas.binding import to_kafka
    from schemas.events import build_device_event
    from topology.names import app_topic

    body = json.dumps({"temp": 21.5, "pad": "x" * max(0, args.payload - 27)}).encode()
    event = build_device_event(app=APP, app_uid="u", device=DEVICE, device_uid="d", sender=DEVICE,
                               sender_uid="d", instance="drogue", channel="telemetry", payload=body,
                               content_type="application/json")
    record = to_kafka(event)
    topic = app_topic(APP)
    producer = kafka.producer(KafkaSettings(bootstrap_servers=bootstrap))
    await producer.start()
    try:
        async def one() -> None:
            await (await producer.send(topic, record.value, key=record.key, headers=record.headers))

        # concurrent send-and-wait loops, like the HTTP connections
        count = 0
        end = time.perf_counter() + args.seconds

        async def loop_() -> None:
            nonlocal count
            while time.perf_counter() < end:
                await one()
                count += 1

        started = time.perf_counter()
        await asyncio.gather(*(loop_() for _ in range(args.connections)))
        concurrent = count / (time.perf_counter() - started)

        # pipelined: hand everything to the producer, then wait for the acks
        n = int(max(concurrent, 1000) * min(args.seconds, 3))
        started = time.perf_counter()
        futures = [await producer.send(topic, record.value, key=record.key, headers=record.headers)
                   for _ in range(n)]
        await asyncio.gather(*futures)
        pipelined = n / (time.perf_counter() - started)
    finally:
        await producer.stop()
    return {"concurrent": {"msgs_per_s": round(concurrent), "connections": args.connections},
            "pipelined": {"msgs_per_s": round(pipelined), "messages": n}}


async def topic_records(bootstrap: str) -> int:
    from aiokafka import AIOKafkaConsumer
    from aiokafka.structs import TopicPartition

    from topology.highwater import end_offsets
    from topology.names import app_topic

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        parts = consumer.partitions_for_topic(app_topic(APP)) or set()
        offsets = await end_offsets(consumer, [TopicPartition(app_topic(APP), p) for p in parts])
        return sum(offsets.values())
    finally:
        await consumer.stop()


# ---------------------------------------------------------------------------------------------- main


async def prepare(bootstrap: str, data_dir: Path) -> None:
    from kedge import kafka
    from kedge.settings import KafkaSettings
    from registry.db import create_engine, migrate
    from registry.store import Registry
    from schemas.registry import ApplicationIn, DeviceIn
    from tests.ingress.kafka_support import create_app_topic
    from topology.apply import apply
    from topology.declare import declared_topics

    engine = create_engine(f"sqlite+aiosqlite:///{data_dir / 'registry.db'}")
    try:
        await migrate(engine)
        registry = Registry(engine)
        await registry.create_app(ApplicationIn.model_validate({"metadata": {"name": APP}}), owner=None)
        await registry.create_device(APP, DeviceIn.model_validate({
            "metadata": {"application": APP, "name": DEVICE},
            "spec": {"credentials": {"credentials": [{"pass": PASSWORD}]}}}))
    finally:
        await engine.dispose()
    await create_app_topic(bootstrap, APP)
    admin = kafka.admin_client(KafkaSettings(bootstrap_servers=bootstrap))
    await admin.start()
    try:  # the `registry` topic, followed by the endpoint's authentication cache
        await apply(admin, declared_topics(device_partitions=4, endpoint_partitions=1, replication=1))
    finally:
        await admin.close()


def start_server(sink: str, env: dict[str, str], port: int = 0) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen([sys.executable, __file__, "serve", "--sink", sink, "--port", str(port)],
                            stdout=subprocess.PIPE, env=env, text=True, start_new_session=True)
    assert proc.stdout is not None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line and proc.poll() is not None:
            raise SystemExit(f"server ({sink}) exited with {proc.returncode}")
        m = re.search(r"listening on (http://\S+)", line)
        if m:
            return proc, m.group(1)
    proc.kill()
    raise SystemExit(f"server ({sink}) did not start within 30 s")


def stop_server(proc: subprocess.Popen[str]) -> None:
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)


def main(args: argparse.Namespace) -> None:
    from kedge.broker import EmbeddedBroker, free_port

    load_at_start = [round(x, 2) for x in os.getloadavg()]  # the machine is shared: say how busy it was
    with tempfile.TemporaryDirectory(prefix="kedge-bench-") as tmp:
        data_dir = Path(tmp)
        args.tmp = tmp
        broker = EmbeddedBroker(port=free_port(), log_path=data_dir / "tansu.log")
        asyncio.run(broker.start())
        try:
            asyncio.run(prepare(broker.bootstrap, data_dir))
            env = {k: v for k, v in os.environ.items() if not k.startswith("KEDGE_")}
            env.update(KEDGE_KAFKA__BOOTSTRAP_SERVERS=broker.bootstrap, KEDGE_DATA_DIR=str(data_dir),
                       PYTHONPATH=str(REPO))
            servers = (("uvicorn_minimal", "minimal", 1), ("fastapi_minimal", "fastapi", 1),
                       ("http_no_kafka", "null", 1),
                       ("http_kafka_ack", "kafka", 1), ("http_kafka_ack_2_processes", "kafka", 2))
            rounds: dict[str, list[dict[str, Any]]] = {name: [] for name, _, _ in servers}
            for _ in range(args.rounds):  # alternate the rows: the machine is shared, load varies
                for name, sink, count in servers:
                    port = 0 if count == 1 else free_port()  # several processes share a port (SO_REUSEPORT)
                    started = [start_server(sink, env, port) for _ in range(count)]
                    try:
                        rounds[name].append(run_load(started[0][1], args))
                    finally:
                        for proc, _ in started:
                            stop_server(proc)
            rows: dict[str, Any] = {}
            for name, runs in rounds.items():
                best = max(runs, key=lambda r: r["accepted_per_s"])
                rows[name] = {**best, "rounds_accepted_per_s": [r["accepted_per_s"] for r in runs]}
            # every 202 of the Kafka rows (all rounds; warm-up requests come on top) must be in the topic
            in_topic = asyncio.run(topic_records(broker.bootstrap))
            accepted = sum(r["statuses"].get("202", 0) for name in ("http_kafka_ack", "http_kafka_ack_2_processes")
                           for r in rounds[name])
            check = {"records_in_topic": in_topic, "accepted_in_measured_windows": accepted,
                     "all_accepted_in_topic": in_topic >= accepted}
            baseline = asyncio.run(raw_producer(broker.bootstrap, args))
            rows["raw_producer_concurrent"] = baseline["concurrent"]
            rows["raw_producer_pipelined"] = baseline["pipelined"]
        finally:
            broker.stop()
    result = {
        "benchmark": "http_ingress",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "platform": platform.platform(), "loadavg_at_start": load_at_start},
        "parameters": {"seconds": args.seconds, "warmup_s": args.warmup, "connections": args.connections,
                       "rounds": args.rounds,
                       "load_processes": args.load_processes, "payload_bytes": args.payload, "acks": "all"},
        "results": rows,
        "kafka_check": check,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{'row':<26} {'rate/s':>9} {'p50 ms':>8} {'p99 ms':>8}  statuses")
    for name, row in rows.items():
        rate = row.get("accepted_per_s", row.get("msgs_per_s"))
        print(f"{name:<26} {rate:>9} {row.get('p50_ms', ''):>8} {row.get('p99_ms', ''):>8}  "
              f"{row.get('statuses', '')}")
    PLOT.write_text(svg_bars([(name, row.get("accepted_per_s", row.get("msgs_per_s", 0)))
                              for name, row in rows.items()], title=f"HTTP ingress, {result['when']}"))
    print(f"kafka check: {check}")
    print(f"written to {RESULTS.relative_to(REPO)} and {PLOT.relative_to(REPO)}")


def svg_bars(bars: list[tuple[str, int]], title: str) -> str:
    """A horizontal bar chart as SVG (no plotting library needed)."""
    top = max((v for _, v in bars), default=1) or 1
    height = 40 + 30 * len(bars)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="760" height="{height}" font-family="sans-serif" '
             f'font-size="13"><text x="10" y="20" font-weight="bold">{title} (per second)</text>']
    for i, (name, value) in enumerate(bars):
        y = 35 + 30 * i
        width = int(420 * value / top)
        parts.append(f'<text x="10" y="{y + 15}">{name}</text><rect x="210" y="{y}" width="{width}" '
                     f'height="20" fill="#4a7ab5"/><text x="{215 + width}" y="{y + 15}">{value}</text>')
    return "".join(parts) + "</svg>\n"


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command")
    for p in (parser, load := sub.add_parser("load")):
        p.add_argument("--seconds", type=float, default=5.0, help="measured time per row")
        p.add_argument("--warmup", type=float, default=1.0, help="unmeasured time before each row")
        p.add_argument("--connections", type=int, default=64, help="concurrent keep-alive connections")
        p.add_argument("--payload", type=int, default=200, help="request body bytes (JSON)")
    parser.add_argument("--load-processes", type=int, default=2,
                        help="load generator processes (one Python process tops out near 5-6k req/s here)")
    parser.add_argument("--rounds", type=int, default=2, help="runs of each HTTP row (best one reported)")
    load.add_argument("--url", required=True)
    load.add_argument("--out", required=True, help="where the load generator writes its result")
    serve_p = sub.add_parser("serve")
    serve_p.add_argument("--sink", choices=["kafka", "null", "minimal", "fastapi"], required=True)
    serve_p.add_argument("--port", type=int, default=0, help="fixed port, shared with SO_REUSEPORT")
    args = parser.parse_args()
    if args.command == "serve":
        serve(args.sink, args.port)
    elif args.command == "load":
        load_main(args.url, args.connections, args.warmup, args.seconds, args.payload, args.out)
    else:
        main(args)


if __name__ == "__main__":
    cli()
