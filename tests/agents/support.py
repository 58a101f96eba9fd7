"""Helpers for the device-state integration tests: topics, worker processes, an events-<app> reader."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from pathlib import Path

from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient

from kedge.settings import KafkaSettings, LeaseSettings
from schemas.binding import from_kafka
from schemas.events import DeviceEvent
from tests.support.procs import Proc, ProcGroup, kedge
from topology.apply import apply
from topology.declare import app_topic_spec, declared_topics

DEVICE_PARTITIONS = 4
#: short leases so endpoint death is noticed in about 2 s
TEST_LEASE = LeaseSettings(heartbeat_interval_s=0.4, lease_s=2.0, check_interval_s=0.5, connect_timeout_s=30.0)


async def create_topics(bootstrap: str, *apps: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        specs = declared_topics(device_partitions=DEVICE_PARTITIONS, endpoint_partitions=1, replication=1)
        specs += [app_topic_spec(a, partitions=2, replication=1) for a in apps]
        await apply(admin, specs)
    finally:
        await admin.close()


def worker_env(bootstrap: str, data_dir: Path, app_id: str) -> dict[str, str]:
    return {
        "KEDGE_KAFKA__BOOTSTRAP_SERVERS": bootstrap,
        "KEDGE_DATA_DIR": str(data_dir),
        "KEDGE_WORKER__APP_ID": app_id,
        "KEDGE_WORKER__SESSION_TIMEOUT_S": "3",
        "KEDGE_WORKER__HEARTBEAT_INTERVAL_S": "0.5",
        "KEDGE_WORKER__REBALANCE_TIMEOUT_S": "3",
        "KEDGE_TOPOLOGY__DEVICE_PARTITIONS": str(DEVICE_PARTITIONS),
        "KEDGE_LEASE__CHECK_INTERVAL_S": str(TEST_LEASE.check_interval_s),
        "KEDGE_INSTANCE": "test",
    }


async def start_worker(group: ProcGroup, name: str, bootstrap: str, data_dir: Path, app_id: str) -> Proc:
    proc = group.start(name, kedge("worker"), worker_env(bootstrap, data_dir, app_id))
    await proc.wait_for_log("Ready", timeout_s=60)
    return proc


def kafka_settings(bootstrap: str) -> KafkaSettings:
    return KafkaSettings(bootstrap_servers=bootstrap, linger_ms=0)


class EventReader:
    """Reads one ``events-<app>`` topic from the start, in the background, into ``events``."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                         enable_auto_commit=False, fetch_max_wait_ms=50)
        self.events: list[tuple[int, DeviceEvent]] = []  # (partition, event)
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> EventReader:
        await self.consumer.start()
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.consumer.stop()

    async def _run(self) -> None:
        while True:
            batch = await self.consumer.getmany(timeout_ms=200)
            for tp, records in batch.items():
                for r in records:
                    self.events.append((tp.partition, from_kafka(r.key, r.value, r.headers)))

    def of(self, device: str) -> list[DeviceEvent]:
        """Events of one device, in order (one device is always in one partition)."""
        return [e for _, e in self.events if e.device == device]

    def unique_of(self, device: str) -> list[DeviceEvent]:
        """:meth:`of` without repeats of an event id (what an at-least-once consumer keeps)."""
        seen: set[str] = set()
        out = []
        for e in self.of(device):
            if e.id not in seen:
                seen.add(e.id)
                out.append(e)
        return out

    async def wait(self, check: Callable[[], bool], timeout_s: float, what: str) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if check():
                return
            await asyncio.sleep(0.05)
        seen = [(e.type, e.subject, e.data, e.extensions.get("connectionid")) for _, e in self.events]
        raise AssertionError(f"timed out after {timeout_s}s waiting for {what}; events: {seen}")


def connection_log(events: list[DeviceEvent]) -> list[tuple[str, str, str | None, str]]:
    """``(kind, connectionid, reason, sequence)`` of connection events; ``("will", subject, None, "")`` for Wills."""
    import orjson

    out: list[tuple[str, str, str | None, str]] = []
    for e in events:
        if e.type == "io.drogue.connection.v1":
            data = orjson.loads(e.data)
            out.append(("connected" if data["connected"] else "disconnected", e.extensions["connectionid"],
                        data.get("reason"), e.extensions["sequence"]))
        else:
            out.append(("will", e.subject or "", None, ""))
    return out


def assert_repeats_identical(device: str, events: list[DeviceEvent]) -> None:
    """At-least-once may repeat an event, but only as the same event: same id, same content. A transition
    applied twice would show as two different ids with the same kind or one sequence under two ids."""
    by_id: dict[str, DeviceEvent] = {}
    by_sequence: dict[str, str] = {}
    for e in events:
        first = by_id.setdefault(e.id, e)
        assert (first.type, first.data, first.extensions) == (e.type, e.data, e.extensions), (
            f"{device}: two different events share the id {e.id}: {first} / {e}")
        seq = e.extensions.get("sequence")
        if seq is not None and e.type == "io.drogue.connection.v1":
            assert by_sequence.setdefault(seq, e.id) == e.id, (
                f"{device}: sequence {seq} under two event ids (a doubled transition): {connection_log(events)}")
