"""The pure parts of `kedge bench`: payload layout, client-side MQTT frames, loss/duplicate bookkeeping."""

from __future__ import annotations

import pytest

from kedge.bench.payload import MIN_SIZE, PayloadFormat, Sample
from kedge.bench.stats import DeliveryTracker, percentiles
from kedge.bench.wire import CONNACK, PUBACK, PublishTemplate, connect_bytes, split_frames
from protocols.mqtt import Connect, Decoder, Publish, encode


def test_payload_round_trip_has_fixed_size_and_is_json() -> None:
    import json

    fmt = PayloadFormat("abcd1234", 200)
    value = fmt.make(42, 7, 1_733_000_000_123_456_789)
    assert len(value) == 200
    assert json.loads(value)["d"] == "0000042"
    assert fmt.parse(value) == Sample(42, 7, 1_733_000_000_123_456_789)


@pytest.mark.parametrize("value", [None, b"", b'{"connected":true}', PayloadFormat("other123", 200).make(1, 1, 1),
                                   PayloadFormat("abcd1234", 201).make(1, 1, 1)])
def test_payload_of_other_traffic_is_not_a_sample(value: bytes | None) -> None:
    assert PayloadFormat("abcd1234", 200).parse(value) is None


def test_payload_rejects_bad_run_id_and_size() -> None:
    with pytest.raises(ValueError, match="run id"):
        PayloadFormat("short", 200)
    with pytest.raises(ValueError, match="at least"):
        PayloadFormat("abcd1234", MIN_SIZE - 1)


@pytest.mark.parametrize("version", [4, 5])
@pytest.mark.parametrize("qos", [0, 1])
def test_publish_template_equals_the_codec_and_decodes(version: int, qos: int) -> None:
    payload = PayloadFormat("abcd1234", 120).make(1, 2, 3)
    frame = PublishTemplate("telemetry", qos, version, 120).frame(payload, 513)
    assert frame == encode(Publish("telemetry", payload, qos, packet_id=513 if qos else None), version)
    packets = Decoder().feed(connect_bytes("c", "d@a", "pw", version) + frame)  # what the server reads
    assert isinstance(packets[0], Connect) and packets[0].username == "d@a"
    assert isinstance(packets[1], Publish)
    assert (packets[1].payload, packets[1].qos, packets[1].packet_id) == (payload, qos, 513 if qos else None)


def test_split_frames_keeps_a_partial_packet() -> None:
    buf = bytearray(b"\x20\x02\x00\x00\x40\x02\x00\x01\x40")
    frames = split_frames(buf)
    assert [f.kind for f in frames] == [CONNACK, PUBACK]
    assert frames[1].body == b"\x00\x01"
    assert buf == b"\x40"
    buf += b"\x02\x00\x02"
    assert [f.body for f in split_frames(buf)] == [b"\x00\x02"]
    assert buf == b""


def test_split_frames_rejects_a_malformed_length() -> None:
    with pytest.raises(ValueError):
        split_frames(bytearray(b"\x40\xff\xff\xff\xff\x01"))


def test_tracker_counts_loss_duplicates_and_unexpected() -> None:
    t = DeliveryTracker()
    for seq in (0, 1, 3, 3, 500):
        t.add(7, seq)
    assert (t.delivered, t.duplicates) == (4, 1)
    # device 7 sent 5 (0..4), 4 was refused by the server: 2 is lost; 500 was never sent
    assert t.missing({7: (5, [4]), 8: (2, [])}) == 1 + 2
    assert t.unexpected({7: (5, [4])}) == 1


def test_percentiles() -> None:
    assert percentiles([]) == {"p50": None, "p90": None, "p99": None, "max": None}
    p = percentiles([float(x) for x in range(1, 101)])
    assert (p["p50"], p["p99"], p["max"]) == (51.0, 100.0, 100.0)


def test_connect_bytes_is_the_codec_connect() -> None:
    assert connect_bytes("c1", "d@a", "pw", 5) == encode(Connect("c1", 5, username="d@a", password=b"pw"), 5)
