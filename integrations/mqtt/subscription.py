"""One subscription of an application: a Kafka consumer on ``events-<app>`` feeding an MQTT connection (reference §6).

Invariants:

* at most ``max_inflight`` QoS 1 messages of this subscription await their PUBACK (and never more than the
  client's Receive Maximum for the whole connection); the next record is examined only when a slot is free;
* offsets are committed only as far as every record before them is done (:mod:`integrations.mqtt.acks`):
  acknowledged, filtered out, malformed or sent at QoS 0. Commits are manual, after PUBACKs, when partitions
  are revoked and when the subscription ends, so an unacknowledged message is delivered again to the next
  member of the group;
* a partition the group has never committed starts at its end (``latest``, Drogue's default, with the true end
  from :func:`kedge.offsets.end_offsets`), and that start is committed at once (named groups), so events
  produced while the client is away are delivered on its return even from partitions it never read;
* :attr:`Subscription.ready` resolves after the first group join: SUBACK is sent then, so every event
  produced after the SUBACK reaches the application.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError

from integrations.filters import EventFilter
from integrations.mqtt import encoding
from integrations.mqtt.acks import AckTracker
from integrations.mqtt.topics import ContentMode
from kedge import kafka
from kedge.offsets import end_offsets
from kedge.settings import IntegrationSettings, KafkaSettings
from protocols.mqtt import PacketTooLargeForClient, PublishProperties, ReasonCode
from schemas.binding import from_kafka
from schemas.events import DeviceEvent, MalformedEvent
from topology.names import app_topic

log = logging.getLogger(__name__)

__all__ = ["Outlet", "Subscription", "SubscriptionSpec"]

FETCH_RECORDS = 100


class Outlet(Protocol):
    """The connection side of a subscription (:class:`integrations.mqtt.connection.IntegrationConnection`)."""

    @property
    def v5(self) -> bool: ...

    def window_free(self) -> bool:
        """The connection may send another QoS 1 PUBLISH (client Receive Maximum)."""
        ...

    async def writable(self) -> None:
        """Return once the transport takes more data; raise ``ConnectionError`` when it is closed."""
        ...

    def publish(self, topic: str, payload: bytes, qos: int, properties: PublishProperties) -> int | None:
        """Queue and flush a PUBLISH; its packet id at QoS 1. Raises ``SessionError`` when closed."""
        ...


@dataclass(frozen=True, slots=True)
class SubscriptionSpec:
    app: str
    filter: EventFilter
    publish_topic: str
    #: granted QoS: 0 or 1
    qos: int
    mode: ContentMode
    group_id: str
    #: an ``anonymous.<uuid>`` group: nothing is committed
    anonymous: bool
    subscription_id: int | None = None


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, sub: Subscription) -> None:
        self.sub = sub

    async def on_partitions_revoked(self, revoked: Any) -> None:
        await self.sub.revoked(set(revoked))

    async def on_partitions_assigned(self, assigned: Any) -> None:
        await self.sub.assigned(set(assigned))


class Subscription:
    """Runs in its own task (:meth:`run`) until cancelled or the connection breaks."""

    def __init__(self, outlet: Outlet, spec: SubscriptionSpec, integration: IntegrationSettings,
                 kafka_settings: KafkaSettings) -> None:
        self.outlet = outlet
        self.spec = spec
        self.max_inflight = integration.max_inflight
        self.settings = integration
        self.kafka_settings = kafka_settings
        self.topic = app_topic(spec.app)
        self.tracker: AckTracker[TopicPartition] = AckTracker()
        #: SUCCESS after the first group join, else why the subscription failed
        self.ready: asyncio.Future[ReasonCode] = asyncio.get_running_loop().create_future()
        self.consumer: AIOKafkaConsumer | None = None
        #: the SUBACK granted it (the connection sets this): from then on, its end ends the connection
        self.granted = False
        #: set on every PUBACK of the connection (a slot may be free) and when records are done
        self._wake = asyncio.Event()
        self._dirty = asyncio.Event()
        self._failure: Exception | None = None

    # ------------------------------------------------------------------------------------ connection side

    def owns(self, packet_id: int) -> bool:
        return self.tracker.owns(packet_id)

    def on_puback(self, packet_id: int) -> None:
        if self.tracker.acked(packet_id):
            self._dirty.set()

    def wake(self) -> None:
        self._wake.set()

    # ------------------------------------------------------------------------------------ kafka side

    async def run(self) -> None:
        spec = self.spec
        consumer = kafka.consumer(
            self.kafka_settings, group_id=spec.group_id, enable_auto_commit=False, auto_offset_reset="latest",
            client_id=f"{self.kafka_settings.client_id}-mqtt-integration",
            session_timeout_ms=int(self.settings.consumer_session_timeout_s * 1000),
            heartbeat_interval_ms=int(self.settings.consumer_heartbeat_interval_s * 1000),
            rebalance_timeout_ms=int(self.settings.consumer_rebalance_timeout_s * 1000),
            fetch_max_wait_ms=self.settings.mqtt_fetch_wait_ms,
        )
        self.consumer = consumer
        committer: asyncio.Task[None] | None = None
        try:
            try:
                await consumer.start()
                if self.topic not in await consumer.topics():
                    log.warning("subscription to %s refused: topic %s does not exist", spec.app, self.topic)
                    self._set_ready(ReasonCode.UNSPECIFIED_ERROR)
                    return
                consumer.subscribe([self.topic], listener=_Listener(self))
            except KafkaError as e:
                log.warning("subscription to %s failed: Kafka unavailable: %s", spec.app, e)
                self._set_ready(ReasonCode.UNSPECIFIED_ERROR)
                return
            committer = asyncio.create_task(self._commit_loop(), name="mqtt-integration-commit")
            await self._deliver_loop(consumer)
        finally:
            self._set_ready(ReasonCode.UNSPECIFIED_ERROR)
            if committer is not None:
                committer.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await committer
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.commit(), 5.0)
            with contextlib.suppress(Exception):
                await consumer.stop()

    def ended(self) -> None:
        """Its task is done (maybe cancelled before it ever ran): whoever waits for :attr:`ready` stops."""
        self._set_ready(ReasonCode.UNSPECIFIED_ERROR)

    def _set_ready(self, reason: ReasonCode) -> None:
        if not self.ready.done():
            self.ready.set_result(reason)

    async def _deliver_loop(self, consumer: AIOKafkaConsumer) -> None:
        flt = self.spec.filter
        tracker = self.tracker
        while True:
            batches = await consumer.getmany(timeout_ms=1000, max_records=FETCH_RECORDS)
            if self._failure is not None:
                raise self._failure
            for tp, records in batches.items():
                generation = tracker.generation(tp)
                for r in records:
                    if generation is None or tracker.generation(tp) != generation:
                        break  # revoked (and maybe assigned again) meanwhile: the consumer reads it again
                    if not tracker.expects(tp, r.offset):
                        continue  # fetched from before the start position
                    try:
                        event = from_kafka(r.key, r.value, r.headers)
                    except MalformedEvent as e:
                        log.warning("skipping malformed record %s@%d: %s", tp, r.offset, e)
                        tracker.done(tp, r.offset)
                    else:
                        if flt.matches(event):
                            await self._deliver(tp, generation, r.offset, event)
                        else:
                            tracker.done(tp, r.offset)
                    self._dirty.set()

    async def _deliver(self, tp: TopicPartition, generation: int, offset: int, event: DeviceEvent) -> None:
        spec, outlet, tracker = self.spec, self.outlet, self.tracker
        if spec.qos == 1:
            while tracker.inflight >= self.max_inflight or not outlet.window_free():
                self._wake.clear()
                await self._wake.wait()
                if tracker.generation(tp) != generation:
                    return  # revoked while waiting: whoever owns it now reads it again
        await outlet.writable()
        if tracker.generation(tp) != generation:
            return
        if spec.mode is ContentMode.BINARY and outlet.v5:
            payload, props = encoding.binary(event, subscription_id=spec.subscription_id)
        else:
            payload, props = encoding.structured(event, v5=outlet.v5, subscription_id=spec.subscription_id)
        try:
            packet_id = outlet.publish(spec.publish_topic, payload, spec.qos, props)
        except PacketTooLargeForClient as e:
            # MQTT 5 (3.1.2.11.4): discard it and act as if it had been delivered
            log.warning("event %s not sent to the client: %s", event.id, e)
            tracker.done(tp, offset)
            return
        if packet_id is None:
            tracker.done(tp, offset)
        else:
            tracker.sent(tp, offset, packet_id)

    async def _commit_loop(self) -> None:
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            await self.commit()

    async def commit(self, partitions: Iterable[TopicPartition] | None = None) -> None:
        """Commit what is done (of ``partitions``, default all) and not committed yet."""
        consumer = self.consumer
        if consumer is None or self.spec.anonymous:
            return
        todo = self.tracker.committable(partitions)
        if not todo:
            return
        try:
            await consumer.commit(todo)
        except (KafkaError, AssertionError, RuntimeError) as e:  # e.g. a rebalance in between
            log.info("subscription %s: offsets %s not committed: %s", self.spec.group_id, todo, e)
            return
        self.tracker.committed(todo)

    async def revoked(self, partitions: set[TopicPartition]) -> None:
        await self.commit(partitions)
        self.tracker.drop(partitions)
        self._wake.set()  # a delivery waiting for a slot of a revoked partition gives up

    async def assigned(self, partitions: set[TopicPartition]) -> None:
        """Fix each partition's start (see the module docstring), then the subscription is ready. A failure
        ends the subscription (its partitions would be neither read nor committed)."""
        try:
            await self._start_partitions(partitions)
        except Exception as e:
            log.warning("subscription %s (group %s): cannot start partitions %s: %s", self.spec.publish_topic,
                        self.spec.group_id, sorted(partitions), e)
            self._failure = e
            self._set_ready(ReasonCode.UNSPECIFIED_ERROR)
            return
        log.debug("subscription %s (group %s) assigned %s", self.spec.publish_topic, self.spec.group_id,
                  sorted(partitions))
        self._set_ready(ReasonCode.SUCCESS)

    async def _start_partitions(self, partitions: set[TopicPartition]) -> None:
        consumer = self.consumer
        assert consumer is not None
        fresh: list[TopicPartition] = []
        for tp in partitions:
            committed = None if self.spec.anonymous else await consumer.committed(tp)
            if committed is None:
                fresh.append(tp)
            else:
                consumer.seek(tp, committed)
                self.tracker.start(tp, committed, committed=True)
        if fresh:
            ends = await end_offsets(consumer, fresh)
            for tp in fresh:
                start = max(ends.get(tp, 0), 0)
                consumer.seek(tp, start)
                self.tracker.start(tp, start, committed=False)
            await self.commit(fresh)
