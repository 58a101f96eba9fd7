"""Kafka helpers for the ingress integration tests: create an app topic, read its records back."""

from __future__ import annotations

import asyncio
import time

from aiokafka import AIOKafkaConsumer
from aiokafka.structs import ConsumerRecord, TopicPartition

from kedge import kafka
from kedge.settings import KafkaSettings
from topology.apply import apply
from topology.declare import app_topic_spec
from topology.names import app_topic


async def create_app_topic(bootstrap: str, app: str, partitions: int = 3) -> str:
    admin = kafka.admin_client(KafkaSettings(bootstrap_servers=bootstrap))
    await admin.start()
    try:
        await apply(admin, [app_topic_spec(app, partitions=partitions, replication=1)])
    finally:
        await admin.close()
    return app_topic(app)


async def read_records(
    bootstrap: str, topic: str, count: int, timeout_s: float = 15.0
) -> list[ConsumerRecord]:
    """The first ``count`` records of ``topic`` (all partitions, from the start); fail after the timeout."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                auto_offset_reset="earliest")
    await consumer.start()
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        if not partitions:
            await consumer._client.force_metadata_update()
            partitions = consumer.partitions_for_topic(topic) or set()
        assert partitions, f"topic {topic} has no partitions"
        consumer.assign([TopicPartition(topic, p) for p in sorted(partitions)])
        await consumer.seek_to_beginning()
        got: list[ConsumerRecord] = []
        deadline = time.monotonic() + timeout_s
        while len(got) < count:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"only {len(got)} of {count} records in {topic} after {timeout_s}s")
            batches = await consumer.getmany(timeout_ms=int(min(left, 0.5) * 1000))
            for records in batches.values():
                got.extend(records)
            await asyncio.sleep(0)
        return got
    finally:
        await consumer.stop()
