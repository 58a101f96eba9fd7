"""The registry follower: topic operator and registry-events agent in one ordered loop over ``registry``.

For each internal change record (``schemas.registry.RegistryChange``), in topic order:

1. **topic operator** (reference §1.1): an application that appears gets its ``events-<app>`` topic (declared
   partitions) and then its ``KafkaReady`` condition set to ``True`` through the injected
   :class:`ConditionWriter`; an application that is gone (hard delete) has its topic deleted.
2. **registry events** (reference §3.2, §17 row 14.10): an ``io.drogue.registry.v1`` event goes into the app's
   topic — subject ``devices`` for device changes, ``applications`` for application changes — but only into
   topics that exist: never into an application that is gone, and never for devices removed together with
   their application (``cascade``), as in Drogue.

One loop does both so that an application's topic always exists before its first registry event. Both steps
are stateless, so this is a plain consumer-group loop rather than a Faust agent: records are committed only
after their effects were acknowledged (at-least-once; event ids are ``<uid>:<revision>``, so replays carry the
same id). Application-level records are written to every partition of ``registry`` (one copy per device-state
partition); only the copy on partition 0 is acted upon here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Protocol

import pydantic
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from schemas.binding import to_kafka
from schemas.events import DeviceEvent, registry_event
from schemas.registry import RegistryChange
from topology.apply import TopologyMismatch, apply, delete
from topology.declare import app_topic_spec
from topology.names import REGISTRY, app_topic

log = logging.getLogger(__name__)

GROUP = "kedge-registry-follower"


class TopicAction(Enum):
    NONE = "none"
    CREATE = "create"
    DELETE = "delete"


def topic_action(change: RegistryChange) -> TopicAction:
    """What the topic operator does for ``change`` (pure)."""
    if change.device is not None:
        return TopicAction.NONE
    if change.operation == "deleted" and not change.deleting:
        return TopicAction.DELETE
    if change.operation == "created":
        return TopicAction.CREATE
    return TopicAction.NONE


def registry_cloudevent(change: RegistryChange, *, instance: str) -> DeviceEvent | None:
    """The application-visible event for ``change``, or None when Drogue announces nothing (pure).

    Nothing for devices deleted with their application (``cascade``) and nothing for an application that is
    gone (its topic goes with it). The id ``<uid>:<revision>`` is the same on every replay of the record.
    """
    if change.cascade:
        return None
    if change.device is None and change.operation == "deleted" and not change.deleting:
        return None
    return registry_event(
        app=change.app, app_uid=change.app_uid, instance=instance, operation=change.operation, paths=change.paths,
        generation=change.generation, resource_version=change.resource_version, uid=change.uid,
        device=change.device, device_uid=change.uid if change.device is not None else None,
        id=f"{change.uid}:{change.revision}",
    )


class ConditionWriter(Protocol):
    """Sets an application's ``status.conditions[type=KafkaReady]`` (the registry, wired in by ``kedge``)."""

    async def set_kafka_ready(self, app: str, app_uid: str, ready: bool, message: str) -> None:
        """Record the condition; a missing app or a different ``app_uid`` (re-created app) is not an error."""
        ...


@dataclass(frozen=True, slots=True)
class FollowerConfig:
    bootstrap_servers: str
    instance: str
    app_partitions: int
    replication: int = 1
    group_id: str = GROUP
    retry_s: float = 1.0


