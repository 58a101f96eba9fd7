"""Bulk sends of the device-state shell: many records, one aiokafka batch per topic-partition.

An endpoint's loss (or an app-wide registry change) turns one record into thousands of effects. Sending each
through ``producer.send`` costs a call chain, a partitioner run and a future per record (the worker profile of
a 10k-session release: ~15 % of its time in ``Producer.send``). :class:`BulkSend` appends the records to one
``BatchBuilder`` per topic-partition and submits each batch once it is full, and the rest at :meth:`submit`.

Ordering: records of one topic-partition keep the order they were added in; ``send_batch`` queues a batch
behind every record already queued for that partition, so records sent before (by any path of this producer)
stay ahead. Delivery: the batches are in the producer's accumulator when :meth:`submit` returns, so Faust's
commit, which flushes the producer first, never commits the offset of a record whose effects are not on Kafka.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

log = logging.getLogger(__name__)


class BulkSend:
    """Collects records for ``producer`` (an ``AIOKafkaProducer``); one instance per bulk of effects."""

    def __init__(self, producer: Any) -> None:
        self.producer = producer
        self._batches: dict[tuple[str, int], Any] = {}
        self._partitions: set[str] = set()
        self._sent: list[asyncio.Future[Any]] = []

    async def add(
        self, topic: str, key: bytes, value: bytes, headers: list[tuple[str, bytes]] | None = None,
        partition: int | None = None,
    ) -> None:
        """Queue one record; ``partition`` None: the producer's partitioner picks it from ``key``, as ``send`` would."""
        if partition is None:
            if topic not in self._partitions:
                await self.producer.partitions_for(topic)  # metadata for the partitioner
                self._partitions.add(topic)
            partition = self.producer._partition(topic, None, key, value, key, value)
        tp = (topic, partition)
        batch = self._batches.get(tp)
        if batch is None:
            batch = self._batches[tp] = self.producer.create_batch()
        if batch.append(key=key, value=value, timestamp=None, headers=headers or []) is not None:
            return
        await self._send(tp, batch)  # full: off it goes, and a fresh one takes the record
        batch = self._batches[tp] = self.producer.create_batch()
        if batch.append(key=key, value=value, timestamp=None, headers=headers or []) is None:
            raise ValueError(f"a record of {len(value)} bytes for {topic} does not fit an empty batch")

    async def submit(self) -> list[asyncio.Future[Any]]:
        """Queue every partly filled batch; the delivery futures of all batches sent by this instance."""
        for tp, batch in list(self._batches.items()):
            if batch.record_count():
                await self._send(tp, batch)
        self._batches.clear()
        return self._sent

    async def _send(self, tp: tuple[str, int], batch: Any) -> None:
        future = await self.producer.send_batch(batch, tp[0], partition=tp[1])
        future.add_done_callback(_log_failure)
        self._sent.append(future)


def _log_failure(future: asyncio.Future[Any]) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.error("a batch of device-state effects was not written: %r", future.exception())
