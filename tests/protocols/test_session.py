"""The server session state machine: connecting, keep alive, refusals."""

from __future__ import annotations

import pytest

from protocols.mqtt import (
    ConnectProperties,
    ConnectReceived,
    ProtocolVersion,
    ProtocolViolation,
    PublishProperties,
    PublishReceived,
    ReasonCode,
    ServerSession,
    SessionConfig,
    State,
    encode,
)
from protocols.mqtt import packets as pk
from protocols.mqtt import properties as pp
from tests.protocols.session_helpers import connected as _connected
from tests.protocols.session_helpers import sent as _sent

V311 = ProtocolVersion.V311
V5 = ProtocolVersion.V5
R = ReasonCode

# -- connecting --------------------------------------------------------------------------------------


def test_connect_timeout() -> None:
    session = ServerSession(SessionConfig(connect_timeout=15.0), now=100.0)
    assert session.next_deadline() == 115.0
    assert session.poll(114.9) == []
    [event] = session.poll(115.0)
    assert isinstance(event, ProtocolViolation)
    assert session.closed
    assert session.data_to_send() == b""
    assert session.next_deadline() is None


def test_connect_then_connack_v5_advertises_the_limits() -> None:
    config = SessionConfig(max_packet_size=16384, receive_maximum=10, topic_alias_maximum=0, retain_available=False)
    session = ServerSession(config, now=0.0)
    connect = pk.Connect("dev", 5, keepalive=30, username="d@a", password=b"pw")
    [event] = session.receive(encode(connect, V5), 1.0)
    assert event == ConnectReceived(connect, V5, persistent_session=False)
    assert session.state is State.AWAIT_CONNACK
    assert session.next_deadline() is None  # the shell bounds its own wait for the agent
    session.connack(
        assigned_client_identifier="x",
        wildcard_subscription_available=True,
        shared_subscription_available=False,
        subscription_identifiers_available=False,
        now=2.0,
    )
    [connack] = _sent(session)
    assert connack == pk.Connack(
        R.SUCCESS,
        False,
        pp.ConnackProperties(
            receive_maximum=10,
            maximum_qos=1,
            retain_available=0,
            maximum_packet_size=16384,
            assigned_client_identifier="x",
            wildcard_subscription_available=1,
            subscription_identifiers_available=0,
            shared_subscription_available=0,
        ),
    )
    assert session.state is State.CONNECTED
    assert session.next_deadline() == 2.0 + 45.0


@pytest.mark.parametrize(
    ("connect", "persistent"),
    [
        (pk.Connect("c", 4, clean_start=False), True),
        (pk.Connect("c", 4, clean_start=True), False),
        (pk.Connect("c", 5, clean_start=True, properties=ConnectProperties(session_expiry_interval=60)), True),
        (pk.Connect("c", 5, clean_start=True, properties=ConnectProperties(session_expiry_interval=0)), False),
    ],
)
def test_persistent_session_is_reported(connect: pk.Connect, persistent: bool) -> None:
    session = ServerSession(now=0.0)
    [event] = session.receive(encode(connect, connect.protocol_level), 0.0)
    assert isinstance(event, ConnectReceived)
    assert event.persistent_session is persistent


def test_connack_refusal_v311_uses_the_nearest_return_code() -> None:
    session = ServerSession(now=0.0)
    session.receive(encode(pk.Connect("c", 4), V311), 0.0)
    session.connack(R.SERVER_UNAVAILABLE)
    assert session.data_to_send() == bytes.fromhex("20020003")
    assert session.closed


def test_connack_refusal_v5() -> None:
    session = ServerSession(now=0.0)
    session.receive(encode(pk.Connect("c", 5), V5), 0.0)
    session.connack(R.BAD_USER_NAME_OR_PASSWORD)
    assert _sent(session) == [pk.Connack(R.BAD_USER_NAME_OR_PASSWORD)]
    assert session.closed


