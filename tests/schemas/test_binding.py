"""Kafka binary content mode (reference §1.2): our fast path agrees with the cloudevents SDK both ways."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from cloudevents.core.bindings import kafka as sdk_kafka
from cloudevents.core.formats.json import JSONFormat
from cloudevents.v1 import kafka as legacy_kafka
from cloudevents.v1.http import CloudEvent as LegacyCloudEvent

from schemas.binding import from_kafka, to_kafka
from schemas.events import DeviceEvent, MalformedEvent, build_device_event

T0 = datetime(2022, 7, 7, 13, 47, 39, 123456, tzinfo=UTC)


def event(payload: bytes = b'{"temp": 42}', content_type: str | None = None, **kw: object) -> DeviceEvent:
    return build_device_event(
        app="my-app", app_uid="a-uid", device="dev-1", device_uid="d-uid", sender="dev-1", sender_uid="d-uid",
        instance="drogue", channel="telemetry", payload=payload, content_type=content_type, time=T0,
        id="5f1e0d1c-0000-4000-8000-000000000001", **kw,  # type: ignore[arg-type]
    )


def test_headers_are_exactly_the_reference_shape() -> None:
    record = to_kafka(event(data_schema="urn:temp"))
    assert record.key == b"my%2Dapp/dev%2D1"
    assert record.value == b'{"temp":42}'
    assert dict(record.headers) == {
        "ce_specversion": b"1.0", "ce_id": b"5f1e0d1c-0000-4000-8000-000000000001",
        "ce_type": b"io.drogue.event.v1", "ce_source": b"drogue://my-app/dev%2D1", "ce_subject": b"telemetry",
        "ce_time": b"2022-07-07T13:47:39.123456+00:00", "content-type": b"application/json",
        "ce_dataschema": b"urn:temp", "ce_application": b"my-app", "ce_applicationuid": b"a-uid",
        "ce_device": b"dev-1", "ce_deviceuid": b"d-uid", "ce_sender": b"dev-1", "ce_senderuid": b"d-uid",
        "ce_partitionkey": b"my%2Dapp/dev%2D1", "ce_instance": b"drogue",
    }
    assert len(record.headers) == len(dict(record.headers)), "no header twice"


@pytest.mark.parametrize(("payload", "ct"), [(b'{"a": [1, {"b": null}]}', None), (b"\x00\xff", "application/cbor"),
                                             (b"hi", "text/plain"), (b"", None)])
def test_round_trip(payload: bytes, ct: str | None) -> None:
    e = event(payload, ct)
    r = to_kafka(e)
    assert from_kafka(r.key, r.value, r.headers) == e


def test_sdk_parses_what_we_write() -> None:
    r = to_kafka(event())
    ce = sdk_kafka.from_binary(sdk_kafka.KafkaMessage(dict(r.headers), r.key, r.value), JSONFormat())
    attrs = ce.get_attributes()
    assert attrs["id"] == "5f1e0d1c-0000-4000-8000-000000000001"
    assert attrs["source"] == "drogue://my-app/dev%2D1" and attrs["type"] == "io.drogue.event.v1"
    assert attrs["time"] == T0 and attrs["datacontenttype"] == "application/json"
    assert attrs["partitionkey"] == "my%2Dapp/dev%2D1" and attrs["sender"] == "dev-1"
    assert ce.get_data() == {"temp": 42}


def test_we_parse_what_the_legacy_sdk_writes() -> None:
    attributes = {
        "specversion": "1.0", "id": "x1", "type": "io.drogue.event.v1", "source": "drogue://my-app/dev%2D1",
        "subject": "telemetry", "time": "2022-07-07T13:47:39.123456+00:00", "datacontenttype": "application/json",
        "application": "my-app", "device": "dev-1", "sender": "dev-1", "partitionkey": "my%2Dapp/dev%2D1",
        "instance": "drogue",
    }
    message = legacy_kafka.to_binary(LegacyCloudEvent(attributes, {"temp": 42}))
    e = from_kafka(message.key, message.value, message.headers.items())
    assert (e.id, e.subject, e.time, e.datacontenttype) == ("x1", "telemetry", T0, "application/json")
    assert e.partitionkey == "my%2Dapp/dev%2D1" and e.extensions["instance"] == "drogue"
    assert e.data == b'{"temp": 42}'


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ([("ce_id", b"1")], "specversion"),
        ([("ce_specversion", b"0.3"), ("ce_id", b"1")], "unsupported specversion"),
        ([("ce_specversion", b"1.0"), ("ce_type", b"t"), ("ce_source", b"s"), ("ce_time", b"2022-01-01T00:00:00Z")],
         "'id'"),
        ([("ce_specversion", b"1.0"), ("ce_id", b"1"), ("ce_type", b"t"), ("ce_source", b"s"),
          ("ce_time", b"yesterday")], "invalid time"),
        ([("ce_specversion", b"1.0"), ("ce_id", b"\xff")], "not UTF-8"),
    ],
)
def test_malformed_records_raise_one_error(headers: list[tuple[str, bytes]], message: str) -> None:
    with pytest.raises(MalformedEvent, match=message):
        from_kafka(b"k", b"", headers)


def test_header_names_are_case_insensitive_and_foreign_headers_ignored() -> None:
    r = to_kafka(event())
    shouted = [(k.upper(), v) for k, v in r.headers] + [("traceparent", b"00-abc")]
    e = from_kafka(r.key, r.value, shouted)
    assert e == event()


def test_shared_extensions_encode_like_a_plain_dict_every_time() -> None:
    """Events of one template share their encoded extension headers; the record must not change by it."""
    import dataclasses

    from schemas.events import DeviceEventTemplate

    template = DeviceEventTemplate(app="my-app", app_uid="a-uid", device="dev-1", device_uid="d-uid",
                                   sender="dev-1", sender_uid="d-uid", instance="drogue")
    first = template.event("telemetry", b"1", None, time=T0, id="i1")
    second = template.event("telemetry", b"2", "text/plain", time=T0.replace(microsecond=0), id="i2")
    for e in (first, second, first):
        plain = dataclasses.replace(e, extensions=dict(e.extensions))
        assert to_kafka(e) == to_kafka(plain)
    assert to_kafka(second).headers[5] == ("ce_time", b"2022-07-07T13:47:39+00:00")
    to_kafka(first).headers.append(("x-foreign", b"1"))  # a caller's change to one record stays in it
    assert "x-foreign" not in dict(to_kafka(second).headers)
