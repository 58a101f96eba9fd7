"""Each validation rule of the decoder, with the reason code the server is told to answer with."""

from __future__ import annotations

import pytest

from protocols.mqtt import (
    Decoder,
    MqttProtocolError,
    ProtocolVersion,
    ReasonCode,
    check_topic_filter,
    encode,
    split_shared,
)
from protocols.mqtt import packets as pk
from protocols.mqtt import properties as pp

V311 = ProtocolVersion.V311
V5 = ProtocolVersion.V5
R = ReasonCode


def _error(wire: bytes | str, version: ProtocolVersion | None = V5, **kwargs: int) -> MqttProtocolError:
    data = bytes.fromhex(wire) if isinstance(wire, str) else wire
    decoder = Decoder(version, **kwargs)
    with pytest.raises(MqttProtocolError) as info:
        decoder.feed(data)
        decoder.feed(b"")  # an error after valid packets surfaces at the next feed
    return info.value


def test_error_after_valid_packets_is_raised_at_the_next_feed() -> None:
    good = encode(pk.PINGREQ, V5)
    decoder = Decoder(V5)
    assert decoder.feed(good + bytes.fromhex("c100") + good) == [pk.PINGREQ]
    assert decoder.error is not None
    with pytest.raises(MqttProtocolError):
        decoder.feed(good)


def _publish_body(topic: bytes, *, props: bytes = b"\x00", version: ProtocolVersion = V5) -> bytes:
    body = len(topic).to_bytes(2, "big") + topic + (props if version == V5 else b"") + b"payload"
    return bytes((0x30, len(body))) + body


# -- framing -----------------------------------------------------------------------------------------


def test_remaining_length_longer_than_four_bytes_is_malformed() -> None:
    assert _error("30ffffffff01").reason == R.MALFORMED_PACKET


def test_non_minimal_remaining_length_is_accepted() -> None:
    assert Decoder(V5).feed(bytes.fromhex("c08000")) == [pk.PINGREQ]


def test_packet_too_large_is_refused_from_the_fixed_header_alone() -> None:
    decoder = Decoder(V5, max_packet_size=100)
    with pytest.raises(MqttProtocolError) as info:
        decoder.feed(bytes.fromhex("30e807"))  # announces 1000 bytes; none of the body has arrived
    assert info.value.reason == R.PACKET_TOO_LARGE
    assert decoder.buffered == 0


def test_packet_at_the_size_limit_is_accepted() -> None:
    wire = encode(pk.Publish("t", b"x" * 50), V5)
    assert Decoder(V5, max_packet_size=len(wire)).feed(wire) != []
    assert _error(wire, max_packet_size=len(wire) - 1).reason == R.PACKET_TOO_LARGE


def test_partial_packets_wait_for_more_bytes() -> None:
    wire = encode(pk.Publish("a/b", b"payload", 1, packet_id=3), V5)
    decoder = Decoder(V5)
    assert decoder.feed(wire[:1]) == []
    assert decoder.feed(wire[1:5]) == []
    assert decoder.feed(wire[5:] + wire) == [pk.Publish("a/b", b"payload", 1, packet_id=3)] * 2


# -- fixed header ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "wire",
    [
        "0000",  # reserved packet type 0
        "c100",  # PINGREQ with flags
        "e100",  # DISCONNECT with flags
        "8005000a000161",  # SUBSCRIBE without the required 0b0010 flags
        "a005000a000161",  # UNSUBSCRIBE likewise
        "6002000a",  # PUBREL without 0b0010
    ],
)
def test_reserved_fixed_header_flags_are_malformed(wire: str) -> None:
    assert _error(wire).reason == R.MALFORMED_PACKET


def test_auth_does_not_exist_in_v311() -> None:
    assert _error("f000", V311).reason == R.MALFORMED_PACKET


def test_publish_qos_3_is_malformed() -> None:
    assert _error("3605000161000a").reason == R.MALFORMED_PACKET