def test_packets_after_connect_wait_for_the_connack() -> None:
    session = ServerSession(now=0.0)
    publish = pk.Publish("t", b"early", 1, packet_id=1)
    events = session.receive(encode(pk.Connect("c", 5), V5) + encode(publish, V5), 0.0)
    assert [type(e) for e in events] == [ConnectReceived]
    assert session.receive(encode(pk.PINGREQ, V5), 0.5) == []
    assert session.buffered > 0
    assert session.connack(now=1.0) == [PublishReceived(publish)]
    assert [type(p) for p in _sent(session)] == [pk.Connack, pk.PingResp]


def test_refused_connect_never_processes_what_followed() -> None:
    session = ServerSession(now=0.0)
    session.receive(encode(pk.Connect("c", 5), V5) + encode(pk.Publish("t", b"x"), V5), 0.0)
    assert session.connack(R.NOT_AUTHORIZED) == []
    assert session.receive(encode(pk.Publish("t", b"y"), V5), 1.0) == []


@pytest.mark.parametrize(("level", "answer"), [(3, "20020001"), (6, "2003008400")])
def test_unsupported_protocol_version_gets_a_connack_it_can_read(level: int, answer: str) -> None:
    name = b"MQIsdp" if level == 3 else b"MQTT"
    body = len(name).to_bytes(2, "big") + name + bytes((level, 2)) + b"\x00\x0a\x00\x01c"
    session = ServerSession(now=0.0)
    [event] = session.receive(bytes((0x10, len(body))) + body, 0.0)
    assert isinstance(event, ProtocolViolation)
    assert event.reason == R.UNSUPPORTED_PROTOCOL_VERSION
    assert session.data_to_send().hex() == answer


def test_first_packet_not_connect_closes_silently() -> None:
    session = ServerSession(now=0.0)
    [event] = session.receive(encode(pk.PINGREQ, V5), 0.0)
    assert isinstance(event, ProtocolViolation)
    assert session.data_to_send() == b""


@pytest.mark.parametrize("version", [V311, V5])
def test_second_connect(version: ProtocolVersion) -> None:
    session = _connected(version)
    [event] = session.receive(encode(pk.Connect("c", int(version)), version), 1.0)
    assert isinstance(event, ProtocolViolation)
    assert event.reason == R.PROTOCOL_ERROR
    assert session.data_to_send() == (bytes.fromhex("e00182") if version == V5 else b"")
    assert session.closed


# -- keep alive --------------------------------------------------------------------------------------


@pytest.mark.parametrize("version", [V311, V5])
def test_keepalive_expiry_at_one_and_a_half_times(version: ProtocolVersion) -> None:
    session = _connected(version, keepalive=10)
    assert session.next_deadline() == 15.0
    assert session.receive(encode(pk.PINGREQ, version), 10.0) == []
    assert _sent(session, version) == [pk.PINGRESP]
    assert session.next_deadline() == 25.0
    assert session.poll(24.9) == []
    [event] = session.poll(25.0)
    assert isinstance(event, ProtocolViolation)
    assert event.reason == R.KEEP_ALIVE_TIMEOUT
    assert session.data_to_send() == (bytes.fromhex("e0018d") if version == V5 else b"")
    assert session.closed


def test_keepalive_zero_needs_no_timer() -> None:
    session = _connected(V5, keepalive=0)
    assert session.next_deadline() is None
    assert session.poll(1e9) == []


def test_server_keep_alive_overrides_the_client_value() -> None:
    session = ServerSession(now=0.0)
    session.receive(encode(pk.Connect("c", 5, keepalive=600), V5), 0.0)
    session.connack(server_keep_alive=20, now=0.0)
    assert _sent(session)[0].properties.server_keep_alive == 20  # type: ignore[union-attr]
    assert session.next_deadline() == 30.0


def test_partial_packet_does_not_count_as_activity() -> None:
    session = _connected(V5, keepalive=10)
    session.receive(encode(pk.PINGREQ, V5)[:1], 14.0)
    assert session.next_deadline() == 15.0


# -- refusals ----------------------------------------------------------------------------------------


