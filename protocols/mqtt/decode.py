"""Decoding one packet body (spec chapter 3). `decode_body` is the single entry point; the incremental
framing lives in `protocols.mqtt.decoder`."""

from __future__ import annotations

from collections.abc import Callable

from protocols.mqtt import packets as pk
from protocols.mqtt import properties as pp
from protocols.mqtt.propcodec import read_properties
from protocols.mqtt.reason import ConnackReturnCode, MqttProtocolError, ProtocolVersion, ReasonCode
from protocols.mqtt.wire import (
    Buffer,
    check_topic_filter,
    check_topic_name,
    decode_utf8,
    malformed,
    protocol_error,
    read_binary,
    read_string,
    read_u16,
)

V5 = ProtocolVersion.V5

_REASONS = {r.value: r for r in ReasonCode}


def _reason(value: int) -> ReasonCode:
    reason = _REASONS.get(value)
    if reason is None:
        raise malformed(f"unknown reason code 0x{value:02X}")
    return reason


def _packet_id(body: bytes, end: int) -> int:
    pid = read_u16(body, 0, end)
    if pid == 0:
        raise protocol_error("packet identifier 0")
    return pid


def decode_publish(flags: int, src: Buffer, start: int, end: int, v5: bool) -> pk.Publish:
    """The hot path: a PUBLISH body at src[start:end], read in place (the payload is the one copy), no
    property parsing when there are none."""
    qos = (flags >> 1) & 3
    if qos == 3:
        raise malformed("PUBLISH with QoS 3")
    if end - start < 2:
        raise malformed("truncated PUBLISH")
    pos = start + 2 + ((src[start] << 8) | src[start + 1])
    if pos > end:
        raise malformed("PUBLISH topic runs past its packet")
    try:
        topic = str(src[start + 2 : pos], "utf-8")
    except UnicodeDecodeError:
        topic = decode_utf8(src[start + 2 : pos])  # raises the precise error
    if "\x00" in topic:
        raise malformed("topic contains U+0000")
    packet_id = None
    if qos:
        if pos + 2 > end:
            raise malformed("PUBLISH without packet identifier")
        packet_id = (src[pos] << 8) | src[pos + 1]
        if packet_id == 0:
            raise protocol_error("packet identifier 0")
        pos += 2
    props = pp.EMPTY_PUBLISH
    if v5:
        if pos < end and src[pos] == 0:
            pos += 1
        else:
            props, pos = read_properties(src, pos, end, pp.PublishProperties)
    if not topic:
        if not v5:
            raise MqttProtocolError(ReasonCode.TOPIC_NAME_INVALID, "empty topic name")
        if props.topic_alias is None:
            raise protocol_error("empty topic name without a topic alias")
    elif "+" in topic or "#" in topic:
        check_topic_name(topic)
    if qos == 0 and flags & 0x08:
        raise malformed("DUP set on a QoS 0 PUBLISH")
    return pk.new_publish(topic, bytes(src[pos:end]), qos, bool(flags & 1), bool(flags & 8), packet_id, props)


def decode_connect(body: bytes) -> pk.Connect:
    end = len(body)
    name, pos = read_string(body, 0, end)
    if pos >= end:
        raise malformed("truncated CONNECT")
    level = body[pos]
    if name not in ("MQTT", "MQIsdp"):
        raise malformed(f"unknown protocol name {name!r}")
    if name == "MQIsdp" or level not in (4, 5):
        raise MqttProtocolError(
            ReasonCode.UNSUPPORTED_PROTOCOL_VERSION, f"protocol {name!r} level {level}", protocol_level=level
        )
    v5 = level == 5
    if pos + 4 > end:
        raise malformed("truncated CONNECT")
    flags = body[pos + 1]
    keepalive = (body[pos + 2] << 8) | body[pos + 3]
    pos += 4
    if flags & 0x01:
        raise malformed("reserved CONNECT flag set")
    will_flag = bool(flags & 0x04)
    will_qos = (flags >> 3) & 3
    will_retain = bool(flags & 0x20)
    if will_qos == 3:
        raise malformed("Will QoS 3")
    if not will_flag and (will_qos or will_retain):
        raise malformed("Will QoS/retain without a Will")
    has_password = bool(flags & 0x40)
    has_username = bool(flags & 0x80)
    if has_password and not has_username and not v5:
        raise malformed("password without user name")
    props = pp.EMPTY_CONNECT
    if v5:
        props, pos = read_properties(body, pos, end, pp.ConnectProperties)
        if props.authentication_data is not None and props.authentication_method is None:
            raise protocol_error("authentication data without authentication method")
    client_id, pos = read_string(body, pos, end)
    will = None
    if will_flag:
        will_props = pp.EMPTY_WILL
        if v5:
            will_props, pos = read_properties(body, pos, end, pp.WillProperties)
        will_topic, pos = read_string(body, pos, end)
        check_topic_name(will_topic)
        will_payload, pos = read_binary(body, pos, end)
        will = pk.Will(will_topic, will_payload, will_qos, will_retain, will_props)
    username = None
    password = None
    if has_username:
        username, pos = read_string(body, pos, end)
    if has_password:
        password, pos = read_binary(body, pos, end)
    if pos != end:
        raise malformed("trailing bytes after CONNECT payload")
    return pk.Connect(client_id, level, bool(flags & 0x02), keepalive, username, password, will, props, name)