def test_dup_on_qos_0_is_malformed() -> None:
    assert _error("380400016100", V5).reason == R.MALFORMED_PACKET


def test_packet_identifier_zero_is_a_protocol_error() -> None:
    assert _error("320600016100000000").reason == R.PROTOCOL_ERROR


# -- CONNECT -----------------------------------------------------------------------------------------


def _connect(flags: int, level: int = 4, name: bytes = b"MQTT", tail: bytes = b"\x00\x01c") -> bytes:
    props = b"\x00" if level == 5 else b""
    body = len(name).to_bytes(2, "big") + name + bytes((level, flags)) + b"\x00\x0a" + props + tail
    return bytes((0x10, len(body))) + body


def test_first_packet_must_be_connect() -> None:
    assert _error(encode(pk.PINGREQ, V5), None).reason == R.PROTOCOL_ERROR
    assert _error(encode(pk.Publish("a", b""), V5), None).reason == R.PROTOCOL_ERROR


def test_second_connect_is_a_protocol_error() -> None:
    wire = encode(pk.Connect("c", 5), V5)
    assert _error(wire + wire, None).reason == R.PROTOCOL_ERROR


def test_reserved_connect_flag_is_malformed() -> None:
    assert _error(_connect(0x03), None).reason == R.MALFORMED_PACKET


def test_will_qos_3_is_malformed() -> None:
    assert _error(_connect(0x1E), None).reason == R.MALFORMED_PACKET


def test_will_qos_without_will_is_malformed() -> None:
    assert _error(_connect(0x0A), None).reason == R.MALFORMED_PACKET


def test_v311_password_without_user_name_is_malformed() -> None:
    assert _error(_connect(0x42, tail=b"\x00\x01c\x00\x01p"), None).reason == R.MALFORMED_PACKET


def test_v5_password_without_user_name_is_accepted() -> None:
    [packet] = Decoder().feed(_connect(0x42, 5, tail=b"\x00\x01c\x00\x01p"))
    assert isinstance(packet, pk.Connect)
    assert packet.username is None
    assert packet.password == b"p"


def test_connect_trailing_bytes_are_malformed() -> None:
    assert _error(_connect(0x02, tail=b"\x00\x01cXX"), None).reason == R.MALFORMED_PACKET


@pytest.mark.parametrize(("name", "level"), [(b"MQIsdp", 3), (b"MQTT", 3), (b"MQTT", 6)])
def test_unsupported_protocol_versions(name: bytes, level: int) -> None:
    error = _error(_connect(0x02, level, name), None)
    assert error.reason == R.UNSUPPORTED_PROTOCOL_VERSION
    assert error.protocol_level == level


def test_unknown_protocol_name_is_malformed() -> None:
    assert _error(_connect(0x02, 4, b"HTTP"), None).reason == R.MALFORMED_PACKET


def test_will_topic_with_wildcard_is_invalid() -> None:
    wire = encode(pk.Connect("c", 4, will=pk.Will("a/#", b"x")), V311)
    assert _error(wire, None).reason == R.TOPIC_NAME_INVALID


# -- UTF-8 strings -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "topic",
    [b"a\xffb", b"a\x00b", b"\xed\xa0\x80", b"\xc0\xaf", b"\xe2\x82"],
    ids=["invalid-byte", "nul", "surrogate", "overlong", "truncated"],
)
def test_ill_formed_utf8_is_malformed(topic: bytes) -> None:
    assert _error(_publish_body(topic)).reason == R.MALFORMED_PACKET


def test_ill_formed_utf8_client_id_is_malformed() -> None:
    assert _error(_connect(0x02, tail=b"\x00\x02\xed\xa0"), None).reason == R.MALFORMED_PACKET


def test_string_running_past_its_packet_is_malformed() -> None:
    assert _error("30050010616200").reason == R.MALFORMED_PACKET


# -- topic names and filters -------------------------------------------------------------------------


