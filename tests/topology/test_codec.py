"""The Faust CloudEvent schema decodes a real Faust message (headers included) and encodes binary mode."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from faust.types import Message

from schemas.binding import to_kafka
from schemas.events import MalformedEvent, build_device_event
from topology.codec import CLOUDEVENT_SCHEMA
from topology.faust_app import FaustConfig, make_app

EVENT = build_device_event(app="my-app", app_uid="a", device="dev-1", device_uid="d", sender="dev-1",
                           sender_uid="d", instance="drogue", channel="telemetry", payload=b'{"t": 1}',
                           content_type=None, time=datetime(2022, 7, 7, tzinfo=UTC))


def message(key: bytes, value: bytes, headers: list[tuple[str, bytes]]) -> Message:
    return Message(topic="events-my-app", partition=0, offset=0, timestamp=0.0, timestamp_type=0,
                   headers=headers, key=key, value=value, checksum=None)


def test_decodes_headers_into_a_device_event(tmp_path: Path) -> None:
    app = make_app(FaustConfig(app_id="codec", bootstrap_servers="127.0.0.1:1", data_dir=tmp_path, partitions=1))
    record = to_kafka(EVENT)
    assert CLOUDEVENT_SCHEMA.loads_value(app, message(record.key, record.value, record.headers)) == EVENT
    assert CLOUDEVENT_SCHEMA.loads_key(app, message(record.key, record.value, record.headers)) == record.key


def test_encodes_binary_mode_and_keeps_extra_headers(tmp_path: Path) -> None:
    app = make_app(FaustConfig(app_id="codec", bootstrap_servers="127.0.0.1:1", data_dir=tmp_path, partitions=1))
    value, headers = CLOUDEVENT_SCHEMA.dumps_value(app, EVENT, headers=[("traceparent", b"00-1")])
    assert value == b'{"t":1}'
    assert headers == [*to_kafka(EVENT).headers, ("traceparent", b"00-1")]
    with pytest.raises(TypeError, match="DeviceEvent"):
        CLOUDEVENT_SCHEMA.dumps_value(app, {"not": "an event"}, headers=None)


def test_a_record_without_cloudevent_headers_arrives_as_malformed_value(tmp_path: Path) -> None:
    app = make_app(FaustConfig(app_id="codec", bootstrap_servers="127.0.0.1:1", data_dir=tmp_path, partitions=1))
    value = CLOUDEVENT_SCHEMA.loads_value(app, message(b"k", b"{}", [("ce_specversion", b"1.0")]))
    assert isinstance(value, MalformedEvent) and "'id'" in str(value)
