"""A fresh worker behind a backlog of heartbeats (a new group on an uncompacted ``endpoint-heartbeats``) sends no
expiry marker until it has caught up, so it cannot bury the heartbeats it has yet to read under markers of
its own; once caught up it expires every dead endpoint exactly once and releases one that stops afterwards."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from kedge.broker import EmbeddedBroker, free_port
from schemas.record import MalformedRecord
from schemas.state import Heartbeat
from tests.agents.support import create_topics, start_worker
from tests.support.procs import ProcGroup, eventually
from topology import names

pytestmark = [pytest.mark.integration, pytest.mark.slow]

OLD_ENDPOINTS = 40
FILLER = 4000  # heartbeats of one busy endpoint between two heartbeats of each old one
LEASE_S = 0.5  # shorter than the worker needs to replay the filler


@pytest.fixture
async def private_broker(tmp_path: Path) -> object:
    broker = EmbeddedBroker(port=free_port(), log_path=tmp_path / "tansu.log")
    await broker.start()
    yield broker
    broker.stop()


async def _markers(bootstrap: str) -> Counter[str]:
    """Expiry markers (``lease_s == 0`` records) on ``endpoint-heartbeats``, per endpoint."""
    consumer = AIOKafkaConsumer(names.ENDPOINT_HEARTBEATS, bootstrap_servers=bootstrap,
                                auto_offset_reset="earliest", enable_auto_commit=False, fetch_max_wait_ms=50)
    await consumer.start()
    found: Counter[str] = Counter()
    try:
        while batch := await consumer.getmany(timeout_ms=500):
            for records in batch.values():
                for record in records:
                    try:
                        hb = Heartbeat.from_bytes(record.value or b"")
                    except MalformedRecord:
                        continue
                    if hb.lease_s == 0:
                        found[hb.endpoint] += 1
    finally:
        await consumer.stop()
    return found


async def test_a_worker_replaying_a_backlog_sends_no_marker_before_it_caught_up(
    private_broker: EmbeddedBroker, tmp_path: Path
) -> None:
    bootstrap = private_broker.bootstrap
    await create_topics(bootstrap)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    await producer.start()
    group = ProcGroup(tmp_path)
    try:
        now = time.time()
        backlog = [Heartbeat(f"old-{i}", 1, now, LEASE_S) for i in range(OLD_ENDPOINTS)]
        backlog += [Heartbeat("filler", seq, now, LEASE_S) for seq in range(1, FILLER + 1)]
        backlog += [Heartbeat(f"old-{i}", 2, now, LEASE_S) for i in range(OLD_ENDPOINTS)]
        sent = [await producer.send(names.ENDPOINT_HEARTBEATS, hb.to_bytes(), key=hb.endpoint.encode())
                for hb in backlog]
        await asyncio.gather(*sent)
        worker = await start_worker(group, "worker", bootstrap, tmp_path / "worker", f"w-{uuid.uuid4().hex[:8]}")

        probe = f"probe-{uuid.uuid4().hex[:6]}"
        for seq in range(1, 6):
            await (await producer.send(names.ENDPOINT_HEARTBEATS, Heartbeat(probe, seq, time.time(),
                                       LEASE_S).to_bytes(), key=probe.encode()))
            await asyncio.sleep(LEASE_S / 4)
        # the probe stops heartbeating: its lease ends, after the backlog's
        await worker.wait_for_log(f"lease of endpoint {probe} ended", 90)
        await eventually(lambda: all(f"lease of endpoint old-{i} ended" in worker.log()
                                     for i in range(OLD_ENDPOINTS)), 30, "every old endpoint released")

        markers = await _markers(bootstrap)
        repeated = {endpoint: n for endpoint, n in markers.items() if n > 1}
        assert not repeated, f"endpoints expired more than once while the worker caught up: {repeated}"
        assert set(markers) == {f"old-{i}" for i in range(OLD_ENDPOINTS)} | {"filler", probe}, markers
        assert "made no progress" not in worker.log(), worker.log()
    finally:
        await producer.stop()
        group.stop_all()
