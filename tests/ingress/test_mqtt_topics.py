"""Pure unit tests of the MQTT endpoint's rules: login forms, dialect topics, command filters, the
authorize_as cache."""

from __future__ import annotations

import pytest

from ingress.mqtt.cache import TtlLru
from ingress.mqtt.connection import kick_reason_code
from ingress.mqtt.login import MqttLogin, mqtt_login
from ingress.mqtt.topics import Dialect, DialectInvalid, Subscriptions, Target, TopicInvalid, filter_kind
from protocols.mqtt import ReasonCode
from schemas.auth import CertCredential, PassCredential, UserCredential
from schemas.state import Reason


@pytest.mark.parametrize(
    ("username", "password", "client_id", "certs", "expected"),
    [
        ("d@a", b"pw", "x", None, MqttLogin("a", "d", PassCredential("pw"))),
        ("d%2Fx@a@b", b"pw", "x", None, MqttLogin("a@b", "d/x", PassCredential("pw"))),
        ("alice", b"pw", "d@a", None, MqttLogin("a", "d", UserCredential("alice", "pw"))),
        ("alice", b"pw", "nodevice", None, None),
        ("d@a", None, "x", None, None),
        (None, b"pw", "x", None, None),
        (None, None, "x", None, None),
        ("d@a", b"\xff", "x", None, None),
        ("@a", b"pw", "x", None, None),
        ("d@a", b"pw", "x", (b"cert",), None),  # certificate and password: refused (§17 row 14.6)
        (None, None, "x", (b"cert",), MqttLogin("", "", CertCredential((b"cert",)))),
    ],
)
def test_login_forms(username: str | None, password: bytes | None, client_id: str,
                     certs: tuple[bytes, ...] | None, expected: MqttLogin | None) -> None:
    assert mqtt_login(username, password, client_id, certs) == expected


@pytest.mark.parametrize(
    ("dialect", "topic", "expected"),
    [
        (None, "telemetry", Target("telemetry")),
        (None, "telemetry/child", Target("telemetry", "child")),
        (None, "telemetry/", Target("telemetry")),
        ({"type": "drogue/v1"}, "a/b/c", None),
        (None, "", None),
        (None, "/child", None),
        ({"type": "plainTopic"}, "a/b/c", Target("a/b/c")),
        ({"type": "plainTopic", "devicePrefix": False}, "", None),
        ({"type": "plainTopic", "devicePrefix": True}, "child/a/b", Target("a/b", "child")),
        ({"type": "plainTopic", "devicePrefix": True}, "/a", Target("a")),
        ({"type": "plainTopic", "devicePrefix": True}, "nochannel", None),
        ({"type": "plainTopic", "devicePrefix": True}, "dev/", None),
    ],
)
def test_dialect_topics(dialect: dict[str, object] | None, topic: str, expected: Target | None) -> None:
    d = Dialect.of(dialect)
    if expected is None:
        with pytest.raises(TopicInvalid):
            d.target(topic)
    else:
        assert d.target(topic) == expected


def test_unknown_dialect() -> None:
    with pytest.raises(DialectInvalid):
        Dialect.of({"type": "sparkplug"})


def test_command_filters_and_topics() -> None:
    assert filter_kind("command/inbox/#") == filter_kind("command/inbox/+/#") == ("all", None)
    assert filter_kind("command/inbox//#") == ("own", None)
    assert filter_kind("command/inbox/child/#") == ("device", "child")
    for bad in ("command/inbox", "command/inbox/+", "command/#", "#", "command/inbox/a/b/#", "command/inbox/+a/#"):
        assert filter_kind(bad) is None, bad
    subs = Subscriptions()
    assert subs.command_topic("gw", "gw", "c") is None
    assert subs.add("command/inbox/child/#") and subs.add("command/inbox/child/#")
    assert len(subs.filters) == 1
    assert subs.command_topic("gw", "child", "c") == "command/inbox/child/c"
    assert subs.command_topic("gw", "other", "c") is None
    assert subs.add("command/inbox//#")
    assert subs.command_topic("gw", "gw", "c") == "command/inbox//c"
    assert subs.command_topic("gw", "other", "c") is None
    assert subs.add("command/inbox/#")
    assert subs.command_topic("gw", "other", "c") == "command/inbox/other/c"
    assert not subs.add("other")
    assert subs.remove("command/inbox/#") and not subs.remove("command/inbox/#")


def test_own_device_filter_delivers_with_the_device_name() -> None:
    subs = Subscriptions()
    subs.add("command/inbox/gw/#")
    assert subs.command_topic("gw", "gw", "c") == "command/inbox/gw/c"


def test_ttl_lru() -> None:
    cache: TtlLru[str, int] = TtlLru(2, 10.0)
    cache.put("a", 1, now=0)
    cache.put("b", 2, now=0)
    assert cache.get("a", now=1) == 1
    cache.put("c", 3, now=1)  # evicts b, the least recently used
    assert cache.get("b", now=1) is None
    assert cache.get("a", now=9) == 1
    assert cache.get("a", now=10) is None  # expired
    assert len(cache) == 1


def test_kick_reason_codes() -> None:
    assert kick_reason_code(Reason.TAKEN_OVER) is ReasonCode.SESSION_TAKEN_OVER
    assert kick_reason_code(Reason.DEVICE_DISABLED) is ReasonCode.NOT_AUTHORIZED
    assert kick_reason_code(Reason.DEVICE_DELETED) is ReasonCode.ADMINISTRATIVE_ACTION
