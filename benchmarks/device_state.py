"""Device-state benchmark: connect-accept latency, takeover latency, endpoint-loss release time.

Run on demand (not part of the tests):  .venv/bin/python benchmarks/device_state.py [--sessions 10000]

Starts an embedded Tansu broker and one `kedge worker` subprocess, then, from this process, plays
endpoints with real `StateClient`s:

* connect-accept latency: sequential connects of fresh devices, from `connect()` to the accepting reply
  (which the agent sends only after `connected` was acknowledged by Kafka);
* takeover latency: a second endpoint connects a device the first holds; from the new `connect()` call to
  the first endpoint's `on_kick`;
* endpoint loss: an endpoint holding N sessions stops heartbeating (like SIGKILL, no release); time from
  its last heartbeat to the last `connected:false` (endpoint_lost) on events-<app>, with the default lease
  (6 s) and check interval (1 s) — the floor is the lease itself;
* baseline, same run and broker: raw aiokafka `send_and_wait` latency (acks=all).

Writes benchmarks/results/device_state.json and prints a table.

Reading the numbers (2-core machine, embedded broker): Faust creates its consumer with a hard-coded
``fetch_max_wait_ms=1500``, and with Faust's many-partition fetches the embedded broker holds the answer until
that wait ends, so every hop through the worker costs up to 1.5 s (connect-accept and takeover p50 ~750 ms,
two hops on the lease path). With the worker consumer's fetch wait set to 5 ms the same run gave connect-accept
p50 23.5 ms / p99 115 ms, takeover p50 15 ms / p99 55 ms, first endpoint_lost 6.2 s and the last of 10k
12.1 s after the heartbeats stopped (lease 6 s + check 1 s; releasing 10k sessions takes ~6 s of worker CPU).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ingress.state_client import StateClient, StateUnavailable  # noqa: E402
from kedge.broker import EmbeddedBroker, free_port  # noqa: E402
from kedge.settings import KafkaSettings, LeaseSettings  # noqa: E402
from schemas.state import Kick  # noqa: E402
from topology import names  # noqa: E402
from topology.apply import apply  # noqa: E402
from topology.declare import TopicSpec, app_topic_spec, declared_topics  # noqa: E402

PARTITIONS = 4


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def summary_ms(values: list[float]) -> dict[str, float]:
    ms = [v * 1000 for v in values]
    return {"n": len(ms), "p50_ms": round(statistics.median(ms), 3), "p99_ms": round(pct(ms, 0.99), 3),
            "max_ms": round(max(ms), 3)}


async def baseline(bootstrap: str, n: int) -> dict[str, float]:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=0)
    await producer.start()
    try:
        lat = []
        for i in range(n):
            t = time.perf_counter()
            await producer.send_and_wait(names.DEVICE_STATE + "-bench", b"x" * 200, key=str(i).encode())
            lat.append(time.perf_counter() - t)
        return summary_ms(lat)
    finally:
        await producer.stop()


async def connect_latency(client: StateClient, app: str, n: int) -> dict[str, float]:
    lat = []
    for i in range(n):
        t = time.perf_counter()
        reply = await client.connect(app, f"lat-{i}", uuid.uuid4().hex, "mqtt", "au", f"u{i}")
        lat.append(time.perf_counter() - t)
        assert reply.accepted, reply
    return summary_ms(lat)


async def takeover_latency(old: StateClient, new: StateClient, kicked: dict[str, asyncio.Future[float]],
                           app: str, n: int) -> dict[str, float]:
    lat = []
    for i in range(n):
        device = f"take-{i}"
        cid = uuid.uuid4().hex
        assert (await old.connect(app, device, cid, "mqtt", "au", device)).accepted
        kicked[cid] = asyncio.get_running_loop().create_future()
        t = time.perf_counter()
        assert (await new.connect(app, device, uuid.uuid4().hex, "mqtt", "au", device)).accepted
        lat.append(await asyncio.wait_for(kicked[cid], 30) - t)
    return summary_ms(lat)


async def endpoint_loss(bootstrap: str, lease: LeaseSettings, app: str, sessions: int) -> dict[str, float]:
    kafka = KafkaSettings(bootstrap_servers=bootstrap)
    client = StateClient(kafka, lease)
    await client.start()
    sem = asyncio.Semaphore(256)

    async def one(i: int) -> None:
        async with sem:
            reply = await client.connect(app, f"mass-{i}", f"mass-{i}-{uuid.uuid4().hex}", "mqtt", "au", f"m{i}")
            assert reply.accepted, reply

    t0 = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(sessions)))
    connect_s = time.perf_counter() - t0

    consumer = AIOKafkaConsumer(names.app_topic(app), bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                enable_auto_commit=False)
    await consumer.start()
    try:
        last_beat = time.perf_counter()  # upper bound: the stopped beat loop sent its last beat before this
        await client.stop(release=False)
        lost = 0
        last = first = last_beat
        deadline = time.monotonic() + 120
        while lost < sessions and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=200)).values():
                for r in records:
                    if r.value and b'"endpoint_lost"' in r.value and r.key and r.key.startswith(
                            f"{app}/mass".encode()):
                        lost += 1
                        last = time.perf_counter()
                        if lost == 1:
                            first = last
        return {"sessions": sessions, "connect_all_s": round(connect_s, 3),
                "connects_per_s": round(sessions / connect_s, 1), "released": lost,
                "stop_to_first_disconnected_s": round(first - last_beat, 3),
                "stop_to_last_disconnected_s": round(last - last_beat, 3),
                "lease_s": lease.lease_s, "check_interval_s": lease.check_interval_s}
    finally:
        await consumer.stop()


async def worker_failover(work: Path, bootstrap: str, lease: LeaseSettings, app: str) -> dict[str, float]:
    """A second worker joins; once both serve, it is SIGKILLed. Time until every partition answers again."""
    second = start_worker(work, bootstrap, "worker-2")
    client = StateClient(KafkaSettings(bootstrap_servers=bootstrap, linger_ms=0),
                         LeaseSettings(connect_timeout_s=60))
    await client.start()
    devices = [f"failover-{i}" for i in range(4 * PARTITIONS)]
    try:
        log = work / "worker-2.log"
        deadline = time.monotonic() + 90
        while b"device-state partition" not in log.read_bytes():  # it processed records: it owns partitions
            if time.monotonic() > deadline:
                raise RuntimeError("the second worker never got a partition")
            await asyncio.gather(*(client.connect(app, d, uuid.uuid4().hex, "mqtt", "au", d) for d in devices))
        await asyncio.gather(*(client.connect(app, d, uuid.uuid4().hex, "mqtt", "au", d) for d in devices))
        second.kill()
        killed = time.perf_counter()
        second.wait(10)

        async def served(device: str) -> float:
            reply = await client.connect(app, device, uuid.uuid4().hex, "mqtt", "au", device)
            assert reply.accepted, reply
            return time.perf_counter() - killed

        times = await asyncio.gather(*(served(d) for d in devices))
        return {"devices": len(devices), "kill_to_all_partitions_serving_s": round(max(times), 3),
                "kill_to_first_answer_s": round(min(times), 3),
                "worker_session_timeout_s": 3.0}
    finally:
        if second.poll() is None:
            second.kill()
        await client.stop()


def start_worker(work: Path, bootstrap: str, name: str = "worker") -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEDGE_")}
    env.update({"KEDGE_KAFKA__BOOTSTRAP_SERVERS": bootstrap, "KEDGE_DATA_DIR": str(work / name),
                "KEDGE_WORKER__SESSION_TIMEOUT_S": "3", "KEDGE_WORKER__REBALANCE_TIMEOUT_S": "3",
                "KEDGE_TOPOLOGY__DEVICE_PARTITIONS": str(PARTITIONS), "KEDGE_LOG_LEVEL": "info"})
    with open(work / f"{name}.log", "wb") as log:
        return subprocess.Popen([sys.executable, "-m", "kedge", "worker"], env=env, cwd=REPO, stdout=log,
                                stderr=subprocess.STDOUT)


async def main(args: argparse.Namespace) -> dict[str, object]:
    work = Path(tempfile.mkdtemp(prefix="kedge-bench-"))
    broker = EmbeddedBroker(port=free_port(), log_path=work / "tansu.log")
    await broker.start()
    worker: subprocess.Popen[bytes] | None = None
    try:
        bootstrap = broker.bootstrap
        app = "bench"
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        specs = declared_topics(device_partitions=PARTITIONS, endpoint_partitions=1, replication=1)
        specs += [app_topic_spec(app, partitions=3, replication=1), TopicSpec(names.DEVICE_STATE + "-bench", 1, 1)]
        await apply(admin, specs)
        await admin.close()
        lease = LeaseSettings()
        worker = start_worker(work, bootstrap)
        kafka = KafkaSettings(bootstrap_servers=bootstrap, linger_ms=0)
        kicked: dict[str, asyncio.Future[float]] = {}

        def on_kick(kick: Kick) -> None:
            fut = kicked.get(kick.connection_id)
            if fut is not None and not fut.done():
                fut.set_result(time.perf_counter())

        old = StateClient(kafka, lease, on_kick=on_kick)
        new = StateClient(kafka, lease)
        await old.start()
        await new.start()
        # warm-up: the first connects wait for the worker to join the group
        deadline = time.monotonic() + 90
        while True:
            try:
                await old.connect(app, "warmup", uuid.uuid4().hex, "mqtt", "au", "w")
                break
            except StateUnavailable:
                if time.monotonic() > deadline:
                    raise
        results: dict[str, object] = {
            "baseline_aiokafka_send_and_wait": await baseline(bootstrap, args.latency_n),
            "connect_accept": await connect_latency(old, app, args.latency_n),
            "takeover_new_connect_to_old_kicked": await takeover_latency(old, new, kicked, app, args.takeover_n),
        }
        await old.stop()
        await new.stop()
        results["endpoint_loss"] = await endpoint_loss(bootstrap, lease, app, args.sessions)
        results["worker_failover"] = await worker_failover(work, bootstrap, lease, app)
        results["machine"] = {"python": platform.python_version(), "cpus": os.cpu_count(),
                              "broker": "tansu (embedded, memory)", "worker_partitions": PARTITIONS}
        return results
    finally:
        if worker is not None:
            worker.terminate()
            try:
                worker.wait(15)
            except subprocess.TimeoutExpired:
                worker.kill()
        broker.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=10_000)
    parser.add_argument("--latency-n", type=int, default=200)
    parser.add_argument("--takeover-n", type=int, default=100)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "device_state.json")
    ns = parser.parse_args()
    out = asyncio.run(main(ns))
    ns.out.parent.mkdir(parents=True, exist_ok=True)
    ns.out.write_text(json.dumps(out, indent=2) + "\n")
    for name, row in out.items():
        print(f"{name:40} {row}")
    print(f"written to {ns.out}")
