"""A WebSocket session against the real broker with a client socket that breaks mid-stream: only the events
that were examined (sent or filtered out) are committed."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from websockets.exceptions import ConnectionClosedError

from integrations.filters import NO_FILTER
from integrations.ws.session import Session, SessionSpec
from kedge.settings import IntegrationSettings, KafkaSettings
from tests.ingress.kafka_support import create_app_topic
from tests.integrations.conftest import device_event, produce
from tests.support.procs import eventually

pytestmark = [pytest.mark.integration]


class BreakingSocket:
    """Takes ``ok`` frames, then fails like a connection that went away; never sends a client message."""

    def __init__(self, ok: int) -> None:
        self.ok = ok
        self.sent: list[bytes] = []
        self.closes: list[tuple[int, str]] = []

    async def send(self, data: bytes, text: bool = False) -> None:
        assert text, "events are text frames"
        if len(self.sent) >= self.ok:
            raise ConnectionClosedError(None, None)
        self.sent.append(data)

    async def close(self, code: int, reason: str) -> None:
        self.closes.append((code, reason))

    def __aiter__(self) -> AsyncIterator[str]:
        return self._never()

    async def _never(self) -> AsyncIterator[str]:
        await asyncio.Event().wait()
        yield ""


class Anybody:
    anonymous = False
    exp = None


async def test_unsent_events_are_not_committed(bootstrap: str, unique: str) -> None:
    app = f"wss-{unique}"
    topic = await create_app_topic(bootstrap, app, partitions=1)
    group = f"g-{uuid.uuid4().hex[:8]}"
    ws = BreakingSocket(ok=3)
    spec = SessionSpec(app, Anybody(), group, False, NO_FILTER)
    settings = IntegrationSettings(consumer_session_timeout_s=2, consumer_rebalance_timeout_s=2)
    session = Session(ws, spec, None, settings, KafkaSettings(bootstrap_servers=bootstrap))  # type: ignore[arg-type]
    task = asyncio.create_task(session.run())
    tp = TopicPartition(topic, 0)
    await eventually(lambda: tp in session.done or task.done(), 20.0, "the session's partition assignment")
    start = session.done[tp]
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=0)
    await producer.start()
    try:
        await produce(producer, topic, *[device_event(app, device=f"d{i}") for i in range(10)])
    finally:
        await producer.stop()
    await asyncio.wait_for(task, 20.0)
    assert len(ws.sent) == 3 and ws.closes == []
    checker: Any = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await checker.start()
    try:
        assert await checker.committed(tp) == start + 3, "exactly the three sent events are committed"
    finally:
        await checker.stop()
