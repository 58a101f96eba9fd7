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

Reading the numbers (2-core machine, embedded broker, shared with other work): compare with the "before" run
made in the same minutes, and prefer the worker CPU figures (``worker_cpu_*``, from /proc) to wall times when the
machine is busy. Faust's own fetch wait (1500 ms) is replaced by ``worker.fetch_max_wait_ms`` (5 ms), the worker
producer does not linger (each connect produces twice in a row: ``connected``, then the reply after its ack), and
aiokafka's 100 ms prefetch backoff, which delayed the first record of every partition after the worker start by
~100 ms (the old p99), is 10 ms. The idle worker still costs ~0.17 of a core (its 5 ms fetch loop; 25 ms: 0.05,
but connect-accept p50 +6 ms). An endpoint's 10k releases are decided in slices and sent as batches; the lease
(6 s, minus the age of the last heartbeat, plus up to one 1 s check) comes before the first of them.

``--profile`` samples the worker with py-spy (``--gil``) during the connect-accept run, the 10k connect burst and
the release, and keeps the hottest frames in the JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

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


#: the frames a profile summary keeps: ours, Faust's and aiokafka's (the event loop's own say nothing)
OURS = ("agents/", "schemas/", "topology/", "ingress/", "faust/", "aiokafka/", "mode/", "rocksdict")


