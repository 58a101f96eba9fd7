"""The pure parts of the MQTT integration: topic language, the ack tracker, the message encodings."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

import orjson
import pytest

from integrations.filters import NO_FILTER
from integrations.mqtt import encoding
from integrations.mqtt.acks import AckTracker
from integrations.mqtt.commands import CommandOutcome, PubackQueue
from integrations.mqtt.topics import (
    ContentMode,
    ContentModeInvalid,
    TopicRefused,
    consumer_group,
    content_mode,
    parse_command_topic,
    parse_subscription,
)
from protocols.mqtt import ReasonCode
from schemas.events import build_device_event
from schemas.structured import STRUCTURED_CONTENT_TYPE, from_structured


@pytest.mark.parametrize(("topic_filter", "group", "app", "publish_topic"), [
    ("app/my-app", None, "my-app", "app/my-app"),
    ("a/my-app", None, "my-app", "a/my-app"),
    ("application/my-app", None, "my-app", "application/my-app"),
    ("$share/g1/app/my-app", "g1", "my-app", "app/my-app"),
    ("$shared/g1/a/my-app", "g1", "my-app", "a/my-app"),
])
def test_subscriptions_drogue_forms(topic_filter: str, group: str | None, app: str, publish_topic: str) -> None:
    sub = parse_subscription(topic_filter)
    assert (sub.group, sub.app, sub.publish_topic, sub.filter) == (group, app, publish_topic, NO_FILTER)
    assert sub.topic_filter == topic_filter


def test_subscription_filters_from_levels_and_user_properties() -> None:
    sub = parse_subscription("$share/g/app/x/type/io.drogue.connection.v1/device/d1",
                             [("channel", "telemetry"), ("content-mode", "binary")])
    assert sub.publish_topic == "app/x/type/io.drogue.connection.v1/device/d1"
    assert sub.filter.types == {"io.drogue.connection.v1"}
    assert sub.filter.devices == {"d1"}
    assert sub.filter.channels == {"telemetry"}


@pytest.mark.parametrize(("topic_filter", "reason"), [
    ("app/+", ReasonCode.WILDCARD_SUBSCRIPTIONS_NOT_SUPPORTED),
    ("#", ReasonCode.WILDCARD_SUBSCRIPTIONS_NOT_SUPPORTED),
    ("$share/g/app/x/#", ReasonCode.WILDCARD_SUBSCRIPTIONS_NOT_SUPPORTED),
    ("foo/bar", ReasonCode.TOPIC_FILTER_INVALID),
    ("app", ReasonCode.TOPIC_FILTER_INVALID),
    ("app/", ReasonCode.TOPIC_FILTER_INVALID),
    ("$share//app/x", ReasonCode.TOPIC_FILTER_INVALID),
    ("$shared/g", ReasonCode.TOPIC_FILTER_INVALID),
    ("app/x/colour/red", ReasonCode.TOPIC_FILTER_INVALID),
    ("app/x/type", ReasonCode.TOPIC_FILTER_INVALID),
    ("app/x/type/a,,b", ReasonCode.TOPIC_FILTER_INVALID),
])
def test_subscription_refusals(topic_filter: str, reason: ReasonCode) -> None:
    with pytest.raises(TopicRefused) as info:
        parse_subscription(topic_filter)
    assert info.value.reason is reason


def test_content_mode() -> None:
    assert content_mode([]) is ContentMode.STRUCTURED
    assert content_mode([("content-mode", "binary")]) is ContentMode.BINARY
    assert content_mode([("content-mode", "binary"), ("content-mode", "structured")]) is ContentMode.STRUCTURED
    with pytest.raises(ContentModeInvalid, match="'json'"):
        content_mode([("content-mode", "json")])


def test_command_topics() -> None:
    cmd = parse_command_topic("Command/app1/dev 1/reboot")
    assert (cmd.app, cmd.device, cmd.command) == ("app1", "dev 1", "reboot")
    for bad in ("command/app1/dev1", "command/app1/dev1/a/b", "telemetry", "cmd/a/b/c"):
        with pytest.raises(TopicRefused) as info:
            parse_command_topic(bad)
        assert info.value.reason is ReasonCode.IMPLEMENTATION_SPECIFIC_ERROR
    with pytest.raises(TopicRefused) as info:
        parse_command_topic("command/app1//reboot")
    assert info.value.reason is ReasonCode.TOPIC_NAME_INVALID


def test_tracker_commits_only_contiguous_done_offsets() -> None:
    t: AckTracker[int] = AckTracker()
    t.start(0, 10, committed=True)
    assert t.committable() == {}
    t.sent(0, 10, packet_id=1)
    t.done(0, 11)  # filtered out, but behind an unacknowledged one
    t.sent(0, 12, packet_id=2)
    assert t.committable() == {}
    assert t.inflight == 2
    assert t.acked(2)
    assert t.committable() == {}  # 10 still in flight
    assert t.acked(1)
    assert t.committable() == {0: 13}
    t.committed({0: 13})
    assert t.committable() == {}
    assert not t.acked(1)  # not ours any more


def test_tracker_fresh_start_and_revocation() -> None:
    t: AckTracker[str] = AckTracker()
    t.start("p0", 5, committed=False)
    assert t.committable() == {"p0": 5}  # the start itself is committed for a fresh partition
    assert not t.expects("p1", 0)
    assert not t.expects("p0", 4) and t.expects("p0", 5)
    t.sent("p0", 5, packet_id=7)
    assert t.owns(7)
    t.drop(["p0"])
    assert not t.owns(7) and t.inflight == 0
    assert not t.acked(7)
    assert t.committable() == {}


def _event(content_type: str, payload: bytes):  # type: ignore[no-untyped-def]
    return build_device_event(app="app1", app_uid="u1", device="d1", device_uid=None, sender="d1", sender_uid=None,
                              instance="test", channel="telemetry", payload=payload, content_type=content_type,
                              id="e1", time=datetime(2026, 1, 2, 3, 4, 5, 123000, tzinfo=UTC))


def test_structured_encoding() -> None:
    event = _event("application/json", b'{"temp":42}')
    payload, props = encoding.structured(event, v5=True, subscription_id=3)
    assert from_structured(payload) == event
    assert orjson.loads(payload)["data"] == {"temp": 42}
    assert props.content_type == STRUCTURED_CONTENT_TYPE
    assert props.payload_format_indicator == 1
    assert props.subscription_identifiers == (3,)
    payload311, props311 = encoding.structured(event, v5=False)
    assert payload311 == payload and props311.content_type is None


def test_binary_encoding() -> None:
    event = _event("application/octet-stream", b"\x00\x01")
    payload, props = encoding.binary(event)
    assert payload == b"\x00\x01"
    assert props.content_type == "application/octet-stream"
    user = dict(props.user_properties)
    assert user["specversion"] == "1.0" and user["id"] == "e1" and user["subject"] == "telemetry"
    assert user["time"] == "2026-01-02T03:04:05.123Z"
    assert user["application"] == "app1" and user["device"] == "d1" and user["partitionkey"] == "app1/d1"
    assert "datacontenttype" not in user
    assert base64.b64encode(payload)  # raw bytes, not base64 in the payload


def test_tracker_generation_changes_when_a_partition_starts_again() -> None:
    t: AckTracker[int] = AckTracker()
    assert t.generation(0) is None
    t.start(0, 3, committed=True)
    first = t.generation(0)
    t.sent(0, 3, packet_id=1)
    t.drop([0])
    assert t.generation(0) is None
    t.start(0, 3, committed=True)  # assigned again, back at the committed offset
    assert t.generation(0) != first
    assert t.expects(0, 3)


def test_consumer_groups() -> None:
    assert consumer_group(parse_subscription("$share/g/app/x"), "c1") == "g"
    assert consumer_group(parse_subscription("$share/g/app/x/type/t"), None) == "g"
    assert consumer_group(parse_subscription("app/x"), "c1") == "c1"
    assert consumer_group(parse_subscription("app/x", [("type", "t")]), "c1") == "c1"
    assert consumer_group(parse_subscription("app/x/type/t"), "c1") == "c1/app/x/type/t"
    assert consumer_group(parse_subscription("app/x"), None) is None  # anonymous


def test_pubacks_go_out_in_publish_order() -> None:
    q = PubackQueue()
    a, b, c = q.expect(1), q.expect(2), q.expect(3)
    ok, refused = CommandOutcome(ReasonCode.SUCCESS), CommandOutcome(ReasonCode.NOT_AUTHORIZED, "no")
    assert q.done(b, refused) == []
    assert q.done(a, ok) == [(1, ok), (2, refused)]
    assert q.done(c, ok) == [(3, ok)]
