"""Reads ``events-<app>`` during a run: end-to-end latency from the payload's send time, delivered throughput,
loss and duplicates per device."""

from __future__ import annotations

import asyncio
import contextlib
import time
from array import array
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition

from kedge.bench.payload import PayloadFormat
from kedge.bench.stats import DeliveryTracker, Timeline
from topology.highwater import end_offsets


class EventsConsumer:
    """Start it before the load (it begins at the topic's true end), stop it after the drain."""

    def __init__(self, options: dict[str, Any], topic: str, fmt: PayloadFormat, timeline: Timeline) -> None:
        self.options = options
        self.topic = topic
        self.fmt = fmt
        self.timeline = timeline
        self.tracker = DeliveryTracker()
        self.latencies_ms: array[float] = array("d")
        self.foreign = 0
        self.last_arrival = 0.0
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self, timeout_s: float = 30.0) -> None:
        consumer = AIOKafkaConsumer(enable_auto_commit=False, fetch_max_wait_ms=20, max_partition_fetch_bytes=4 << 20,
                                    fetch_max_bytes=32 << 20, **self.options)
        await consumer.start()
        self._consumer = consumer
        deadline = time.monotonic() + timeout_s
        parts: set[int] = set()
        while not parts:
            parts = consumer.partitions_for_topic(self.topic) or set()
            if parts:
                break
            if time.monotonic() > deadline:
                await consumer.stop()
                raise TimeoutError(f"topic {self.topic} has no partitions after {timeout_s:g}s")
            await consumer._client.force_metadata_update()
            await asyncio.sleep(0.2)
        tps = [TopicPartition(self.topic, p) for p in sorted(parts)]
        consumer.assign(tps)
        for tp, offset in (await end_offsets(consumer, tps)).items():
            consumer.seek(tp, offset)
        self._task = asyncio.create_task(self._run(consumer))

    async def _run(self, consumer: AIOKafkaConsumer) -> None:
        parse, add, latencies = self.fmt.parse, self.tracker.add, self.latencies_ms
        while True:
            batches = await consumer.getmany(timeout_ms=100, max_records=20_000)
            if not batches:
                continue
            now_ns = time.time_ns()
            now = now_ns / 1e9
            bucket = self.timeline.bucket(now)
            for records in batches.values():
                for record in records:
                    sample = parse(record.value)
                    if sample is None:
                        self.foreign += 1
                        continue
                    if add(sample.device, sample.seq):
                        lat = (now_ns - sample.sent_ns) / 1e6
                        latencies.append(lat)
                        bucket.delivered += 1
                        bucket.latencies_ms.append(lat)
            self.last_arrival = now

    async def wait_for(self, expected: int, quiet_s: float, timeout_s: float) -> None:
        """Until ``expected`` messages arrived, nothing arrived for ``quiet_s`` (counted from the call at the
        earliest), or ``timeout_s`` passed."""
        since = time.time()
        deadline = time.monotonic() + timeout_s
        while self.tracker.delivered < expected and time.monotonic() < deadline:
            if time.time() - max(self.last_arrival, since) > quiet_s:
                break
            await asyncio.sleep(0.05)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        if self._consumer is not None:
            await self._consumer.stop()
