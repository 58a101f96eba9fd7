"""MQTT ingress throughput, each figure next to its baseline from the same run:

* ``raw_producer``: aiokafka alone (the endpoint's producer settings, acks=all), the same CloudEvent record
  and payload as the endpoint produces, everything sent before waiting: what the broker takes on this machine;
* ``kedge_qos0``: `kedge bench mqtt` flat out at QoS 0, counted as *delivered* to ``events-<app>``;
* ``kedge_qos1``: the same at QoS 1, counted when PUBACKed (the endpoint acks after Kafka acked);
* ``kedge_qos0_paced``: QoS 0 at 1.5x the rate QoS 1 sustained (run before flat out);
* ``mosquitto_qos0`` / ``mosquitto_qos1``: Debian's Mosquitto accepting the same load from the same load
  generator (no subscriber; QoS 0 counted as written, QoS 1 as PUBACKed) — the MQTT side alone, when installed;
* ``idle``: the endpoint's RSS per idle MQTT connection (``--idle-connections``).

Run: `.venv/bin/python benchmarks/mqtt_ingress.py [--seconds 8] [--devices 64] [--procs 2]`; writes
benchmarks/results/mqtt_ingress.json (and is run by benchmarks/run.py). No assertions.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from kedge.bench.payload import PayloadFormat  # noqa: E402
from kedge.bench.run import BenchConfig, run_bench  # noqa: E402
from kedge.broker import EmbeddedBroker, free_port  # noqa: E402
from kedge.settings import KafkaSettings  # noqa: E402

RESULTS = REPO / "benchmarks" / "results" / "mqtt_ingress.json"


class Stack:
    """broker + topology + `kedge serve api` + `kedge worker` + `kedge serve mqtt` (+ http) on free ports."""

    def __init__(self, work: Path, with_http: bool = False) -> None:
        self.work = work
        self.data = work / "data"
        self.with_http = with_http
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.broker = EmbeddedBroker(port=free_port(), log_path=work / "tansu.log")
        self.api_url = ""
        self.ports: dict[str, int] = {}

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("KEDGE_")}
        # the load generator is one source address: the endpoint's per-source connect limit would refuse it
        env.update(KEDGE_DATA_DIR=str(self.data), KEDGE_KAFKA__BOOTSTRAP_SERVERS=self.broker.bootstrap,
                   KEDGE_MQTT__CONNECT_RATE_PER_SOURCE="0",
                   PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1")
        return env

    def start_proc(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        log = open(self.work / f"{name}.log", "wb")  # noqa: SIM115 - the child owns it for its life
        proc = subprocess.Popen([sys.executable, "-m", "kedge", *args], stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env=self.env(), cwd=REPO, start_new_session=True)
        self.procs[name] = proc
        return proc

    def wait_log(self, name: str, pattern: str, timeout_s: float = 90) -> re.Match[str]:
        deadline = time.monotonic() + timeout_s
        path = self.work / f"{name}.log"
        while time.monotonic() < deadline:
            m = re.search(pattern, path.read_text(errors="replace")) if path.exists() else None
            if m:
                return m
            if self.procs[name].poll() is not None:
                break
            time.sleep(0.1)
        raise SystemExit(f"{name} did not log {pattern!r}:\n{path.read_text(errors='replace')[-3000:]}")

    def wait_ready(self, url: str, timeout_s: float = 90) -> None:
        import httpx

        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                if httpx.get(url, timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if self.procs["api"].poll() is not None:
                break
            time.sleep(0.2)
        raise SystemExit(f"the API host is not ready at {url}:\n{(self.work / 'api.log').read_text()[-3000:]}")

    async def start(self) -> None:
        await self.broker.start()
        from kedge.commands.topology import run as topology_run
        from kedge.settings import Settings

        await topology_run(Settings(kafka=KafkaSettings(bootstrap_servers=self.broker.bootstrap)), create=True)
        api_port = free_port()
        self.start_proc("api", "serve", "api", "--port", str(api_port))
        self.api_url = f"http://127.0.0.1:{api_port}"
        self.start_proc("worker", "worker")
        self.wait_ready(self.api_url + "/ready")
        self.wait_log("worker", r"Ready")
        self.ports["mqtt"] = self.start_mqtt("mqtt")
        if self.with_http:
            self.start_proc("http", "serve", "http", "--port", "0")
            self.ports["http"] = int(self.wait_log("http", r"listening on http://[\d.]+:(\d+)").group(1))

    def start_mqtt(self, name: str) -> int:
        self.start_proc(name, "serve", "mqtt", "--port", "0")
        return int(self.wait_log(name, r"mqtt endpoint listening on mqtt://[\d.]+:(\d+)").group(1))

    def stop_proc(self, name: str) -> None:
        proc = self.procs[name]
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)

    def stop(self) -> None:
        for proc in reversed(list(self.procs.values())):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
        self.broker.stop()

    def config(self, **kw: Any) -> BenchConfig:
        from kedge.bench.provision import admin_credentials

        user, password = admin_credentials(self.data)
        kw.setdefault("port", self.ports["mqtt"])
        kw.setdefault("server_pids", [self.procs["mqtt"].pid])
        return BenchConfig(protocol="mqtt", host="127.0.0.1", api_url=self.api_url,
                           kafka=KafkaSettings(bootstrap_servers=self.broker.bootstrap), username=user,
                           password=password, **kw)


async def row(job: Any) -> dict[str, Any]:
    """One row's result, or its error (the other rows still run)."""
    try:
        result: dict[str, Any] = await job
        return result
    except Exception as exc:  # reported in the results instead
        return {"error": f"{type(exc).__name__}: {exc}"}


