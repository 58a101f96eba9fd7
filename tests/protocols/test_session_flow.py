"""The server session state machine: topic aliases, the in-flight window, answers, disconnects."""

from __future__ import annotations

import pytest

from protocols.mqtt import (
    ConnectProperties,
    DisconnectReceived,
    InflightWindowFull,
    PacketTooLargeForClient,
    ProtocolVersion,
    ProtocolViolation,
    PubackReceived,
    PublishProperties,
    PublishReceived,
    ReasonCode,
    ServerSession,
    SessionConfig,
    SessionError,
    SubscribeReceived,
    UnsubscribeReceived,
    encode,
)
from protocols.mqtt import packets as pk
from protocols.mqtt import properties as pp
from tests.protocols.session_helpers import connected as _connected
from tests.protocols.session_helpers import sent as _sent

V311 = ProtocolVersion.V311
V5 = ProtocolVersion.V5
R = ReasonCode

# -- topic aliases -----------------------------------------------------------------------------------


def test_topic_alias_is_set_and_resolved() -> None:
    session = _connected(V5, config=SessionConfig(topic_alias_maximum=4))
    alias = PublishProperties(topic_alias=3)
    _first, second = session.receive(
        encode(pk.Publish("a/b", b"1", properties=alias), V5) + encode(pk.Publish("", b"2", properties=alias), V5),
        1.0,
    )
    assert isinstance(second, PublishReceived)
    assert second.publish.topic == "a/b"
    assert second.publish.payload == b"2"


def test_topic_alias_above_maximum_is_invalid() -> None:
    session = _connected(V5, config=SessionConfig(topic_alias_maximum=0))
    [event] = session.receive(encode(pk.Publish("a", b"", properties=PublishProperties(topic_alias=1)), V5), 1.0)
    assert isinstance(event, ProtocolViolation)
    assert event.reason == R.TOPIC_ALIAS_INVALID
    assert session.data_to_send() == bytes.fromhex("e00194")


def test_unknown_topic_alias_is_a_protocol_error() -> None:
    session = _connected(V5)
    [event] = session.receive(encode(pk.Publish("", b"", properties=PublishProperties(topic_alias=1)), V5), 1.0)
    assert isinstance(event, ProtocolViolation)
    assert event.reason == R.PROTOCOL_ERROR


# -- server to client --------------------------------------------------------------------------------


def test_inflight_window_follows_the_client_receive_maximum() -> None:
    session = _connected(V5, config=SessionConfig(max_inflight=8), props=ConnectProperties(receive_maximum=2))
    assert session.inflight_available == 2
    first = session.publish("cmd/a", b"1", 1)
    second = session.publish("cmd/a", b"2", 1)
    assert first != second
    assert session.publish("cmd/a", b"3", 0) is None  # QoS 0 needs no slot
    with pytest.raises(InflightWindowFull):
        session.publish("cmd/a", b"4", 1)
    sent = _sent(session)
    assert [p.packet_id for p in sent if isinstance(p, pk.Publish)] == [first, second, None]
    assert session.receive(encode(pk.PubAck(first or 0), V5), 1.0) == [PubackReceived(first or 0, R.SUCCESS)]
    assert session.inflight == 1
    third = session.publish("cmd/a", b"4", 1)
    assert third not in (None, second)


def test_inflight_window_v311_uses_the_config() -> None:
    session = _connected(V311, config=SessionConfig(max_inflight=3))
    ids = [session.publish("t", b"x", 1) for _ in range(3)]
    assert len(set(ids)) == 3
    with pytest.raises(InflightWindowFull):
        session.publish("t", b"x", 1)


def test_packet_ids_wrap_and_skip_those_in_flight() -> None:
    session = _connected(V5, config=SessionConfig(max_inflight=2))
    held = session.publish("t", b"x", 1)
    for _ in range(70000):
        pid = session.publish("t", b"x", 1)
        assert pid is not None and pid != held and 1 <= pid <= 0xFFFF
        session.receive(encode(pk.PubAck(pid), V5), 1.0)
    session.data_to_send()


def test_unknown_puback_is_ignored() -> None:
    session = _connected(V5)
    assert session.receive(encode(pk.PubAck(77), V5), 1.0) == []
    assert not session.closed


def test_publish_bigger_than_the_client_maximum_is_refused() -> None:
    session = _connected(V5, props=ConnectProperties(maximum_packet_size=50))
    with pytest.raises(PacketTooLargeForClient):
        session.publish("t", b"x" * 100, 1)
    assert session.inflight == 0
    assert session.data_to_send() == b""


def test_publish_before_connack_is_an_error() -> None:
    session = ServerSession(now=0.0)
    with pytest.raises(SessionError):
        session.publish("t", b"", 0)
    with pytest.raises(ValueError):
        _connected().publish("t", b"", 2)


