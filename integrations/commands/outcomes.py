"""Command outcomes addressed to this process on ``endpoint-control`` (the ``?wait=`` of the command API).

A process that wants outcomes has an *instance id*, sets it as ``reply_to`` of its
:class:`~schemas.state.CommandRequest`, and reads only partition ``control_partition(instance_id)`` of
``endpoint-control``, dropping records keyed by another instance (the addressing of :mod:`schemas.state`;
``ingress/state_client.py`` reads its records the same way). The reader starts at the end of the partition:
a caller registers with :meth:`OutcomeReader.expect` and only then sends its request, so no outcome is missed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from aiokafka import AIOKafkaConsumer, TopicPartition

from kedge import kafka
from kedge.settings import KafkaSettings
from schemas.state import CommandOutcome, MalformedRecord, control_partition, decode_control
from topology.names import ENDPOINT_CONTROL

log = logging.getLogger(__name__)

__all__ = ["OutcomeReader"]


class OutcomeReader:
    def __init__(self, kafka_settings: KafkaSettings, instance_id: str) -> None:
        self.kafka_settings = kafka_settings
        self.instance_id = instance_id
        self._pending: dict[str, asyncio.Future[CommandOutcome]] = {}
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def started(self) -> bool:
        return self._task is not None and not self._task.done()

    async def start(self) -> None:
        """Assign this instance's partition at its end; raises (KafkaError, LookupError) when impossible."""
        consumer = kafka.consumer(self.kafka_settings, group_id=None, enable_auto_commit=False,
                                  auto_offset_reset="latest", fetch_max_wait_ms=50,
                                  client_id=f"{self.kafka_settings.client_id}-{self.instance_id}")
        await consumer.start()
        try:
            partitions = consumer.partitions_for_topic(ENDPOINT_CONTROL)
            if not partitions:
                raise LookupError(f"topic {ENDPOINT_CONTROL!r} does not exist (run `kedge topology apply`)")
            tp = TopicPartition(ENDPOINT_CONTROL, control_partition(self.instance_id, len(partitions)))
            consumer.assign([tp])
            await consumer.seek_to_end(tp)
            await consumer.position(tp)  # resolve "latest" now: outcomes of later requests come after it
        except BaseException:
            await consumer.stop()
            raise
        self._consumer = consumer
        self._task = asyncio.create_task(self._read(consumer), name="command-outcomes")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            await consumer.stop()

    def expect(self, request_id: str) -> asyncio.Future[CommandOutcome]:
        """A future for the outcome of ``request_id``; call :meth:`forget` when done with it."""
        fut: asyncio.Future[CommandOutcome] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = fut
        return fut

    def forget(self, request_id: str) -> None:
        self._pending.pop(request_id, None)

    async def _read(self, consumer: AIOKafkaConsumer) -> None:
        own = self.instance_id.encode()
        while True:
            batches = await consumer.getmany(timeout_ms=500)
            for records in batches.values():
                for r in records:
                    if r.key != own or r.value is None:
                        continue
                    try:
                        record = decode_control(r.value)
                    except MalformedRecord as e:
                        log.warning("dropping malformed control record: %s", e)
                        continue
                    if isinstance(record, CommandOutcome):
                        fut = self._pending.get(record.request_id)
                        if fut is not None and not fut.done():
                            fut.set_result(record)