@pytest.mark.parametrize("topic", [b"a/+", b"#", b"a/#/b", b"+"])
def test_topic_name_with_wildcards_is_invalid(topic: bytes) -> None:
    assert _error(_publish_body(topic)).reason == R.TOPIC_NAME_INVALID
    assert _error(_publish_body(topic, version=V311), V311).reason == R.TOPIC_NAME_INVALID


def test_empty_topic_name() -> None:
    assert _error(_publish_body(b"", version=V311), V311).reason == R.TOPIC_NAME_INVALID
    assert _error(_publish_body(b"")).reason == R.PROTOCOL_ERROR  # v5 without a topic alias
    [packet] = Decoder(V5).feed(_publish_body(b"", props=b"\x03\x23\x00\x01"))
    assert isinstance(packet, pk.Publish)
    assert packet.topic == ""
    assert packet.properties.topic_alias == 1


@pytest.mark.parametrize(
    "topic_filter", ["", "a/#/b", "a#", "#a", "a/b#", "a+", "+a/b", "a/++", "$share/g", "$share//a"]
)
def test_invalid_topic_filters(topic_filter: str) -> None:
    with pytest.raises(MqttProtocolError) as info:
        check_topic_filter(topic_filter)
    assert info.value.reason == R.TOPIC_FILTER_INVALID
    raw = topic_filter.encode()
    body = b"\x00\x01" + b"\x00" + len(raw).to_bytes(2, "big") + raw + b"\x00"
    assert _error(bytes((0x82, len(body))) + body).reason == R.TOPIC_FILTER_INVALID
    unsub = b"\x00\x01" + len(raw).to_bytes(2, "big") + raw
    assert _error(bytes((0xA2, len(unsub))) + unsub, V311).reason == R.TOPIC_FILTER_INVALID


@pytest.mark.parametrize("topic_filter", ["#", "+", "a/+/b", "a/#", "+/+", "/", "a//b", "$share/g/a/#", "$SYS/#"])
def test_valid_topic_filters(topic_filter: str) -> None:
    check_topic_filter(topic_filter)


def test_split_shared() -> None:
    assert split_shared("$share/group/app/x") == ("group", "app/x")
    assert split_shared("app/x") == (None, "app/x")


# -- SUBSCRIBE ---------------------------------------------------------------------------------------


def _subscribe(options: int, version: ProtocolVersion = V5, topic_filter: bytes = b"a") -> bytes:
    props = b"\x00" if version == V5 else b""
    body = b"\x00\x01" + props + len(topic_filter).to_bytes(2, "big") + topic_filter + bytes((options,))
    return bytes((0x82, len(body))) + body


def test_subscription_qos_3_is_malformed() -> None:
    assert _error(_subscribe(0x03)).reason == R.MALFORMED_PACKET


def test_reserved_subscription_option_bits_are_malformed() -> None:
    assert _error(_subscribe(0x40)).reason == R.MALFORMED_PACKET
    assert _error(_subscribe(0x04, V311), V311).reason == R.MALFORMED_PACKET  # no local is v5 only


def test_retain_handling_3_is_a_protocol_error() -> None:
    assert _error(_subscribe(0x30)).reason == R.PROTOCOL_ERROR


def test_no_local_on_shared_subscription_is_a_protocol_error() -> None:
    assert _error(_subscribe(0x04, topic_filter=b"$share/g/a")).reason == R.PROTOCOL_ERROR


def test_subscribe_without_filters_is_a_protocol_error() -> None:
    assert _error("8203000100").reason == R.PROTOCOL_ERROR


# -- properties --------------------------------------------------------------------------------------


def test_property_not_valid_for_the_packet_is_malformed() -> None:
    # Session Expiry Interval (0x11) in a PUBLISH
    assert _error(_publish_body(b"a", props=b"\x05\x11\x00\x00\x00\x01")).reason == R.MALFORMED_PACKET
    # an identifier that does not exist
    assert _error(_publish_body(b"a", props=b"\x02\x7f\x00")).reason == R.MALFORMED_PACKET