def test_qos2_publish_v5_is_refused_with_qos_not_supported() -> None:
    session = _connected(V5)
    [event] = session.receive(encode(pk.Publish("t", b"x", 2, packet_id=1), V5), 1.0)
    assert isinstance(event, ProtocolViolation)
    assert event.reason == R.QOS_NOT_SUPPORTED
    assert session.data_to_send() == bytes.fromhex("e0019b")
    assert session.closed


def test_qos2_publish_v311_closes() -> None:
    session = _connected(V311)
    [event] = session.receive(encode(pk.Publish("t", b"x", 2, packet_id=1), V311), 1.0)
    assert isinstance(event, ProtocolViolation)
    assert session.data_to_send() == b""
    assert session.closed


def test_auth_is_refused() -> None:
    session = _connected(V5)
    [event] = session.receive(encode(pk.Auth(R.RE_AUTHENTICATE), V5), 1.0)
    assert isinstance(event, ProtocolViolation)
    assert session.data_to_send() == bytes.fromhex("e00182")


def test_packets_a_client_does_not_send_are_protocol_errors() -> None:
    for packet in (pk.Connack(), pk.PubRec(1), pk.PubRel(1), pk.SubAck(1, (0,)), pk.PINGRESP):
        session = _connected(V5)
        [event] = session.receive(encode(packet, V5), 1.0)
        assert isinstance(event, ProtocolViolation), packet
        assert event.reason == R.PROTOCOL_ERROR


def test_subscription_identifier_from_a_client_is_a_protocol_error() -> None:
    session = _connected(V5)
    props = PublishProperties(subscription_identifiers=(1,))
    [event] = session.receive(encode(pk.Publish("t", b"x", properties=props), V5), 1.0)
    assert isinstance(event, ProtocolViolation)


def test_retain_refused_when_not_available() -> None:
    session = _connected(V5, config=SessionConfig(retain_available=False))
    [event] = session.receive(encode(pk.Publish("t", b"x", retain=True), V5), 1.0)
    assert isinstance(event, ProtocolViolation)
    assert session.data_to_send() == bytes.fromhex("e0019a")


def test_malformed_packet_after_connack_v5_sends_disconnect_0x81() -> None:
    session = _connected(V5)
    good = encode(pk.Publish("t", b"ok"), V5)
    events = session.receive(good + bytes.fromhex("3605000161000a") + good, 1.0)
    assert session.data_to_send() == bytes.fromhex("e00181")
    # what came before the bad packet is delivered, nothing after it
    assert [type(e) for e in events] == [PublishReceived, ProtocolViolation]
    assert session.receive(good, 2.0) == []


def test_packet_too_large_v5_sends_disconnect_0x95() -> None:
    session = _connected(V5, config=SessionConfig(max_packet_size=64))
    [event] = session.receive(encode(pk.Publish("t", b"x" * 100), V5)[:3], 1.0)
    assert isinstance(event, ProtocolViolation)
    assert session.data_to_send() == bytes.fromhex("e00195")


def test_receive_maximum_exceeded() -> None:
    session = _connected(V5, config=SessionConfig(receive_maximum=2))
    wire = b"".join(encode(pk.Publish("t", b"x", 1, packet_id=i), V5) for i in (1, 2))
    assert len(session.receive(wire, 1.0)) == 2
    session.puback(1)
    assert len(session.receive(encode(pk.Publish("t", b"x", 1, packet_id=3), V5), 1.0)) == 1
    events = session.receive(encode(pk.Publish("t", b"x", 1, packet_id=4), V5), 1.0)
    assert isinstance(events[-1], ProtocolViolation)
    assert events[-1].reason == R.RECEIVE_MAXIMUM_EXCEEDED
    assert session.data_to_send().endswith(bytes.fromhex("e00193"))


def test_empty_client_id_v5_needs_an_assigned_identifier() -> None:
    session = ServerSession(now=0.0)
    session.receive(encode(pk.Connect("", 5), V5), 0.0)
    with pytest.raises(ValueError):
        session.connack()
    session.connack(assigned_client_identifier="srv-1")
    [connack] = _sent(session)
    assert isinstance(connack, pk.Connack)
    assert connack.properties.assigned_client_identifier == "srv-1"
