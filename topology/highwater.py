"""True high watermarks from a Fetch response: the one place that works around Tansu's ListOffsets bug.

Tansu 0.6 (the embedded broker) answers ListOffsets(LATEST) with *base offset of the last record batch + 1*
instead of the high watermark whenever that batch holds more than one record. Faust ends table recovery at
that value, so a table restored from a batched changelog silently misses its newest records.

A Fetch response carries the partition's real high watermark, so :func:`fetch_highwaters` asks for one
byte at the (possibly too low) listed offset and reads the high watermark off the response header. On a
real Kafka both answers agree and the shim costs one small request per recovery. Everything that relies on
"end offsets" (Faust recovery, lag, caught-up checks, benchmark completion) must go through this module.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

from aiokafka.protocol.fetch import FetchRequest
from aiokafka.structs import TopicPartition

_NO_ERROR = 0
_FETCH_WAIT_MS = 100


async def fetch_highwaters(
    client: Any, listed: Mapping[TopicPartition, int]
) -> dict[TopicPartition, int]:
    """High watermarks for ``listed`` partitions, read from Fetch responses.

    ``client`` is an ``aiokafka.AIOKafkaClient``; ``listed`` maps each partition to the offset the broker
    returned for ListOffsets(LATEST). A partition whose Fetch fails keeps its listed value (never lower).
    """
    by_leader: dict[int, list[TopicPartition]] = defaultdict(list)
    result = dict(listed)
    for tp in listed:
        leader = client.cluster.leader_for_partition(tp)
        if leader is not None and leader >= 0:
            by_leader[leader].append(tp)
    for node_id, tps in by_leader.items():
        topics: dict[str, list[tuple[int, int, int]]] = defaultdict(list)
        for tp in tps:
            topics[tp.topic].append((tp.partition, max(int(listed[tp]), 0), 1))
        # Tansu answers a Fetch with max_wait_time=0 with an empty response (no partitions at all), so wait a
        # little; min_bytes=0 makes a real Kafka answer at once anyway.
        request = FetchRequest(
            max_wait_time=_FETCH_WAIT_MS, min_bytes=0, max_bytes=1, isolation_level=0, topics=list(topics.items())
        )
        response = await client.send(node_id, request)
        for topic, partitions in response.topics:
            for part in partitions:
                partition, error_code, highwater = part[0], part[1], part[2]
                tp = TopicPartition(topic, partition)
                if error_code == _NO_ERROR and tp in result and highwater > result[tp]:
                    result[tp] = highwater
    return result


async def end_offsets(consumer: Any, partitions: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
    """``AIOKafkaConsumer.end_offsets`` corrected by :func:`fetch_highwaters`."""
    tps = list(partitions)
    if not tps:
        return {}
    listed = await consumer.end_offsets(tps)
    return await fetch_highwaters(consumer._client, listed)
