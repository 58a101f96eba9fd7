"""`kedge broker`, `kedge topology apply|show` and `kedge up` as a user runs them: real processes, real broker."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from kedge.broker import free_port
from tests.support.procs import REPO, ProcGroup, kedge

pytestmark = pytest.mark.integration


def run(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    import os

    full = {k: v for k, v in os.environ.items() if not k.startswith("KEDGE_")}
    full.update(env or {})
    return subprocess.run(kedge(*args), capture_output=True, text=True, env=full, cwd=REPO, timeout=timeout)


async def test_broker_then_topology_apply_is_idempotent(procs: ProcGroup, tmp_path: Path) -> None:
    port = free_port()
    broker = procs.start("broker", kedge("broker", "--port", str(port)))
    await broker.wait_for_log(f"listening on 127.0.0.1:{port}", timeout_s=20)
    env = {"KEDGE_KAFKA__BOOTSTRAP_SERVERS": f"127.0.0.1:{port}"}

    first = run("topology", "apply", "-o", "json", env=env)
    assert first.returncode == 0, first.stderr
    states = {s["name"]: s for s in json.loads(first.stdout)}
    assert set(states) == {"device-state", "registry", "iot-commands", "endpoint-control", "endpoint-heartbeats"}
    assert {s["status"] for s in states.values()} == {"created"}
    assert states["endpoint-heartbeats"]["declared"]["configs"] == {"cleanup.policy": "compact"}
    assert states["device-state"]["actual"]["partitions"] == states["registry"]["actual"]["partitions"]

    second = run("topology", "apply", "-o", "json", env=env)
    assert second.returncode == 0, second.stderr
    assert {s["status"] for s in json.loads(second.stdout)} == {"ok"}, "a second apply must change nothing"

    shown = run("topology", "show", "-o", "json", env=env)
    assert shown.returncode == 0
    assert all(s["actual"]["partitions"] == s["declared"]["partitions"] for s in json.loads(shown.stdout))

    mismatch = run("topology", "apply", env={**env, "KEDGE_TOPOLOGY__DEVICE_PARTITIONS": "8"})
    assert mismatch.returncode == 1
    assert mismatch.stderr.count("\n") == 1, mismatch.stderr
    assert "topology mismatch" in mismatch.stderr and "declared 8" in mismatch.stderr

    broker.popen.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
    assert broker.popen.wait(10) == 0  # type: ignore[union-attr]


def test_broker_on_a_taken_port_is_a_one_line_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run("broker", "--port", str(port), timeout=20)
    assert result.returncode == 1
    assert result.stderr.strip().startswith("error: cannot listen on 127.0.0.1:")
    assert "Traceback" not in result.stderr and result.stderr.count("\n") == 1


@pytest.mark.parametrize("service", ["api", "http", "ws-integration", "mqtt-integration"])
def test_serving_on_a_taken_port_is_a_one_line_error(service: str, tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run("serve", service, "--port", str(port), env={
            "KEDGE_DATA_DIR": str(tmp_path), "KEDGE_KAFKA__BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}"})
    assert result.returncode == 1, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: cannot listen") and str(port) in last, result.stderr
    assert "Traceback" not in result.stderr, result.stderr


def test_an_endpoint_without_kafka_is_a_one_line_error(tmp_path: Path) -> None:
    result = run("serve", "mqtt", "--port", "0", env={
        "KEDGE_DATA_DIR": str(tmp_path), "KEDGE_KAFKA__BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}"})
    assert result.returncode == 1, result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("error: cannot reach Kafka"), result.stderr
    assert "Traceback" not in result.stderr, result.stderr


def test_missing_broker_binary_is_a_one_line_error(tmp_path: Path) -> None:
    result = run("broker", "--port", str(free_port()), env={"KEDGE_BROKER__BINARY": str(tmp_path / "nope")})
    assert result.returncode == 1
    assert "broker binary not found" in result.stderr and "Traceback" not in result.stderr


def test_unreachable_kafka_is_a_one_line_error() -> None:
    result = run("topology", "show", env={"KEDGE_KAFKA__BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}",
                                          "KEDGE_KAFKA__REQUEST_TIMEOUT_MS": "1000"})
    assert result.returncode == 1
    assert "cannot reach Kafka" in result.stderr and "Traceback" not in result.stderr


def test_invalid_setting_names_the_variable() -> None:
    result = run("config", "show", env={"KEDGE_BROKER__PORT": "not-a-port"})
    assert result.returncode == 1
    assert "KEDGE_BROKER__PORT" in result.stderr and "Traceback" not in result.stderr


async def test_up_runs_the_procfile_and_stops_cleanly(procs: ProcGroup, tmp_path: Path) -> None:
    procfile = tmp_path / "Procfile"
    procfile.write_text("# a smaller stack for the test\nbroker: kedge broker\nworker: kedge worker\n")
    port = free_port()
    env = {"KEDGE_BROKER__PORT": str(port), "KEDGE_DATA_DIR": str(tmp_path / "data"), "COLUMNS": "200"}
    up = procs.start("up", [sys.executable, "-m", "kedge", "up", "--procfile", str(procfile)], env=env)
    await up.wait_for_log("Ctrl-C stops everything", timeout_s=60)
    await up.wait_for_log("worker", timeout_s=5)
    await up.wait_for_log("Ready", timeout_s=60)  # the Faust worker joined the embedded broker
    log = up.log()
    assert f"kafka://127.0.0.1:{port} (memory only)" in log
    assert "topology: 5 topics created" in log
    up.popen.send_signal(signal.SIGINT)  # type: ignore[union-attr]
    assert up.popen.wait(30) == 0, up.log()[-3000:]  # type: ignore[union-attr]
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", port))  # the broker is gone: its port is free again
