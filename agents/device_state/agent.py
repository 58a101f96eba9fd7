"""The Faust shell of the device-state agent: records in, :class:`PartitionCore` decides, effects out.

Single writer per device. One agent consumes one merged stream of ``device-state``, ``registry`` and
``iot-commands`` (commands, and the HTTP endpoint's command polls) and is the only writer of the ``sessions``
and ``app-marks`` tables. Those topics and the tables' changelogs have the same partition count
(``topology.device_partitions``); Faust's assignor puts co-subscribed topics with equal partition counts into
one co-partitioned group, so partition *n* of every one of them is assigned to the same worker, and a table
write goes to the changelog partition of the record being processed. Hence all records of one device key are
processed by one worker, in order, by one coroutine (agent concurrency 1).

Effects are carried out in the order ``decide`` returned them. Connection events and Wills go to
``events-<app>`` (binary-mode CloudEvents, key = partitionkey); a connect's accepting :class:`Reply` is sent
only after Kafka acknowledged those events, so ``connected`` precedes every event of that connection in the
app topic (the reply waits in a background task; the stream moves on). Kicks and command deliveries go out
at once. If the events cannot be written, the connect is answered ``rejected(error)``; the endpoint then
sends the matching disconnect, which cleans the state up through this same single writer.

Bulk: a record with many effects and no reply (an endpoint's loss, an app-wide registry change; at least
``BULK_EFFECTS``) has them appended to one Kafka batch per topic-partition (:mod:`.bulk`) instead of a producer
call each, and an endpoint's loss is decided in slices of ``RELEASE_SLICE`` holders, each slice's records
handed to the producer before the next is decided, so Kafka writes and delivers the first thousands while the
rest is decided. Per partition the order of the records stays that of ``decide``.

At-least-once: Faust commits an offset only after flushing the producer, so every effect of a processed
record is delivered before its offset is committed; a crash replays records, which ``decide`` absorbs
(deterministic event ids, refused replays, re-sent replies).

``endpoint-control`` addressing: partition ``schemas.state.control_partition(instance)``, key = instance.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Iterator
from datetime import UTC, datetime
from typing import Any

import orjson

from agents.config import AgentConfig
from agents.device_state.bulk import BulkSend
from agents.device_state.model import (
    Effect,
    EmitConnection,
    EmitEvent,
    SendReply,
)
from agents.device_state.partition import PartitionCore
from schemas.binding import to_kafka
from schemas.events import PayloadRejected, build_device_event, connection_event
from schemas.registry import RegistryChange
from schemas.state import (
    EndpointLost,
    MalformedRecord,
    Reason,
    RegistryChangeView,
    Reply,
    StateRequest,
    control_partition,
    decode_state_request,
)
from topology import names
from topology.faust_app import ROCKSDB_OPTIONS, KedgeFaustApp

log = logging.getLogger(__name__)

SESSIONS_TABLE = "sessions"
#: from this many effects of one record on (and none a reply), they go out in batches (:mod:`.bulk`)
BULK_EFFECTS = 32
#: holders an endpoint's loss ends per slice (their effects are sent before the next slice is decided)
RELEASE_SLICE = 500
APP_MARKS_TABLE = "app-marks"


def decode(topic: str, value: bytes) -> StateRequest:
    """One record of the merged stream; :class:`MalformedRecord` when it cannot be understood."""
    if topic == names.REGISTRY:
        try:
            change = RegistryChange.model_validate_json(value)
        except ValueError as e:
            raise MalformedRecord(f"registry change: {e}") from None
        return RegistryChangeView.of(change)
    return decode_state_request(value)


class DeviceStateShell:
    """Holds the per-partition cores and carries out their effects on Kafka."""

    def __init__(self, app: KedgeFaustApp, config: AgentConfig, sessions: Any, apps: Any) -> None:
        self.app = app
        self.config = config
        self.sessions = sessions
        self.apps = apps
        self.cores: dict[int, PartitionCore] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._last_when: tuple[float, datetime] = (-1.0, datetime.fromtimestamp(0, UTC))

    # ------------------------------------------------------------------------------------------- records

    async def handle(self, topic: str, partition: int, value: bytes | None) -> None:
        try:
            request = decode(topic, value or b"")
        except MalformedRecord as e:
            log.warning("dropping malformed record on %s[%d]: %s", topic, partition, e)
            return
        core = self.cores.get(partition)
        if core is None:
            core = self.cores[partition] = PartitionCore(self.sessions, self.apps, self._existing(partition))
            log.info("device-state partition %d: %d held devices indexed", partition, core.holders())
        if isinstance(request, EndpointLost):
            await self._endpoint_lost(core, request.endpoint, partition)
            return
        try:
            effects = core.handle(request, time.time())
        except Exception:  # a corrupt table entry must not stop the partition: skip this record, loudly
            log.exception("device-state could not apply %r on partition %d", request, partition)
            return
        if effects:
            await self.carry_out(effects)

    async def _endpoint_lost(self, core: PartitionCore, endpoint: str, partition: int) -> None:
        """End ``endpoint``'s holders of this partition in slices, sending each slice's effects before deciding the
        next one: Kafka (on the other cores) writes and delivers the first thousands while the rest is decided."""
        started, now, ended, more = time.perf_counter(), time.time(), 0, True
        while more:
            try:
                effects, more = core.end_endpoint(endpoint, now, RELEASE_SLICE)
            except Exception:  # a corrupt table entry must not stop the partition: skip this record, loudly
                log.exception("device-state could not end the holders of %s on partition %d", endpoint, partition)
                return
            ended += len(effects)
            if effects:
                await self.carry_out(effects)
        log.info("endpoint %s lost: partition %d carried out %d effects in %.3fs", endpoint, partition, ended,
                 time.perf_counter() - started)

    def revoked(self, partitions: set[int]) -> None:
        for p in partitions:
            self.cores.pop(p, None)

    def _existing(self, partition: int) -> Iterator[tuple[str, bytes]]:
        """The ``sessions`` entries of one partition: one scan per (re)assignment, never per record."""
        store = self.sessions.data
        open_db = getattr(store, "_db_for_partition", None)
        if open_db is None:  # a non-partitioned store (memory): every entry
            items: Any = self.sessions.items()
        else:
            items = store._visible_items(open_db(partition))
        for key, value in items:
            yield (orjson.loads(key) if isinstance(key, bytes) else str(key)), bytes(value)

    # ------------------------------------------------------------------------------------------- effects

    async def carry_out(self, effects: list[Effect]) -> None:
        if len(effects) >= BULK_EFFECTS and not any(isinstance(e, SendReply) for e in effects):
            producer = self._kafka_producer()
            if producer is not None:
                await self._carry_out_bulk(effects, BulkSend(producer))
                return
        acks: list[Awaitable[Any]] = []
        for effect in effects:
            if isinstance(effect, EmitConnection | EmitEvent):
                record = self._event_record(effect)
                if record is not None:
                    topic = names.app_topic(effect.app)
                    acks.append(await self.app.producer.send(
                        topic, record.key, record.value, None, None, record.headers
                    ))
            elif isinstance(effect, SendReply):
                if acks:
                    self._spawn(self._reply_after(list(acks), effect))
                else:
                    await self._control(effect.endpoint, effect.record.to_bytes())
            else:
                target = effect.endpoint  # CommandFailed without a requester: nobody to tell
                if target is not None:
                    await self._control(target, effect.record.to_bytes())

    async def _carry_out_bulk(self, effects: list[Effect], bulk: BulkSend) -> None:
        """Effects without a reply (an endpoint's loss, an app-wide change), appended to batches in order."""
        partitions = self.config.endpoint_partitions
        for effect in effects:
            if isinstance(effect, EmitConnection | EmitEvent):
                record = self._event_record(effect)
                if record is not None:
                    await bulk.add(names.app_topic(effect.app), record.key, record.value, record.headers)
            elif isinstance(effect, SendReply):  # pragma: no cover - carry_out keeps replies off this path
                raise AssertionError("replies wait for their events' acks: not a bulk effect")
            elif effect.endpoint is not None:
                await bulk.add(names.ENDPOINT_CONTROL, effect.endpoint.encode(), effect.record.to_bytes(),
                               partition=control_partition(effect.endpoint, partitions))
        await bulk.submit()

    def _kafka_producer(self) -> Any:
        """The aiokafka producer under Faust's (``_ensure_producer``: Faust has no public accessor)."""
        ensure = getattr(self.app.producer, "_ensure_producer", None)
        return None if ensure is None else ensure()

    def _event_record(self, effect: EmitConnection | EmitEvent) -> Any:
        when = self._when(effect.time)
        if isinstance(effect, EmitConnection):
            event = connection_event(
                app=effect.app, app_uid=effect.app_uid or None, device=effect.device,
                device_uid=effect.device_uid or None, instance=self.config.instance, connected=effect.connected,
                connection_id=effect.connection_id, sequence=effect.sequence, id=effect.event_id,
                reason=None if effect.reason is None else str(effect.reason), time=when,
            )
            return to_kafka(event)
        try:
            event = build_device_event(
                app=effect.app, app_uid=effect.app_uid or None, device=effect.device,
                device_uid=effect.device_uid or None, sender=effect.device, sender_uid=effect.device_uid or None,
                instance=self.config.instance, channel=effect.channel, payload=effect.payload,
                content_type=effect.content_type, id=effect.event_id, time=when,
            )
        except PayloadRejected as e:
            log.warning("dropping the Will of %s/%s: %s", effect.app, effect.device, e)
            return None
        return to_kafka(event)

    def _when(self, t: float) -> datetime:
        """``t`` as an aware UTC datetime; the effects of one record share their time, so the last is kept."""
        if self._last_when[0] != t:
            self._last_when = (t, datetime.fromtimestamp(t, UTC))
        return self._last_when[1]

    async def _reply_after(self, acks: list[Awaitable[Any]], reply: SendReply) -> None:
        record: Reply = reply.record
        try:
            await asyncio.gather(*acks)
        except Exception as e:
            log.error("connection events of %s not written (%s): refusing the connect", record.connection_id, e)
            record = Reply(record.request_id, record.connection_id, False, Reason.ERROR)
        await self._control(reply.endpoint, record.to_bytes())

    async def _control(self, endpoint: str, value: bytes) -> None:
        partition = control_partition(endpoint, self.config.endpoint_partitions)
        await self.app.producer.send(names.ENDPOINT_CONTROL, endpoint.encode(), value, partition, None, None)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def register(app: KedgeFaustApp, config: AgentConfig) -> DeviceStateShell:
    """Register the tables and the device-state agent on ``app``."""
    table_options: dict[str, Any] = {
        # Faust derives the serializers from the types: keys JSON strings, values raw bytes
        "partitions": config.device_partitions, "key_type": str, "value_type": bytes, "options": ROCKSDB_OPTIONS,
    }
    sessions = app.Table(SESSIONS_TABLE, **table_options)
    apps = app.Table(APP_MARKS_TABLE, **table_options)
    source = app.topic(
        names.DEVICE_STATE, names.REGISTRY, names.COMMANDS,
        key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw",
    )
    shell = DeviceStateShell(app, config, sessions, apps)

    @app.agent(source, name="device-state")
    async def device_state(stream: Any) -> None:
        async for event in stream.events():
            message = event.message
            await shell.handle(message.topic, message.partition, event.value)

    async def _revoked(sender: Any, revoked: Any = None, **kwargs: Any) -> None:
        shell.revoked({tp.partition for tp in revoked or () if tp.topic == names.DEVICE_STATE})

    app.on_partitions_revoked.connect(_revoked)  # type: ignore[arg-type]
    del device_state
    return shell
