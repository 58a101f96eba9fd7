"""Faust schema for CloudEvents in Kafka binary mode: agents get :class:`schemas.events.DeviceEvent` values.

A Faust *codec* only sees the value bytes, but a binary-mode CloudEvent lives mostly in the headers, so this is
a :class:`faust.Schema` (which sees the whole message). Use it for every topic that carries CloudEvents::

    events = app.topic("events-my-app", schema=CLOUDEVENT_SCHEMA)

    @app.agent(events)
    async def handle(stream):
        async for event in stream:          # a DeviceEvent, headers decoded into its attributes
            ...

    await send_event(events, event)         # key = the event's partition key, headers ce_*

A record that is not a valid CloudEvent arrives as a :class:`schemas.events.MalformedEvent` *value* (not
raised): Faust would re-raise a decode error inside the agent's ``async for`` and crash it, while a producer we
do not control can always write a bad record. The agent logs and skips it; one bad record never stops an agent.
"""

from __future__ import annotations

from typing import Any

import faust
from faust.types import AppT, CodecArg, Message
from faust.types.tuples import RecordMetadata

from schemas.binding import from_kafka, to_kafka
from schemas.events import DeviceEvent, MalformedEvent

__all__ = ["CLOUDEVENT_SCHEMA", "CloudEventSchema", "send_event"]


class CloudEventSchema(faust.Schema):  # type: ignore[type-arg]
    """Binary-mode CloudEvents both ways (raw bytes keys, ``ce_*`` headers, data as the value)."""

    def __init__(self) -> None:
        super().__init__(key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")

    def loads_value(
        self, app: AppT, message: Message, *, loads: Any = None, serializer: CodecArg = None
    ) -> Any:
        headers: Any = message.headers or []
        try:
            return from_kafka(message.key, message.value, headers.items() if isinstance(headers, dict) else headers)
        except MalformedEvent as exc:
            return exc

    def dumps_value(
        self, app: AppT, value: Any, *, serializer: CodecArg = None, headers: Any
    ) -> tuple[Any, Any]:
        if not isinstance(value, DeviceEvent):
            raise TypeError(f"expected a DeviceEvent, got {type(value).__name__}")
        record = to_kafka(value)
        merged = list(record.headers)
        if headers:
            merged.extend(headers.items() if isinstance(headers, dict) else headers)
        return record.value, merged


CLOUDEVENT_SCHEMA = CloudEventSchema()


async def send_event(topic: faust.types.TopicT, event: DeviceEvent) -> RecordMetadata:
    """Send ``event`` keyed by its partition key and wait until Kafka acknowledged it."""
    pending = await topic.send(key=event.key, value=event, schema=CLOUDEVENT_SCHEMA)
    metadata: RecordMetadata = await pending
    return metadata