def _connack(flags: int, body: bytes, v5: bool) -> pk.Connack:
    end = len(body)
    if end < 2:
        raise malformed("truncated CONNACK")
    if body[0] & 0xFE:
        raise malformed("reserved CONNACK flag set")
    if not v5:
        if end != 2:
            raise malformed("CONNACK with trailing bytes")
        try:
            code: int = ConnackReturnCode(body[1])
        except ValueError:
            raise malformed(f"unknown CONNACK return code {body[1]}") from None
        return pk.Connack(code, bool(body[0] & 1))
    props, pos = read_properties(body, 2, end, pp.ConnackProperties)
    if pos != end:
        raise malformed("trailing bytes after CONNACK")
    return pk.Connack(_reason(body[1]), bool(body[0] & 1), props)


_AckType = type[pk.PubAck] | type[pk.PubRec] | type[pk.PubRel] | type[pk.PubComp]


def _ack(cls: _AckType, body: bytes, v5: bool) -> pk.Packet:
    end = len(body)
    pid = _packet_id(body, end)
    if not v5 or end == 2:
        if end != 2:
            raise malformed(f"{cls.__name__} with trailing bytes")
        return cls(pid)
    reason = _reason(body[2])
    props = pp.EMPTY_ACK
    if end > 3:
        props, pos = read_properties(body, 3, end, pp.AckProperties)
        if pos != end:
            raise malformed(f"trailing bytes after {cls.__name__}")
    return cls(pid, reason, props)


def _subscribe(body: bytes, v5: bool) -> pk.Subscribe:
    end = len(body)
    pid = _packet_id(body, end)
    pos = 2
    props = pp.EMPTY_SUBSCRIBE
    if v5:
        props, pos = read_properties(body, pos, end, pp.SubscribeProperties)
    subs: list[pk.Subscription] = []
    while pos < end:
        topic_filter, pos = read_string(body, pos, end)
        if pos >= end:
            raise malformed("topic filter without subscription options")
        options = body[pos]
        pos += 1
        qos = options & 3
        if qos == 3:
            raise malformed("subscription with QoS 3")
        if options & (0xC0 if v5 else 0xFC):
            raise malformed("reserved subscription option bits set")
        retain_handling = (options >> 4) & 3
        if retain_handling == 3:
            raise protocol_error("retain handling 3")
        check_topic_filter(topic_filter)
        no_local = bool(options & 4)
        if no_local and topic_filter.startswith("$share/"):
            raise protocol_error("no local on a shared subscription")
        subs.append(pk.Subscription(topic_filter, qos, no_local, bool(options & 8), retain_handling))
    if not subs:
        raise protocol_error("SUBSCRIBE without topic filters")
    return pk.Subscribe(pid, tuple(subs), props)


def _suback(body: bytes, v5: bool) -> pk.SubAck:
    end = len(body)
    pid = read_u16(body, 0, end)
    pos = 2
    props = pp.EMPTY_ACK
    if v5:
        props, pos = read_properties(body, pos, end, pp.AckProperties)
        codes: tuple[int, ...] = tuple(_reason(b) for b in body[pos:end])
    else:
        codes = tuple(body[pos:end])
        if any(c not in (0, 1, 2, 0x80) for c in codes):
            raise malformed("unknown SUBACK return code")
    if not codes:
        raise protocol_error("SUBACK without return codes")
    return pk.SubAck(pid, codes, props)