async def raw_producer(bootstrap: str, payload_size: int, seconds: float) -> dict[str, Any]:
    """aiokafka alone: the endpoint's record (CloudEvent binary mode) and producer settings, pipelined."""
    from kedge import kafka
    from schemas.binding import to_kafka
    from schemas.events import build_device_event
    from topology.names import app_topic

    app = "rawbench"
    from aiokafka.admin import NewTopic

    admin = kafka.admin_client(KafkaSettings(bootstrap_servers=bootstrap))
    await admin.start()
    try:
        await admin.create_topics([NewTopic(app_topic(app), 3, 1)])
    finally:
        await admin.close()
    fmt = PayloadFormat("rawprod1", payload_size)
    producer = kafka.producer(KafkaSettings(bootstrap_servers=bootstrap))
    await producer.start()
    try:
        sent = 0
        started = time.perf_counter()
        end = started + seconds
        records = [to_kafka(build_device_event(
            app=app, app_uid="u", device=f"d{d}", device_uid="d", sender=f"d{d}", sender_uid="d", instance="drogue",
            channel="telemetry", payload=b"{}", content_type="application/json")) for d in range(64)]
        topic = app_topic(app)
        while time.perf_counter() < end:  # in rounds, so the producer's buffer stays bounded
            futures = []
            now = time.time_ns()
            for i in range(5000):
                record = records[i % 64]  # the same headers and key as the endpoint's; a fresh payload each
                futures.append(await producer.send(topic, fmt.make(i % 64, sent + i, now), key=record.key,
                                                   headers=record.headers))
            await asyncio.gather(*futures)
            sent += len(futures)
        elapsed = time.perf_counter() - started
    finally:
        await producer.stop()
    return {"msgs_per_s": round(sent / elapsed, 1), "messages": sent, "acks": "all",
            "note": "the endpoint's record headers and key, a fresh payload per message, pipelined"}


def pyspy() -> str | None:
    local = Path(sys.executable).parent / "py-spy"
    return str(local) if local.exists() else shutil.which("py-spy")


#: the frames a profile summary keeps (the CLI, typer and the event loop's own frames say nothing)
OURS = ("ingress/", "protocols/", "schemas/", "registry/", "topology/", "kedge/wiring", "aiokafka/")


def top_frames(raw: Path, n: int = 15) -> dict[str, Any]:
    """The hottest functions of a py-spy raw (collapsed stacks) profile, by own (innermost of ours) and
    inclusive samples, as a percentage of the samples that ran any of our code."""
    own: dict[str, int] = {}
    inclusive: dict[str, int] = {}
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = [re.sub(r":\d+\)$", ")", f) for f in stack.split(";") if f.split(" (")[-1].startswith(OURS)]
        if not frames:
            continue
        total += int(count)
        own[frames[-1]] = own.get(frames[-1], 0) + int(count)
        for frame in set(frames):
            inclusive[frame] = inclusive.get(frame, 0) + int(count)

    def top(d: dict[str, int]) -> list[tuple[str, float]]:
        return [(f, round(100 * c / max(total, 1), 1)) for f, c in sorted(d.items(), key=lambda x: -x[1])[:n]]

    return {"samples": total, "own_pct": top(own), "inclusive_pct": top(inclusive),
            "note": "samples holding the GIL (py-spy --gil), frames of Kedge and aiokafka only"}


async def profiled(name: str, pid: int, seconds: float, work: Path, job: Any) -> dict[str, Any]:
    """Run the coroutine ``job`` while py-spy samples the endpoint ``pid``; the profile goes into the result."""
    exe = pyspy()
    if exe is None:
        result: dict[str, Any] = await job
        result["profile"] = {"skipped": "py-spy is not installed (pip install 'kedge[bench]')"}
        return result
    raw = work / f"profile-{name}.txt"
    spy = await asyncio.create_subprocess_exec(exe, "record", "-p", str(pid), "-d", str(int(seconds) + 1), "-r", "100",
                                               "--gil", "-f", "raw", "-o", str(raw), stdout=asyncio.subprocess.DEVNULL,
                                               stderr=asyncio.subprocess.DEVNULL)
    result = await job
    await spy.wait()
    result["profile"] = top_frames(raw) if raw.exists() else {"skipped": f"py-spy exited with {spy.returncode}"}
    return result


