"""`kedge bench http|mqtt` against a real stack (embedded broker, API host, worker, HTTP and MQTT endpoints)
started here: the JSON report has its shape, and nothing was lost or duplicated. Never asserts on speed."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from kedge.broker import EmbeddedBroker, free_port
from tests.agents.support import DEVICE_PARTITIONS, create_topics, start_worker
from tests.support.procs import REPO, ProcGroup, kedge

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@dataclass
class Stack:
    bootstrap: str
    data_dir: Path
    api_url: str
    http_port: int
    mqtt_port: int


@pytest.fixture(scope="module")
async def stack(kafka_broker: EmbeddedBroker, tmp_path_factory: pytest.TempPathFactory,
                request: pytest.FixtureRequest) -> AsyncIterator[Stack]:
    tmp = tmp_path_factory.mktemp("bench")
    data = tmp / "data"
    bootstrap = kafka_broker.bootstrap
    await create_topics(bootstrap)
    group = ProcGroup(tmp)
    failed_before = request.session.testsfailed
    env = {"KEDGE_DATA_DIR": str(data), "KEDGE_KAFKA__BOOTSTRAP_SERVERS": bootstrap, "KEDGE_INSTANCE": "bench",
           "KEDGE_TOPOLOGY__DEVICE_PARTITIONS": str(DEVICE_PARTITIONS), "KEDGE_MQTT__CONNECT_RATE_PER_SOURCE": "0"}
    try:
        api_port = free_port()
        api = group.start("api", kedge("serve", "api", "--port", str(api_port)), env=env)
        await api.wait_for_log("API host ready on", 60.0)
        await start_worker(group, "worker", bootstrap, tmp / "worker", f"kedge-worker-{uuid.uuid4().hex[:8]}")
        http = group.start("http", kedge("serve", "http", "--port", "0"), env=env)
        mqtt = group.start("mqtt", kedge("serve", "mqtt", "--port", "0"), env=env)
        await http.wait_for_log("http endpoint listening on", 60.0)
        await mqtt.wait_for_log("mqtt endpoint listening on", 60.0)
        http_port = int(re.findall(r"http endpoint listening on http://[\d.]+:(\d+)", http.log())[0])
        mqtt_port = int(re.findall(r"mqtt endpoint listening on mqtt://[\d.]+:(\d+)", mqtt.log())[0])
        yield Stack(bootstrap, data, f"http://127.0.0.1:{api_port}", http_port, mqtt_port)
    finally:
        group.stop_all()
        if request.session.testsfailed > failed_before:
            print(group.logs())


async def bench(stack: Stack, *args: str) -> dict[str, object]:
    argv = [sys.executable, "-m", "kedge", "bench", *args, "--api-url", stack.api_url, "--kafka", stack.bootstrap,
            "--data-dir", str(stack.data_dir), "-o", "json"]
    proc = await asyncio.to_thread(subprocess.run, argv, capture_output=True, text=True, timeout=150, cwd=REPO,
                                   env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)})
    assert proc.returncode == 0, f"kedge bench failed ({proc.returncode}):\n{proc.stderr[-4000:]}"
    report: dict[str, object] = json.loads(proc.stdout)
    return report


def check_report(report: dict[str, object], protocol: str, devices: int) -> None:
    for key in ("run_id", "app", "sent", "confirmed", "delivered", "lost", "duplicates", "rates", "latency_ms",
                "connect_latency_ms", "load_generator_cpu", "timeline", "errors", "server"):
        assert key in report, key
    assert report["protocol"] == protocol
    assert report["connected"] == devices and report["connect_failures"] == 0
    assert isinstance(report["sent"], int) and report["sent"] > 0
    assert report["unconfirmed"] == 0, report["errors"]
    assert report["delivered"] == report["confirmed"] == report["sent"]
    assert report["lost"] == 0 and report["duplicates"] == 0 and report["unexpected"] == 0
    latency = report["latency_ms"]
    assert isinstance(latency, dict) and set(latency) == {"p50", "p90", "p99", "max"}
    assert latency["p50"] is not None and latency["p50"] <= latency["p99"] <= latency["max"]
    rates = report["rates"]
    assert isinstance(rates, dict) and {"sent_per_s", "confirmed_per_s", "delivered_per_s"} <= set(rates)
    timeline = report["timeline"]
    assert isinstance(timeline, list) and sum(int(row["delivered"]) for row in timeline) == report["delivered"]


async def test_bench_http_delivers_everything(stack: Stack) -> None:
    report = await bench(stack, "http", "--port", str(stack.http_port), "-n", "3", "-d", "2", "--rate", "150")
    check_report(report, "http", 3)


@pytest.mark.parametrize(("version", "qos"), [("3.1.1", "1"), ("5", "0")])
async def test_bench_mqtt_delivers_everything(stack: Stack, version: str, qos: str, tmp_path: Path) -> None:
    plot = tmp_path / "run.png"
    report = await bench(stack, "mqtt", "--port", str(stack.mqtt_port), "-n", "4", "-p", "2", "-d", "2",
                         "--rate", "200", "--qos", qos, "--mqtt-version", version, "--plot", str(plot))
    check_report(report, "mqtt", 4)
    assert report["qos"] == int(qos) and report["procs"] == 2
    pytest.importorskip("matplotlib")
    assert plot.stat().st_size > 0


async def test_bench_refuses_without_credentials(stack: Stack, tmp_path: Path) -> None:
    argv = [sys.executable, "-m", "kedge", "bench", "http", "--api-url", stack.api_url, "--data-dir", str(tmp_path)]
    proc = await asyncio.to_thread(subprocess.run, argv, capture_output=True, text=True, timeout=60, cwd=REPO)
    assert proc.returncode == 1
    assert "no admin credentials" in proc.stderr and "Traceback" not in proc.stderr


async def test_bench_connect_storm_and_idle(stack: Stack) -> None:
    storm = await bench(stack, "connect-storm", "--port", str(stack.mqtt_port), "--rate", "10", "-n", "4", "-d", "2")
    assert storm["scenario"] == "connect-storm"
    assert isinstance(storm["connects"], int) and storm["connects"] > 0 and storm["connect_failures"] == 0
    latency = storm["connect_latency_ms"]
    assert isinstance(latency, dict) and latency["p50"] is not None
    idle = await bench(stack, "idle", "--port", str(stack.mqtt_port), "-n", "5", "-d", "1")
    assert idle["scenario"] == "idle" and idle["connected"] == 5
    assert isinstance(idle["idle"], dict) and "rss_per_connection_bytes" in idle["idle"]
