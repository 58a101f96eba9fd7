"""Best-effort (QoS 0) publishing against the real broker: a flood is slowed down, not dropped."""

from __future__ import annotations

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition

from ingress.publish import Publisher
from kedge.settings import KafkaSettings
from schemas.events import build_device_event
from tests.ingress.kafka_support import create_app_topic
from topology.highwater import end_offsets

pytestmark = pytest.mark.integration

COUNT = 20_000


async def test_a_flood_of_best_effort_events_all_arrive_when_the_caller_honours_saturation(
    bootstrap: str, unique: str
) -> None:
    app = f"flood-{unique}"
    topic = await create_app_topic(bootstrap, app, partitions=1)
    publisher = Publisher.from_settings(KafkaSettings(bootstrap_servers=bootstrap, max_in_flight=1000))
    await publisher.start(wait_s=10)
    paused = 0
    try:
        for n in range(COUNT):
            publisher.publish_nowait(build_device_event(
                app=app, app_uid="a", device="d", device_uid="d", sender="d", sender_uid="d", instance="i",
                channel="t", payload=b'{"n":%d}' % n, content_type=None))
            if publisher.saturated:  # what the MQTT endpoint does: stop reading until there is room
                paused += 1
                await publisher.wait_room()
                assert not publisher.saturated
    finally:
        await publisher.stop()  # waits for the backlog to be acknowledged
    assert publisher.in_flight == 0
    assert paused > 0, "20k events never filled a backlog of 1000: the test did not exercise back-pressure"

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        delivered = await end_offsets(consumer, [TopicPartition(topic, 0)])
    finally:
        await consumer.stop()
    assert sum(delivered.values()) == COUNT, "best-effort events were lost"


async def test_records_land_on_the_partition_aiokafka_would_choose_for_their_key(
    bootstrap: str, unique: str
) -> None:
    """The publisher picks partitions itself (cached per key); they must be the default partitioner's."""
    from kedge import kafka
    from schemas.keys import device_key
    from tests.ingress.kafka_support import read_records

    app = f"parts-{unique}"
    topic = await create_app_topic(bootstrap, app, partitions=5)
    devices = [f"dev-{n}" for n in range(24)]
    settings = KafkaSettings(bootstrap_servers=bootstrap)
    publisher = Publisher.from_settings(settings)
    await publisher.start(wait_s=10)
    try:
        for _ in range(2):  # the second round comes from the cache
            for device in devices:
                await publisher.publish(build_device_event(
                    app=app, app_uid="a", device=device, device_uid="d", sender=device, sender_uid="d",
                    instance="i", channel="t", payload=b"{}", content_type=None))
    finally:
        await publisher.stop()
    reference = kafka.producer(settings)  # aiokafka partitioning by itself, same keys
    await reference.start()
    try:
        acks = [await reference.send_and_wait(topic, b"ref", key=device_key(app, d).encode()) for d in devices]
    finally:
        await reference.stop()
    expected = {device_key(app, d).encode(): ack.partition for d, ack in zip(devices, acks, strict=True)}
    records = await read_records(bootstrap, topic, 3 * len(devices))
    ours = [r for r in records if r.value != b"ref"]
    assert len(ours) == 2 * len(devices)
    assert {(r.key, r.partition) for r in ours} == set(expected.items())
    assert len(set(expected.values())) > 1, "24 keys on one partition: the test shows nothing"
