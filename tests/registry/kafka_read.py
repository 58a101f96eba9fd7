"""Read registry change records back from Kafka with a plain aiokafka consumer (no group, every partition)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

import pydantic
from aiokafka import AIOKafkaConsumer, TopicPartition

from schemas.registry import RegistryChange
from topology.names import REGISTRY


@dataclass(frozen=True)
class Seen:
    partition: int
    key: str
    change: RegistryChange


async def read_changes(bootstrap: str, count: int, timeout_s: float,
                       keep: Callable[[RegistryChange], bool]) -> list[Seen]:
    """The first ``count`` kept records of the ``registry`` topic (from the beginning), in partition order.

    Fails with the records seen so far when fewer arrive within ``timeout_s``.
    """
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                enable_auto_commit=False, request_timeout_ms=5000)
    await consumer.start()
    seen: list[Seen] = []
    try:
        deadline = time.monotonic() + timeout_s
        partitions: set[int] | None = None
        while not partitions:
            await consumer.topics()
            partitions = consumer.partitions_for_topic(REGISTRY)
            if time.monotonic() > deadline:
                raise AssertionError("the registry topic does not exist")
            if not partitions:
                await asyncio.sleep(0.1)
        consumer.assign([TopicPartition(REGISTRY, p) for p in sorted(partitions)])
        await consumer.seek_to_beginning()
        while len(seen) < count:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"only {len(seen)} of {count} registry records within {timeout_s}s: "
                                     f"{[(s.partition, s.change.operation, s.change.device) for s in seen]}")
            batch = await consumer.getmany(timeout_ms=int(min(remaining, 0.5) * 1000))
            for tp, records in sorted(batch.items(), key=lambda kv: kv[0].partition):
                for record in records:
                    try:  # the topic is shared by the session's tests, some of which write bad records on purpose
                        change = RegistryChange.model_validate_json(record.value or b"")
                    except pydantic.ValidationError:
                        continue
                    if keep(change):
                        seen.append(Seen(tp.partition, (record.key or b"").decode(), change))
    finally:
        await consumer.stop()
    return seen


def by_partition(seen: list[Seen]) -> dict[int, list[Seen]]:
    out: dict[int, list[Seen]] = {}
    for s in seen:
        out.setdefault(s.partition, []).append(s)
    return out