def _unsubscribe(body: bytes, v5: bool) -> pk.Unsubscribe:
    end = len(body)
    pid = _packet_id(body, end)
    pos = 2
    props = pp.EMPTY_UNSUBSCRIBE
    if v5:
        props, pos = read_properties(body, pos, end, pp.UnsubscribeProperties)
    filters: list[str] = []
    while pos < end:
        topic_filter, pos = read_string(body, pos, end)
        check_topic_filter(topic_filter)
        filters.append(topic_filter)
    if not filters:
        raise protocol_error("UNSUBSCRIBE without topic filters")
    return pk.Unsubscribe(pid, tuple(filters), props)


def _unsuback(body: bytes, v5: bool) -> pk.UnsubAck:
    end = len(body)
    pid = read_u16(body, 0, end)
    if not v5:
        if end != 2:
            raise malformed("UNSUBACK with trailing bytes")
        return pk.UnsubAck(pid)
    props, pos = read_properties(body, 2, end, pp.AckProperties)
    codes = tuple(_reason(b) for b in body[pos:end])
    if not codes:
        raise protocol_error("UNSUBACK without reason codes")
    return pk.UnsubAck(pid, codes, props)


def _disconnect(body: bytes, v5: bool) -> pk.Disconnect:
    end = len(body)
    if not v5 or end == 0:
        if end:
            raise malformed("DISCONNECT with a body")
        return pk.Disconnect()
    reason = _reason(body[0])
    props = pp.EMPTY_DISCONNECT
    if end > 1:
        props, pos = read_properties(body, 1, end, pp.DisconnectProperties)
        if pos != end:
            raise malformed("trailing bytes after DISCONNECT")
    return pk.Disconnect(reason, props)


def _auth(body: bytes, v5: bool) -> pk.Auth:
    if not v5:
        raise malformed("AUTH is not an MQTT 3.1.1 packet")
    end = len(body)
    if end == 0:
        return pk.Auth()
    reason = _reason(body[0])
    props = pp.EMPTY_AUTH
    if end > 1:
        props, pos = read_properties(body, 1, end, pp.AuthProperties)
        if pos != end:
            raise malformed("trailing bytes after AUTH")
    return pk.Auth(reason, props)


def _empty(packet: pk.PingReq | pk.PingResp) -> Callable[[bytes, bool], pk.Packet]:
    def decode(body: bytes, v5: bool) -> pk.Packet:
        if body:
            raise malformed(f"{type(packet).__name__} with a body")
        return packet

    return decode


_BODY: dict[int, Callable[[bytes, bool], pk.Packet]] = {
    2: lambda b, v5: _connack(0, b, v5),
    4: lambda b, v5: _ack(pk.PubAck, b, v5),
    5: lambda b, v5: _ack(pk.PubRec, b, v5),
    6: lambda b, v5: _ack(pk.PubRel, b, v5),
    7: lambda b, v5: _ack(pk.PubComp, b, v5),
    8: _subscribe,
    9: _suback,
    10: _unsubscribe,
    11: _unsuback,
    12: _empty(pk.PINGREQ),
    13: _empty(pk.PINGRESP),
    14: _disconnect,
    15: _auth,
}

#: the fixed header flags each packet type must carry (spec 2.1.3); PUBLISH's are free
REQUIRED_FLAGS = {1: 0, 2: 0, 4: 0, 5: 0, 6: 2, 7: 0, 8: 2, 9: 0, 10: 2, 11: 0, 12: 0, 13: 0, 14: 0, 15: 0}


def decode_body(first: int, body: bytes, version: int | None) -> pk.Packet:
    """Decode one packet given its first byte and body. `version` None means "before CONNECT": only a
    CONNECT is acceptable then."""
    ptype = first >> 4
    flags = first & 0x0F
    if ptype == 3:
        if version is None:
            raise protocol_error("first packet is not CONNECT")
        return decode_publish(flags, body, 0, len(body), version == V5)
    required = REQUIRED_FLAGS.get(ptype)
    if required is None:
        raise malformed(f"reserved packet type {ptype}")
    if flags != required:
        raise malformed(f"invalid fixed header flags 0x{flags:X} for packet type {ptype}")
    if ptype == 1:
        if version is not None:
            raise protocol_error("second CONNECT")
        return decode_connect(body)
    if version is None:
        raise protocol_error("first packet is not CONNECT")
    return _BODY[ptype](body, version == V5)