def mosquitto_conf(work: Path, port: int) -> Path:
    conf = work / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\nmax_inflight_messages 0\n"
                    "max_queued_messages 100000\npersistence false\nlog_dest none\n")
    return conf


def start_mosquitto(work: Path) -> tuple[subprocess.Popen[bytes], int, str] | None:
    binary = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None)
    if binary is None:
        return None
    port = free_port()
    proc = subprocess.Popen([binary, "-c", str(mosquitto_conf(work, port))], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    version = subprocess.run([binary, "-h"], capture_output=True, text=True).stdout.splitlines()[0]
    return proc, port, version


async def mosquitto(work: Path, args: argparse.Namespace) -> dict[str, Any]:
    started = start_mosquitto(work)
    if started is None:
        return {"skipped": "mosquitto is not installed (apt-get install -y mosquitto)"}
    proc, port, version = started
    try:
        await asyncio.sleep(0.5)
        out: dict[str, Any] = {"version": version}
        for qos in (0, 1):
            config = BenchConfig(protocol="mqtt", host="127.0.0.1", port=port, api_url="", kafka=KafkaSettings(),
                                 qos=qos, devices=args.devices, procs=args.procs, duration_s=args.seconds,
                                 payload_size=args.payload, inflight=args.inflight, consume=False, app="bench",
                                 device_names=[f"d{i}" for i in range(args.devices)], device_password="x",
                                 server_pids=[proc.pid], drain_s=5)
            out[f"qos{qos}"] = await run_bench(config)
        return out
    finally:
        proc.terminate()
        proc.wait(10)


async def main(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="kedge-mqtt-bench-"))
    stack = Stack(work)
    results: dict[str, Any] = {}
    try:
        await stack.start()
        common = {"devices": args.devices, "procs": args.procs, "duration_s": args.seconds,
                  "payload_size": args.payload, "inflight": args.inflight, "drain_s": 15.0}
        results["raw_producer"] = await raw_producer(stack.broker.bootstrap, args.payload, args.seconds)
        pid, span = stack.procs["mqtt"].pid, args.seconds + 4  # the connect phase, the load and the drain
        results["kedge_qos1"] = await row(profiled("qos1", pid, span, work, run_bench(stack.config(qos=1, **common))))
        # QoS 0 paced at 1.5x what QoS 1 sustained, before flat out (whose backlog would spill into it)
        paced = max(1000.0, 1.5 * results["kedge_qos1"].get("rates", {}).get("confirmed_per_s", 0))
        results["kedge_qos0_paced"] = await row(run_bench(stack.config(qos=0, **{**common, "rate": paced})))
        results["kedge_qos0"] = await row(profiled("qos0", pid, span, work, run_bench(stack.config(qos=0, **common))))
        if args.idle_connections:
            # on a fresh endpoint process (the load rows' freed heap would hide the per-connection cost), after
            # the loaded one is stopped (its backlog would compete), connecting at a rate the state agent takes
            stack.stop_proc("mqtt")
            port = stack.start_mqtt("mqtt-idle")
            results["idle"] = await row(run_bench(stack.config(
                scenario="idle", devices=args.idle_connections, procs=args.procs, duration_s=2.0, port=port,
                connect_rate=args.idle_connect_rate, server_pids=[stack.procs["mqtt-idle"].pid])))
            if results["idle"].get("connect_failures"):  # say why, from the endpoint's own log
                log = (work / "mqtt-idle.log").read_text(errors="replace").splitlines()
                results["idle"]["endpoint_log"] = [line for line in log if "WARNING" in line or "ERROR" in line][-20:]
    finally:
        stack.stop()
    try:
        results["mosquitto"] = await row(mosquitto(work, args))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return results


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=8.0, help="measured seconds per row")
    parser.add_argument("--devices", type=int, default=64, help="simulated devices (connections)")
    parser.add_argument("--procs", type=int, default=2, help="load generator processes")
    parser.add_argument("--payload", type=int, default=200, help="payload bytes")
    parser.add_argument("--inflight", type=int, default=32, help="QoS 1 publishes in flight per connection")
    parser.add_argument("--idle-connections", type=int, default=2000, help="0: skip the idle RSS row")
    parser.add_argument("--idle-connect-rate", type=float, default=500.0, help="connects/s of the idle row")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    results = asyncio.run(main(args))
    results["parameters"] = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"written to {args.out}")


if __name__ == "__main__":
    cli()
