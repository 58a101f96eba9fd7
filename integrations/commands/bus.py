"""The Kafka side of the command API: one producer for ``iot-commands``, the outcome reader, both lazy.

Nothing connects at API host start (the registry API works without Kafka); the first command connects, a
failure answers 503 and the next command tries again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Sequence

from aiokafka import AIOKafkaProducer

from integrations.commands.model import Outcome, combine
from integrations.commands.outcomes import OutcomeReader
from kedge import kafka
from kedge.settings import KafkaSettings
from schemas.state import CommandOutcome, CommandRequest
from topology.names import COMMANDS

log = logging.getLogger(__name__)

__all__ = ["CommandBus", "KafkaUnavailable"]


class KafkaUnavailable(Exception):
    """Kafka could not take the command (HTTP 503)."""


class CommandBus:
    def __init__(self, kafka_settings: KafkaSettings, instance_id: str | None = None) -> None:
        self.kafka_settings = kafka_settings
        self.instance_id = instance_id or f"api-{uuid.uuid4()}"
        self.timeout_s = kafka_settings.publish_timeout_s
        self._producer: AIOKafkaProducer | None = None
        self._reader: OutcomeReader | None = None
        self._lock = asyncio.Lock()

    async def _ensure_producer(self) -> AIOKafkaProducer:
        async with self._lock:
            if self._producer is None:
                # a missing iot-commands is a 503, never auto-created with the broker's partition count
                producer = kafka.producer(self.kafka_settings, acks="all", auto_create_topics=False)
                try:
                    await asyncio.wait_for(producer.start(), self.timeout_s)
                except BaseException:
                    with contextlib.suppress(Exception):
                        await producer.stop()
                    raise
                self._producer = producer
            return self._producer

    async def _ensure_reader(self) -> OutcomeReader:
        async with self._lock:
            if self._reader is None or not self._reader.started:
                reader = OutcomeReader(self.kafka_settings, self.instance_id)
                await asyncio.wait_for(reader.start(), self.timeout_s)
                self._reader = reader
            return self._reader

    async def send(self, requests: Sequence[tuple[bytes, CommandRequest]], *, wait_s: float | None = None) -> Outcome:
        """Send every request (acked by Kafka); with ``wait_s``, wait that long for the delivery outcomes.

        Without ``wait_s`` the outcome is unknown (``delivered=None``). Raises :class:`KafkaUnavailable`.
        """
        futures: list[asyncio.Future[CommandOutcome]] = []
        reader: OutcomeReader | None = None
        try:
            if wait_s is not None:
                reader = await self._ensure_reader()
                futures = [reader.expect(r.request_id) for _, r in requests]
            producer = await self._ensure_producer()
            acks = [await producer.send(COMMANDS, r.to_bytes(), key=key) for key, r in requests]
            await asyncio.wait_for(asyncio.gather(*acks), self.timeout_s)
        except (Exception, TimeoutError) as e:
            if reader is not None:
                for _, r in requests:
                    reader.forget(r.request_id)
            await self._reset()
            raise KafkaUnavailable(f"cannot send the command to Kafka: {e or type(e).__name__}") from e
        if reader is None:
            return Outcome(None)
        try:
            return await self._wait(futures, wait_s or 0.0)
        finally:
            for _, r in requests:
                reader.forget(r.request_id)

    @staticmethod
    async def _wait(futures: list[asyncio.Future[CommandOutcome]], wait_s: float) -> Outcome:
        pending = set(futures)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_s
        while pending:
            done, pending = await asyncio.wait(pending, timeout=max(deadline - loop.time(), 0),
                                               return_when=asyncio.FIRST_COMPLETED)
            if not done:
                break
            if any(f.result().delivered for f in done):
                break
        return combine([f.result() if f.done() else None for f in futures])

    async def _reset(self) -> None:
        async with self._lock:
            producer, self._producer = self._producer, None
        if producer is not None:
            with contextlib.suppress(Exception):
                await producer.stop()

    async def stop(self) -> None:
        await self._reset()
        reader, self._reader = self._reader, None
        if reader is not None:
            await reader.stop()
