"""Byte vectors laid out by hand from the spec's field tables (MQTT 3.1.1 §3.1/§3.3/§3.8, MQTT 5 §3.1),
checked in both directions."""

from __future__ import annotations

import pytest

from protocols.mqtt import (
    ConnackReturnCode,
    ConnectProperties,
    Decoder,
    ProtocolVersion,
    ReasonCode,
    encode,
    to_v311_connack,
)
from protocols.mqtt import packets as pk
from protocols.mqtt import properties as pp

V311 = ProtocolVersion.V311
V5 = ProtocolVersion.V5

# CONNECT 3.1.1: name "MQTT", level 4, flags 0xC2 (user name, password, clean session), keep alive 10,
# client id "c1", user name "u", password "p"
CONNECT_V311 = bytes.fromhex("101400044d51545404c2000a00026331000175000170")
# CONNECT 5: as the spec's example variable header: level 5, clean start, keep alive 10, properties of
# length 5 = Session Expiry Interval (0x11) 10; client id "c1"
CONNECT_V5 = bytes.fromhex("101400044d5154540502000a05110000000a00026331")
# PUBLISH QoS 1 of the spec's example: topic "a/b", packet id 10, payload "hi"
PUBLISH_V311 = bytes.fromhex("32090003612f62000a6869")
PUBLISH_V5 = bytes.fromhex("320a0003612f62000a006869")
# SUBSCRIBE of the spec's example: packet id 10, "a/b" QoS 1, "c/d" QoS 2
SUBSCRIBE_V311 = bytes.fromhex("820e000a0003612f62010003632f6402")


def test_connect_v311_vector() -> None:
    expected = pk.Connect("c1", 4, True, 10, "u", b"p")
    assert Decoder().feed(CONNECT_V311) == [expected]
    assert encode(expected, V311) == CONNECT_V311


def test_connect_v5_vector() -> None:
    expected = pk.Connect("c1", 5, True, 10, properties=ConnectProperties(session_expiry_interval=10))
    assert Decoder().feed(CONNECT_V5) == [expected]
    assert encode(expected, V5) == CONNECT_V5


def test_publish_vectors() -> None:
    expected = pk.Publish("a/b", b"hi", 1, packet_id=10)
    assert Decoder(V311).feed(PUBLISH_V311) == [expected]
    assert encode(expected, V311) == PUBLISH_V311
    assert Decoder(V5).feed(PUBLISH_V5) == [expected]
    assert encode(expected, V5) == PUBLISH_V5


def test_subscribe_vector() -> None:
    expected = pk.Subscribe(10, (pk.Subscription("a/b", 1), pk.Subscription("c/d", 2)))
    assert Decoder(V311).feed(SUBSCRIBE_V311) == [expected]
    assert encode(expected, V311) == SUBSCRIBE_V311


@pytest.mark.parametrize(
    ("packet", "version", "wire"),
    [
        (pk.Connack(ConnackReturnCode.ACCEPTED), V311, "20020000"),
        (pk.Connack(ReasonCode.SUCCESS, True), V5, "2003010000"),
        (pk.Connack(ReasonCode.SUCCESS, False, pp.ConnackProperties(topic_alias_maximum=5)), V5, "2006000003220005"),
        (pk.PubAck(10), V311, "4002000a"),
        (pk.PubAck(10), V5, "4002000a"),
        (pk.PubAck(10, ReasonCode.NOT_AUTHORIZED), V5, "4003000a87"),
        (pk.PubAck(10, ReasonCode.QUOTA_EXCEEDED, pp.AckProperties("full")), V5, "400b000a97071f000466756c6c"),
        (pk.SubAck(10, (1, 0x80)), V311, "9004000a0180"),
        (pk.SubAck(10, (ReasonCode.GRANTED_QOS_1, ReasonCode.TOPIC_FILTER_INVALID)), V5, "9005000a00018f"),
        (pk.UnsubAck(10), V311, "b002000a"),
        (pk.UnsubAck(10, (ReasonCode.NO_SUBSCRIPTION_EXISTED,)), V5, "b004000a0011"),
        (pk.PINGREQ, V311, "c000"),
        (pk.PINGRESP, V5, "d000"),
        (pk.Disconnect(), V311, "e000"),
        (pk.Disconnect(ReasonCode.SESSION_TAKEN_OVER), V5, "e0018e"),
        (pk.Publish("a", b"", 0, properties=pp.PublishProperties(content_type="c")), V5, "30080001610403000163"),
    ],
)
def test_small_packet_vectors(packet: pk.Packet, version: ProtocolVersion, wire: str) -> None:
    assert encode(packet, version).hex() == wire
    assert Decoder(version).feed(bytes.fromhex(wire)) == [packet]


def test_v311_connack_mapping() -> None:
    assert to_v311_connack(ReasonCode.SUCCESS) == ConnackReturnCode.ACCEPTED
    assert to_v311_connack(ReasonCode.UNSUPPORTED_PROTOCOL_VERSION) == 1
    assert to_v311_connack(ReasonCode.CLIENT_IDENTIFIER_NOT_VALID) == 2
    assert to_v311_connack(ReasonCode.SERVER_UNAVAILABLE) == 3
    assert to_v311_connack(ReasonCode.SERVER_BUSY) == 3
    assert to_v311_connack(ReasonCode.BAD_USER_NAME_OR_PASSWORD) == 4
    assert to_v311_connack(ReasonCode.NOT_AUTHORIZED) == 5
    assert to_v311_connack(ReasonCode.BANNED) == 5
    assert to_v311_connack(ReasonCode.MALFORMED_PACKET) == 3


def test_reason_code_values_match_the_spec() -> None:
    spec = {
        0x80: "UNSPECIFIED_ERROR", 0x81: "MALFORMED_PACKET", 0x82: "PROTOCOL_ERROR",
        0x83: "IMPLEMENTATION_SPECIFIC_ERROR", 0x84: "UNSUPPORTED_PROTOCOL_VERSION",
        0x85: "CLIENT_IDENTIFIER_NOT_VALID", 0x86: "BAD_USER_NAME_OR_PASSWORD", 0x87: "NOT_AUTHORIZED",
        0x88: "SERVER_UNAVAILABLE", 0x89: "SERVER_BUSY", 0x8C: "BAD_AUTHENTICATION_METHOD",
        0x8D: "KEEP_ALIVE_TIMEOUT", 0x8E: "SESSION_TAKEN_OVER", 0x8F: "TOPIC_FILTER_INVALID",
        0x90: "TOPIC_NAME_INVALID", 0x93: "RECEIVE_MAXIMUM_EXCEEDED", 0x94: "TOPIC_ALIAS_INVALID",
        0x95: "PACKET_TOO_LARGE", 0x97: "QUOTA_EXCEEDED", 0x99: "PAYLOAD_FORMAT_INVALID",
        0x9A: "RETAIN_NOT_SUPPORTED", 0x9B: "QOS_NOT_SUPPORTED", 0x9E: "SHARED_SUBSCRIPTIONS_NOT_SUPPORTED",
        0xA1: "SUBSCRIPTION_IDENTIFIERS_NOT_SUPPORTED", 0xA2: "WILDCARD_SUBSCRIPTIONS_NOT_SUPPORTED",
    }  # fmt: skip
    for value, name in spec.items():
        assert ReasonCode(value).name == name
