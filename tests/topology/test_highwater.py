"""True high watermarks on the embedded broker, also right after a multi-record batch (embedded-kafka.md §2)."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import TopicPartition

from topology.highwater import end_offsets

pytestmark = pytest.mark.integration


async def test_end_offsets_after_batched_writes(bootstrap: str, unique: str) -> None:
    topic = f"hw-{unique}"
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=50)
    await producer.start()
    try:  # one call site, no awaits between sends: the 100 records go out as one batch
        futures = [await producer.send(topic, b"x", partition=0) for _ in range(100)]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)
        assert await end_offsets(consumer, [tp]) == {tp: 100}
        assert await end_offsets(consumer, []) == {}
    finally:
        await consumer.stop()
