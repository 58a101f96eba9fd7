"""Topic operator + registry events: topics follow applications, events only into apps that exist."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from agents.registry_follower import (
    FollowerConfig,
    RegistryFollower,
    TopicAction,
    registry_cloudevent,
    topic_action,
)
from kedge.broker import EmbeddedBroker, free_port
from schemas.binding import from_kafka
from schemas.keys import app_key, device_key
from schemas.registry import RegistryChange
from tests.support.procs import eventually
from topology.apply import apply
from topology.declare import TopicSpec
from topology.names import REGISTRY, app_topic

PARTITIONS = 3


def change(operation: str = "created", device: str | None = None, **kw: object) -> RegistryChange:
    data: dict[str, object] = dict(operation=operation, app="my-app", appUid="app-uid", device=device,
                                   paths=["."], generation=1, resourceVersion="rv1",
                                   uid="dev-uid" if device else "app-uid", revision=1)
    data.update(kw)
    return RegistryChange.model_validate(data)


def test_topic_actions() -> None:
    assert topic_action(change("created")) is TopicAction.CREATE
    assert topic_action(change("updated", paths=[".spec.core"])) is TopicAction.NONE
    assert topic_action(change("deleted", paths=[".metadata"], deleting=True)) is TopicAction.NONE
    assert topic_action(change("deleted")) is TopicAction.DELETE
    assert topic_action(change("created", device="d1")) is TopicAction.NONE


def test_registry_events() -> None:
    device = registry_cloudevent(change("updated", device="d1", paths=[".spec.credentials"], revision=4),
                                 instance="kedge")
    assert device is not None
    assert (device.subject, device.id, device.partitionkey) == ("devices", "dev-uid:4", "my%2Dapp/d1")
    assert device.extensions["deviceuid"] == "dev-uid" and device.extensions["applicationuid"] == "app-uid"
    assert orjson.loads(device.data)["paths"] == [".spec.credentials"]
    app = registry_cloudevent(change("created"), instance="kedge")
    assert app is not None and app.subject == "applications"
    assert registry_cloudevent(change("deleted", device="d1", cascade=True), instance="kedge") is None
    assert registry_cloudevent(change("deleted"), instance="kedge") is None  # the app and its topic are gone
    soft = registry_cloudevent(change("deleted", paths=[".metadata"], deleting=True), instance="kedge")
    assert soft is not None and orjson.loads(soft.data)["operation"] == "deleted"


class Conditions:
    """Records what the follower asks the registry to set."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, bool]] = []

    async def set_kafka_ready(self, app: str, app_uid: str, ready: bool, message: str) -> None:
        self.calls.append((app, app_uid, ready))


@pytest.fixture
async def private_broker() -> AsyncIterator[str]:
    """A broker of its own: this test owns the `registry` topic and watches topics come and go."""
    broker = EmbeddedBroker(port=free_port())
    await broker.start()
    try:
        yield broker.bootstrap
    finally:
        broker.stop()


@pytest.mark.integration
async def test_follower_creates_topic_sets_ready_emits_and_deletes(private_broker: str) -> None:
    bootstrap = private_broker
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id="follower-test", enable_auto_commit=False,
                                auto_offset_reset="earliest")
    await admin.start()
    await producer.start()
    await apply(admin, [TopicSpec(REGISTRY, PARTITIONS, 1)])

    async def send(c: RegistryChange) -> None:
        value = c.model_dump_json(by_alias=True).encode()
        if c.device is None:  # like the outbox relay: app-level records go to every partition
            for p in range(PARTITIONS):
                await producer.send_and_wait(REGISTRY, value, key=app_key(c.app).encode(), partition=p)
        else:
            await producer.send_and_wait(REGISTRY, value, key=device_key(c.app, c.device).encode())

    conditions = Conditions()
    seen: list[RegistryChange] = []
    follower = RegistryFollower(FollowerConfig(bootstrap, "kedge", app_partitions=2), consumer=consumer,
                                producer=producer, admin=admin, conditions=conditions, on_processed=seen.append)
    await consumer.start()
    task = asyncio.create_task(follower.run())
    topic = app_topic("my-app")
    try:
        await send(change("created"))
        await send(change("created", device="d1"))
        await eventually(lambda: len(seen) == 2, 30, "the follower to handle the app and the device change")
        assert conditions.calls == [("my-app", "app-uid", True)], "ready set exactly once (one copy acted upon)"
        described = await admin.describe_topics([topic])
        assert len(described[0]["partitions"]) == 2

        reader = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
        await reader.start()
        try:
            records = [await asyncio.wait_for(reader.getone(), 10) for _ in range(2)]
        finally:
            await reader.stop()
        events = sorted((from_kafka(r.key, r.value, r.headers) for r in records), key=lambda e: e.subject or "")
        assert [(e.type, e.subject) for e in events] == [("io.drogue.registry.v1", "applications"),
                                                        ("io.drogue.registry.v1", "devices")]

        await send(change("deleted", revision=2))
        await eventually(lambda: len(seen) == 3, 30, "the follower to handle the app deletion")

        async def topic_gone() -> bool:
            return topic not in set(await admin.list_topics())

        await eventually(topic_gone, 10, f"{topic} to be deleted")
        await send(change("updated", device="d1", revision=3, paths=[".spec"]))
        await eventually(lambda: len(seen) == 4, 30, "the follower to handle a late device change")
        assert await topic_gone(), "a late device change must not recreate a deleted app's topic"
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await consumer.stop()
        await producer.stop()
        await admin.close()