def test_duplicated_property_is_a_protocol_error() -> None:
    props = b"\x08" + b"\x03\x00\x01a" + b"\x03\x00\x01b"  # Content Type twice
    assert _error(_publish_body(b"a", props=props)).reason == R.PROTOCOL_ERROR


def test_repeatable_properties_may_repeat() -> None:
    pair = b"\x26\x00\x01k\x00\x01v"
    props = bytes((2 * len(pair) + 4,)) + pair + pair + b"\x0b\x01\x0b\x02"
    [packet] = Decoder(V5).feed(_publish_body(b"a", props=props))
    assert isinstance(packet, pk.Publish)
    assert packet.properties.user_properties == (("k", "v"), ("k", "v"))
    assert packet.properties.subscription_identifiers == (1, 2)


def test_subscription_identifier_twice_in_subscribe_is_a_protocol_error() -> None:
    body = b"\x00\x01" + b"\x04\x0b\x01\x0b\x02" + b"\x00\x01a\x00"
    assert _error(bytes((0x82, len(body))) + body).reason == R.PROTOCOL_ERROR


def test_zero_values_the_spec_forbids() -> None:
    assert _error(_publish_body(b"a", props=b"\x03\x23\x00\x00")).reason == R.TOPIC_ALIAS_INVALID
    assert _error(_publish_body(b"a", props=b"\x02\x0b\x00")).reason == R.PROTOCOL_ERROR
    connect = encode(pk.Connect("c", 5), V5)
    # Receive Maximum 0 in CONNECT: rebuild with the property block "03 21 00 00"
    body = connect[2:12] + b"\x03\x21\x00\x00" + connect[13:]
    assert _error(bytes((0x10, len(body))) + body, None).reason == R.PROTOCOL_ERROR


def test_boolean_property_out_of_range_is_a_protocol_error() -> None:
    assert _error(_publish_body(b"a", props=b"\x02\x01\x02")).reason == R.PROTOCOL_ERROR


def test_properties_running_past_the_packet_are_malformed() -> None:
    assert _error(_publish_body(b"a", props=b"\x7f\x03")).reason == R.MALFORMED_PACKET


def test_unknown_reason_code_is_malformed() -> None:
    assert _error("4003000a05").reason == R.MALFORMED_PACKET


def test_encode_refuses_what_cannot_be_on_the_wire() -> None:
    with pytest.raises(ValueError):
        encode(pk.Publish("a", b"", 1), V5)  # QoS 1 without packet id
    with pytest.raises(ValueError):
        encode(pk.Publish("a", b"", 0, packet_id=1), V5)
    with pytest.raises(ValueError):
        encode(pk.Auth(), V311)
    with pytest.raises(ValueError):
        encode(pk.Connect("c", 5), V311)
    with pytest.raises(ValueError):
        encode(pk.Publish("a" * 70000, b""), V5)
    assert encode(pk.Publish("a", b"", properties=pp.PublishProperties()), V5) == bytes.fromhex("300400016100")


def test_errors_in_the_buffered_path_do_not_pin_the_buffer() -> None:
    """Bodies are read in place from a view of the buffer; an error (ill-formed UTF-8 here) must not keep
    that view alive, or the buffer could not be trimmed (BufferError instead of the codec error)."""
    good = encode(pk.Publish("a/b", b"x", 1, packet_id=1), V5)
    bad = _publish_body(b"\xed\xa0\x80", props=b"\x04\x03\x00\x01\xff")
    decoder = Decoder(V5)
    assert decoder.feed(good[:3]) == []
    assert decoder.feed(good[3:] + bad + good) == [pk.Publish("a/b", b"x", 1, packet_id=1)]
    with pytest.raises(MqttProtocolError):
        decoder.feed(b"")
    decoder = Decoder(V5)
    decoder.feed(bad[:2])
    with pytest.raises(MqttProtocolError):
        decoder.feed(bad[2:])
