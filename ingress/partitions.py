"""The partition of each record key, as the producer's default partitioner picks it, remembered (its murmur2 is
pure Python and would run per message). Used by :class:`ingress.publish.Publisher`."""

from __future__ import annotations

import time

from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner

__all__ = ["PARTITIONS_REFRESH_S", "PartitionCache"]

#: the partitioner of every Kedge producer (kedge.kafka.producer keeps aiokafka's default)
_PARTITIONER = DefaultPartitioner()
#: how often the publisher re-reads the producer's partition list of a topic (see PartitionCache.partition)
PARTITIONS_REFRESH_S = 1.0


class _Partitions:
    """A topic's partition ids (sorted, as the partitioner wants them) and the partition of each key."""

    __slots__ = ("ids", "of_key", "until")

    def __init__(self, ids: list[int]) -> None:
        self.ids = ids
        self.of_key: dict[bytes, int] = {}
        self.until = 0.0


class PartitionCache:
    """Per topic: its partition ids, and the partition of every key seen (at most 65,536 keys per topic)."""

    def __init__(self) -> None:
        self._topics: dict[str, _Partitions] = {}

    def partition(self, producer: AIOKafkaProducer, topic: str, key: bytes) -> int | None:
        """The partition the producer's default partitioner would pick for ``key``, remembered per key (its
        murmur2 is pure Python, and it runs per message); None before the producer knows the topic's partitions
        (the send then waits for them and partitions itself). The producer's partition list is re-read at most
        every ``PARTITIONS_REFRESH_S``: a partition added to a topic (aiokafka itself only sees it at its next
        metadata refresh) is used from then on."""
        now = time.monotonic()
        known = self._topics.get(topic)
        if known is None or known.until <= now:
            ids = producer.client.cluster.partitions_for_topic(topic)
            if not ids:
                return None
            ordered = sorted(ids)
            if known is None or known.ids != ordered:
                known = _Partitions(ordered)
                self._topics[topic] = known
            known.until = now + PARTITIONS_REFRESH_S
        partition = known.of_key.get(key)
        if partition is None:
            if len(known.of_key) >= 1 << 16:
                known.of_key.clear()
            partition = known.of_key[key] = _PARTITIONER(key, known.ids, None)
        return partition