class RegistryFollower:
    """The loop. ``run()`` until cancelled; effects go through the given producer and admin client."""

    def __init__(self, config: FollowerConfig, *, consumer: AIOKafkaConsumer, producer: AIOKafkaProducer,
                 admin: AIOKafkaAdminClient, conditions: ConditionWriter,
                 on_processed: Callable[[RegistryChange], None] | None = None) -> None:
        self.config = config
        self.consumer = consumer
        self.producer = producer
        self.admin = admin
        self.conditions = conditions
        self.on_processed = on_processed
        self._known_topics: set[str] = set()
        self._deleted_apps: set[str] = set()  # uids of apps seen gone: never recreate their topics

    async def run(self) -> None:
        self.consumer.subscribe([REGISTRY])
        while True:
            batch = await self.consumer.getmany(timeout_ms=1000, max_records=500)
            for records in batch.values():
                for record in records:
                    await self._handle_with_retry(record)
            if batch:
                await self.consumer.commit()

    async def _handle_with_retry(self, record: ConsumerRecord[bytes, bytes]) -> None:
        while True:
            try:
                await self.handle(record)
                return
            except (KafkaError, OSError) as exc:
                log.warning("registry follower: retrying record %s@%s: %s", record.partition, record.offset, exc)
                await asyncio.sleep(self.config.retry_s)

    async def handle(self, record: ConsumerRecord[bytes, bytes]) -> None:
        """Carry out one record's effects (idempotent)."""
        try:
            change = RegistryChange.model_validate_json(record.value or b"")
        except pydantic.ValidationError as exc:
            log.error("registry follower: skipping malformed record %s@%s: %s", record.partition, record.offset,
                      exc.errors()[0]["msg"])
            return
        if change.device is None and record.partition != 0:
            return  # the copy on partition 0 is the one acted upon
        topic = app_topic(change.app)
        action = topic_action(change)
        if action is TopicAction.CREATE:
            await self._ensure_topic(change.app)
            self._deleted_apps.discard(change.app_uid)
            await self.conditions.set_kafka_ready(change.app, change.app_uid, True, f"topic {topic} exists")
        elif action is TopicAction.DELETE:
            self._deleted_apps.add(change.app_uid)
            self._known_topics.discard(topic)
            await delete(self.admin, [topic])
        event = registry_cloudevent(change, instance=self.config.instance)
        if event is not None and await self._topic_exists(topic, change):
            r = to_kafka(event)
            await self.producer.send_and_wait(topic, r.value, key=r.key, headers=r.headers)
        if self.on_processed is not None:
            self.on_processed(change)

    async def _topic_exists(self, topic: str, change: RegistryChange) -> bool:
        """Never produce into a missing topic: the broker would auto-create it with the wrong layout."""
        if topic in self._known_topics:
            return True
        if topic in set(await self.admin.list_topics()):
            self._known_topics.add(topic)
            return True
        if change.device is not None and change.app_uid not in self._deleted_apps:
            # a device change of an app whose creation (partition 0) was not handled yet: the app existed
            # when the change was committed, so its topic is due anyway
            await self._ensure_topic(change.app)
            return True
        return False

    async def _ensure_topic(self, app: str) -> None:
        spec = app_topic_spec(app, partitions=self.config.app_partitions, replication=self.config.replication)
        try:
            await apply(self.admin, [spec])
        except TopologyMismatch as exc:  # usable, only not as declared (e.g. auto-created): say so, go on
            log.warning("registry follower: %s", exc)
        self._known_topics.add(spec.name)


async def run_follower(config: FollowerConfig, conditions: ConditionWriter, *, client_options: dict[str, object],
                       stop: asyncio.Event) -> None:
    """Build the clients from ``client_options`` (see ``kedge.kafka.common_options``) and run until ``stop``."""
    consumer = AIOKafkaConsumer(group_id=config.group_id, enable_auto_commit=False, auto_offset_reset="earliest",
                                **client_options)
    producer = AIOKafkaProducer(acks="all", **client_options)
    admin = AIOKafkaAdminClient(**client_options)
    while not stop.is_set():
        try:
            await admin.start()
            await producer.start()
            await consumer.start()
            break
        except (KafkaError, OSError) as exc:
            log.warning("registry follower: Kafka not reachable yet: %s", exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), config.retry_s)
    follower = RegistryFollower(config, consumer=consumer, producer=producer, admin=admin, conditions=conditions)
    task = asyncio.create_task(follower.run())
    try:
        await stop.wait()
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
        for closing in (consumer.stop(), producer.stop(), admin.close()):
            with contextlib.suppress(Exception):
                await closing
