"""Structured JSON mode for the integrations (reference §2.3)."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

import orjson
import pytest
from cloudevents.core.formats.json import JSONFormat

from schemas.events import MalformedEvent, build_device_event
from schemas.structured import from_structured, to_structured

T0 = datetime(2022, 7, 7, 13, 47, 39, 123456, tzinfo=UTC)


def event(payload: bytes, ct: str | None):  # type: ignore[no-untyped-def]
    return build_device_event(app="a", app_uid="au", device="d", device_uid="du", sender="d", sender_uid="du",
                              instance="i", channel="c", payload=payload, content_type=ct, time=T0, id="1")


def test_json_data_is_embedded_and_time_has_z() -> None:
    doc = orjson.loads(to_structured(event(b'{"temp": 42}', None)))
    assert doc == {
        "specversion": "1.0", "id": "1", "type": "io.drogue.event.v1", "source": "drogue://a/d", "subject": "c",
        "time": "2022-07-07T13:47:39.123456Z", "datacontenttype": "application/json", "application": "a",
        "applicationuid": "au", "device": "d", "deviceuid": "du", "sender": "d", "senderuid": "du",
        "partitionkey": "a/d", "instance": "i", "data": {"temp": 42},
    }


def test_text_is_a_string_and_binary_is_base64() -> None:
    assert orjson.loads(to_structured(event(b"hello", "text/plain")))["data"] == "hello"
    doc = orjson.loads(to_structured(event(b"\x00\xff", "application/cbor")))
    assert "data" not in doc and base64.b64decode(doc["data_base64"]) == b"\x00\xff"
    assert "data" not in orjson.loads(to_structured(event(b"", None)))


@pytest.mark.parametrize(("payload", "ct"), [(b'{"x":[1,2]}', None), (b"hello", "text/plain"),
                                             (b"\x00\xff", "application/cbor"), (b"", None)])
def test_round_trip(payload: bytes, ct: str | None) -> None:
    e = event(payload, ct)
    assert from_structured(to_structured(e)) == e


def test_sdk_reads_our_structured_json() -> None:
    ce = JSONFormat().read(None, to_structured(event(b'{"temp": 42}', None)))
    assert ce.get_data() == {"temp": 42}
    assert ce.get_attributes()["time"] == T0


@pytest.mark.parametrize("doc", [b"[]", b"{", b'{"specversion":"1.0"}', b'{"specversion":"0.3","id":"1"}',
                                 b'{"specversion":"1.0","id":"1","type":"t","source":"s","time":"x"}',
                                 b'{"specversion":"1.0","id":"1","type":"t","source":"s","time":"2022-01-01T00:00:00Z",'
                                 b'"data_base64":"!!"}'])
def test_malformed_documents(doc: bytes) -> None:
    with pytest.raises(MalformedEvent):
        from_structured(doc)