class Profiler:
    """py-spy on the worker for the duration of one phase (``--profile``); a no-op without py-spy."""

    def __init__(self, work: Path, pid: int, enabled: bool) -> None:
        local = Path(sys.executable).parent / "py-spy"
        self.exe = (str(local) if local.exists() else shutil.which("py-spy")) if enabled else None
        self.work, self.pid = work, pid
        self.skipped = None if self.exe or not enabled else "py-spy is not installed (pip install 'kedge[bench]')"

    async def during(self, name: str, job: Any) -> tuple[Any, dict[str, Any] | None]:
        """Run the coroutine ``job`` while py-spy samples the worker (whichever thread holds the GIL)."""
        if self.exe is None:
            return await job, None if self.skipped is None else {"skipped": self.skipped}
        raw = self.work / f"profile-{name}.txt"
        spy = await asyncio.create_subprocess_exec(
            self.exe, "record", "-p", str(self.pid), "-r", "200", "--gil", "--nonblocking", "-f", "raw", "-o", str(raw),
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
        try:
            result = await job
        finally:
            await asyncio.sleep(0.2)
            spy.send_signal(signal.SIGINT)  # py-spy writes its profile on Ctrl-C
            await spy.wait()
        return result, (top_frames(raw) if raw.exists() else {"skipped": f"py-spy exited with {spy.returncode}"})


def top_frames(raw: Path, n: int = 15) -> dict[str, Any]:
    """The hottest functions of a py-spy raw profile by own (innermost kept frame) and inclusive samples, as a
    percentage of the samples that were in any kept frame."""
    own: dict[str, int] = {}
    inclusive: dict[str, int] = {}
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = [_short(f) for f in stack.split(";") if any(part in f.split(" (")[-1] for part in OURS)]
        if not frames:
            continue
        total += int(count)
        own[frames[-1]] = own.get(frames[-1], 0) + int(count)
        for frame in set(frames):
            inclusive[frame] = inclusive.get(frame, 0) + int(count)

    def top(d: dict[str, int]) -> list[tuple[str, float]]:
        return [(f, round(100 * c / max(total, 1), 1)) for f, c in sorted(d.items(), key=lambda x: -x[1])[:n]]

    return {"samples": total, "own_pct": top(own), "inclusive_pct": top(inclusive),
            "note": "py-spy --gil --nonblocking at 200 Hz on the worker: samples of the thread holding the GIL"}


def _short(frame: str) -> str:
    """``func (/abs/.../site-packages/faust/x.py:12)`` -> ``func (faust/x.py)``."""
    frame = re.sub(r":\d+\)$", ")", frame)
    return re.sub(r"\((?:[^()]*site-packages/|" + re.escape(str(REPO)) + "/)", "(", frame)


def cpu_s(pid: int) -> float:
    """CPU seconds (user + system) ``pid`` has used so far: a phase's cost that does not depend on how busy the
    machine's other processes keep the cores (unlike its wall time)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


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


async def connect_latency(client: StateClient, app: str, n: int) -> dict[str, Any]:
    lat = []
    for i in range(n):
        t = time.perf_counter()
        reply = await client.connect(app, f"lat-{i}", uuid.uuid4().hex, "mqtt", "au", f"u{i}")
        lat.append(time.perf_counter() - t)
        assert reply.accepted, reply
    out: dict[str, Any] = summary_ms(lat)
    # which connects were slow: the first ones of each partition after a start, or any (the machine's noise)
    out["slowest_ms_by_index"] = [(i, round(v * 1000, 1)) for i, v in sorted(enumerate(lat), key=lambda x: -x[1])[:4]]
    return out


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


async def endpoint_loss(bootstrap: str, lease: LeaseSettings, app: str, sessions: int,
                        profiler: Profiler) -> dict[str, Any]:
    kafka = KafkaSettings(bootstrap_servers=bootstrap)
    client = StateClient(kafka, lease)
    await client.start()
    sem = asyncio.Semaphore(256)

    async def one(i: int) -> None:
        async with sem:
            reply = await client.connect(app, f"mass-{i}", f"mass-{i}-{uuid.uuid4().hex}", "mqtt", "au", f"m{i}")
            assert reply.accepted, reply

    async def burst() -> float:
        t0 = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(sessions)))
        return time.perf_counter() - t0

    cpu0 = cpu_s(profiler.pid)
    connect_s, burst_profile = await profiler.during("connect-burst", burst())
    burst_cpu = cpu_s(profiler.pid) - cpu0

    consumer = AIOKafkaConsumer(names.app_topic(app), bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                enable_auto_commit=False)
    await consumer.start()
    try:
        last_beat = time.perf_counter()  # upper bound: the stopped beat loop sent its last beat before this
        await client.stop(release=False)
        cpu0 = cpu_s(profiler.pid)
        cpu_first: list[float] = []

        async def released() -> tuple[int, float, float]:
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
                                cpu_first.append(cpu_s(profiler.pid))
            return lost, first, last

        (lost, first, last), release_profile = await profiler.during("release", released())
        cpu_end = cpu_s(profiler.pid)
        waiting_cpu = (cpu_first or [cpu_end])[0] - cpu0
        out: dict[str, Any] = {
            "sessions": sessions, "connect_all_s": round(connect_s, 3),
            "connects_per_s": round(sessions / connect_s, 1), "released": lost,
            "stop_to_first_disconnected_s": round(first - last_beat, 3),
            "stop_to_last_disconnected_s": round(last - last_beat, 3),
            "first_to_last_disconnected_s": round(last - first, 3),
            "worker_cpu_per_connect_ms": round(1000 * burst_cpu / sessions, 3),
            "worker_cpu_waiting_for_expiry_s": round(waiting_cpu, 3),
            "worker_cpu_first_to_last_s": round(cpu_end - cpu0 - waiting_cpu, 3),
            "lease_s": lease.lease_s, "check_interval_s": lease.check_interval_s}
        if burst_profile is not None:
            out["profile_connect_burst"] = burst_profile
        if release_profile is not None:
            out["profile_release"] = release_profile
        return out
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
        profiler = Profiler(work, worker.pid, args.profile)
        results: dict[str, object] = {
            "baseline_aiokafka_send_and_wait": await baseline(bootstrap, args.latency_n)}
        cpu0 = cpu_s(worker.pid)
        accept, accept_profile = await profiler.during("connect-accept", connect_latency(old, app, args.latency_n))
        accept["worker_cpu_per_connect_ms"] = round(1000 * (cpu_s(worker.pid) - cpu0) / args.latency_n, 3)
        if accept_profile is not None:
            accept["profile"] = accept_profile
        results["connect_accept"] = accept
        results["takeover_new_connect_to_old_kicked"] = await takeover_latency(old, new, kicked, app,
                                                                               args.takeover_n)
        await old.stop()
        await new.stop()
        results["endpoint_loss"] = await endpoint_loss(bootstrap, lease, app, args.sessions, profiler)
        if not args.skip_failover:
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
    parser.add_argument("--profile", action="store_true",
                        help="py-spy the worker during the connect-accept run, the 10k connect burst and the release "
                             "(hottest frames go into the JSON)")
    parser.add_argument("--skip-failover", action="store_true", help="leave out the worker failover row")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "device_state.json")
    ns = parser.parse_args()
    out = asyncio.run(main(ns))
    ns.out.parent.mkdir(parents=True, exist_ok=True)
    ns.out.write_text(json.dumps(out, indent=2) + "\n")
    for name, row in out.items():
        shown = {k: v for k, v in row.items() if not k.startswith("profile")} if isinstance(row, dict) else row
        print(f"{name:40} {shown}")
        for key, prof in (row.items() if isinstance(row, dict) else ()):
            if key.startswith("profile") and "own_pct" in prof:
                print(f"  {key} ({prof['samples']} samples), own: " + "; ".join(
                    f"{frame} {share}%" for frame, share in prof["own_pct"][:8]))
    print(f"written to {ns.out}")
