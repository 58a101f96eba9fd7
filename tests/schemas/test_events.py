"""The device-event builder: reference §2.1-2.2 attributes and content-type rules, §3 event kinds."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone

import orjson
import pytest

from schemas.events import (
    PayloadRejected,
    build_device_event,
    connection_event,
    format_sequence,
    format_time,
    normalize_payload,
    parse_time,
    registry_event,
)
from schemas.types import CONNECTION_TYPE, EVENT_TYPE, REGISTRY_TYPE

T0 = datetime(2022, 7, 7, 13, 47, 39, 123456, tzinfo=UTC)


def telemetry(**overrides: object) -> object:
    args: dict[str, object] = dict(
        app="my-app", app_uid="a-uid", device="dev-1", device_uid="d-uid", sender="dev-1", sender_uid="d-uid",
        instance="drogue", channel="telemetry", payload=b'{"temp": 42}', content_type=None,
    )
    args.update(overrides)
    return build_device_event(**args)  # type: ignore[arg-type]


def test_telemetry_event_has_every_attribute_of_the_reference() -> None:
    e = telemetry(time=T0)
    assert uuid.UUID(e.id).version == 4
    assert e.type == EVENT_TYPE
    assert e.source == "drogue://my-app/dev%2D1"  # app not encoded, device NON_ALPHANUMERIC-encoded
    assert e.subject == "telemetry"
    assert e.time == T0
    assert e.datacontenttype == "application/json"
    assert e.data == b'{"temp":42}'
    assert e.extensions == {
        "application": "my-app", "applicationuid": "a-uid", "device": "dev-1", "deviceuid": "d-uid",
        "sender": "dev-1", "senderuid": "d-uid", "partitionkey": "my%2Dapp/dev%2D1", "instance": "drogue",
    }
    assert e.key == b"my%2Dapp/dev%2D1"


def test_gateway_event_is_keyed_by_the_sender() -> None:
    e = telemetry(device="sensor-7", device_uid="s-uid", sender="gw", sender_uid="g-uid")
    assert e.source == "drogue://my-app/sensor%2D7"
    assert e.extensions["device"] == "sensor-7" and e.extensions["sender"] == "gw"
    assert e.partitionkey == "my%2Dapp/gw"


def test_unknown_uids_are_left_out_and_dataschema_is_set() -> None:
    e = telemetry(app_uid=None, device_uid=None, sender_uid=None, data_schema="urn:x")
    assert "applicationuid" not in e.extensions and "deviceuid" not in e.extensions
    assert "senderuid" not in e.extensions
    assert e.dataschema == "urn:x"


@pytest.mark.parametrize(
    ("payload", "content_type", "expected_type", "expected_data"),
    [
        (b'{"b": 1,  "a": [1, 2]}', "application/json", "application/json", b'{"b":1,"a":[1,2]}'),
        (b'{"x": true}', "text/json; charset=utf-8", "application/json", b'{"x":true}'),
        (b'{"x": 1}', "application/vnd.foo+json", "application/json", b'{"x":1}'),
        (b"\x00\x01", "application/cbor", "application/cbor", b"\x00\x01"),
        (b"not json", "text/plain", "text/plain", b"not json"),
        (b" [1, 2] ", None, "application/json", b"[1,2]"),
        (b"hello", None, "application/octet-stream", b"hello"),
        (b"", None, "application/octet-stream", b""),
    ],
)
def test_content_type_rules(payload: bytes, content_type: str | None, expected_type: str,
                            expected_data: bytes) -> None:
    assert normalize_payload(payload, content_type) == (expected_type, expected_data)


@pytest.mark.parametrize("content_type", ["application/json", "text/json", "application/foo+json"])
def test_json_content_type_with_invalid_json_is_rejected(content_type: str) -> None:
    with pytest.raises(PayloadRejected, match="not valid JSON"):
        telemetry(payload=b"{nope", content_type=content_type)


def test_json_content_type_check_is_case_sensitive_like_drogue() -> None:
    assert normalize_payload(b"{nope", "Application/JSON") == ("Application/JSON", b"{nope")


def test_extra_extensions_cannot_override_builder_attributes() -> None:
    assert telemetry(extra_extensions={"foo": "bar"}).extensions["foo"] == "bar"
    for bad in ("partitionkey", "data", "id", "Upper", "with-dash", ""):
        with pytest.raises(ValueError, match="extension name"):
            telemetry(extra_extensions={bad: "x"})


def test_naive_time_is_refused() -> None:
    with pytest.raises(ValueError, match="naive"):
        telemetry(time=datetime(2022, 1, 1))


def test_connection_event() -> None:
    e = connection_event(app="my-app", app_uid="a", device="dev-1", device_uid="d", instance="kedge",
                         connected=False, connection_id="c1", sequence=7, id="c1:disconnected",
                         reason="taken_over", time=T0)
    assert (e.type, e.subject, e.id, e.datacontenttype) == (CONNECTION_TYPE, "connection", "c1:disconnected",
                                                            "application/json")
    assert orjson.loads(e.data) == {"connected": False, "reason": "taken_over"}
    assert e.extensions["sender"] == "dev-1" and e.extensions["senderuid"] == "d"
    assert e.extensions["connectionid"] == "c1"
    assert e.extensions["sequence"] == "00000000000000000007"


def test_registry_events_for_devices_and_applications() -> None:
    d = registry_event(app="my-app", app_uid="a", instance="i", operation="updated", paths=[".spec.credentials"],
                       generation=2, resource_version="rv", uid="d", device="dev-1", device_uid="d")
    assert (d.type, d.subject, d.source, d.partitionkey) == (REGISTRY_TYPE, "devices", "drogue://my-app/dev%2D1",
                                                             "my%2Dapp/dev%2D1")
    assert orjson.loads(d.data) == {"operation": "updated", "paths": [".spec.credentials"], "generation": 2,
                                    "resourceVersion": "rv", "uid": "d"}
    a = registry_event(app="my-app", app_uid="a", instance="i", operation="created", paths=["."],
                       generation=1, resource_version="rv", uid="a")
    assert (a.subject, a.source, a.partitionkey) == ("applications", "drogue://my-app", "my%2Dapp")
    assert "device" not in a.extensions


def test_sequence_string_order_is_numeric_order() -> None:
    values = [0, 9, 10, 99, 100, 10**19]
    assert sorted(format_sequence(v) for v in values) == [format_sequence(v) for v in values]
    with pytest.raises(ValueError):
        format_sequence(-1)


@pytest.mark.parametrize(
    ("t", "rfc3339", "z"),
    [
        (T0, "2022-07-07T13:47:39.123456+00:00", "2022-07-07T13:47:39.123456Z"),
        (T0.replace(microsecond=123000), "2022-07-07T13:47:39.123+00:00", "2022-07-07T13:47:39.123Z"),
        (T0.replace(microsecond=0), "2022-07-07T13:47:39+00:00", "2022-07-07T13:47:39Z"),
    ],
)
def test_time_rendering_like_chrono(t: datetime, rfc3339: str, z: str) -> None:
    assert format_time(t) == rfc3339
    assert format_time(t, z=True) == z
    assert parse_time(rfc3339) == t and parse_time(z) == t


def test_times_in_other_offsets_are_normalised_to_utc() -> None:
    local = T0.astimezone(timezone(timedelta(hours=2)))
    assert format_time(local) == "2022-07-07T13:47:39.123456+00:00"
    assert parse_time("2022-07-07T15:47:39.123456789+02:00") == T0


def test_the_template_builds_the_same_event_as_the_dataclass() -> None:
    """The per-message path builds events through the slot descriptors; they must equal the dataclass'."""
    import dataclasses

    from schemas.events import DeviceEvent, DeviceEventTemplate, Extensions

    template = DeviceEventTemplate(app="my-app", app_uid="a", device="dev-1", device_uid="d", sender="gw",
                                   sender_uid="g", instance="drogue")
    e = template.event("telemetry", b'{"a": 1}', "application/json", data_schema="urn:s", id="x1", time=T0)
    fields = {f.name: getattr(e, f.name) for f in dataclasses.fields(DeviceEvent)}
    assert DeviceEvent(**fields) == e
    assert (e.id, e.subject, e.dataschema, e.data, e.time) == ("x1", "telemetry", "urn:s", b'{"a":1}', T0)
    assert e.source == "drogue://my-app/dev%2D1" and e.partitionkey == "my%2Dapp/gw"
    assert template.event("telemetry", b"1", None).extensions is e.extensions  # shared, so it is immutable
    with pytest.raises(TypeError):
        e.extensions["device"] = "other"
    with pytest.raises(dataclasses.FrozenInstanceError):
        e.id = "changed"  # type: ignore[misc]
    assert dataclasses.replace(e, extensions={"x": "y"}).extensions == {"x": "y"}
    assert isinstance(e.extensions, Extensions)


def test_event_ids_are_distinct_uuid4s() -> None:
    from schemas.events import new_event_id

    ids = [new_event_id() for _ in range(1000)]  # several refills of the pool
    assert len(set(ids)) == len(ids)
    assert all(uuid.UUID(i).version == 4 and uuid.UUID(i).variant == uuid.RFC_4122 and str(uuid.UUID(i)) == i
               for i in ids)