def test_puback_suback_unsuback_v5() -> None:
    session = _connected(V5)
    sub = pk.Subscribe(5, (pk.Subscription("command/inbox/#", 1), pk.Subscription("x/#")))
    unsub = pk.Unsubscribe(6, ("a", "b"))
    events = session.receive(encode(sub, V5) + encode(unsub, V5), 1.0)
    assert events == [SubscribeReceived(sub), UnsubscribeReceived(unsub)]
    session.puback(9, R.NOT_AUTHORIZED, "not your device")
    session.suback(5, [R.GRANTED_QOS_1, R.TOPIC_FILTER_INVALID])
    session.unsuback(6)
    assert _sent(session) == [
        pk.PubAck(9, R.NOT_AUTHORIZED, pp.AckProperties("not your device")),
        pk.SubAck(5, (R.GRANTED_QOS_1, R.TOPIC_FILTER_INVALID)),
        pk.UnsubAck(6, (R.SUCCESS, R.SUCCESS)),
    ]


def test_reason_strings_are_dropped_when_the_client_asks() -> None:
    session = _connected(V5, props=ConnectProperties(request_problem_information=0))
    session.puback(9, R.NOT_AUTHORIZED, "not your device")
    assert _sent(session) == [pk.PubAck(9, R.NOT_AUTHORIZED)]


def test_acks_v311() -> None:
    session = _connected(V311)
    session.puback(9, R.NOT_AUTHORIZED)  # v3.1.1 has no reason: a plain PUBACK
    session.suback(5, [R.GRANTED_QOS_0, R.GRANTED_QOS_1, R.NOT_AUTHORIZED])
    session.unsuback(6)
    assert _sent(session, V311) == [pk.PubAck(9), pk.SubAck(5, (0, 1, 0x80)), pk.UnsubAck(6)]


# -- disconnecting -----------------------------------------------------------------------------------


def test_client_disconnect_normal_and_with_will() -> None:
    session = _connected(V5)
    [event] = session.receive(encode(pk.Disconnect(), V5), 1.0)
    assert isinstance(event, DisconnectReceived)
    assert not event.publish_will
    assert session.closed
    session = _connected(V5)
    [event] = session.receive(encode(pk.Disconnect(R.DISCONNECT_WITH_WILL_MESSAGE), V5), 1.0)
    assert isinstance(event, DisconnectReceived)
    assert event.publish_will


def test_session_expiry_at_disconnect_when_connect_had_none_is_a_protocol_error() -> None:
    session = _connected(V5)
    props = pp.DisconnectProperties(session_expiry_interval=30)
    [event] = session.receive(encode(pk.Disconnect(R.SUCCESS, props), V5), 1.0)
    assert isinstance(event, ProtocolViolation)


def test_nothing_after_disconnect_is_processed() -> None:
    session = _connected(V5)
    events = session.receive(encode(pk.Disconnect(), V5) + encode(pk.Publish("t", b"x"), V5), 1.0)
    assert [type(e) for e in events] == [DisconnectReceived]


def test_server_disconnect_v5_session_taken_over() -> None:
    session = _connected(V5)
    session.disconnect(R.SESSION_TAKEN_OVER)
    assert session.data_to_send() == bytes.fromhex("e0018e")
    assert session.closed
    session.disconnect(R.SESSION_TAKEN_OVER)  # idempotent
    assert session.data_to_send() == b""


def test_server_disconnect_v311_just_closes() -> None:
    session = _connected(V311)
    session.disconnect(R.SESSION_TAKEN_OVER)
    assert session.data_to_send() == b""
    assert session.closed


def test_server_disconnect_with_a_connack_only_reason_is_refused() -> None:
    with pytest.raises(ValueError):
        _connected(V5).disconnect(R.BAD_USER_NAME_OR_PASSWORD)


def test_disconnect_before_connack_refuses_the_connect() -> None:
    session = ServerSession(now=0.0)
    session.receive(encode(pk.Connect("c", 5), V5), 0.0)
    session.disconnect(R.SESSION_TAKEN_OVER)  # not a CONNACK code: refused as unspecified
    assert _sent(session) == [pk.Connack(R.UNSPECIFIED_ERROR)]
    assert session.closed


def test_connack_with_a_disconnect_only_reason_is_refused() -> None:
    session = ServerSession(now=0.0)
    session.receive(encode(pk.Connect("c", 5), V5), 0.0)
    with pytest.raises(ValueError):
        session.connack(R.SESSION_TAKEN_OVER)


def test_connection_lost_ends_the_session() -> None:
    session = _connected(V5, keepalive=10)
    session.connection_lost()
    assert session.closed
    assert session.next_deadline() is None
    assert session.receive(encode(pk.PINGREQ, V5), 1.0) == []
    with pytest.raises(SessionError):
        session.publish("t", b"x", 1)
