"""Encoding packets to bytes (spec chapter 3). `encode(packet, version)` is the one entry point.

Encoding our own packets: a packet that cannot be put on the wire (a field out of range) raises
`ValueError`, never a malformed packet."""

from __future__ import annotations

from protocols.mqtt import packets as pk
from protocols.mqtt import properties as pp
from protocols.mqtt.propcodec import write_properties
from protocols.mqtt.reason import ProtocolVersion
from protocols.mqtt.wire import binary, string, u16, vbi

V5 = ProtocolVersion.V5


def _frame(first: int, body: bytes | bytearray) -> bytes:
    n = len(body)
    if n < 128:
        return bytes((first, n)) + body
    return bytes((first,)) + vbi(n) + body


def _pid(value: int | None) -> bytes:
    if value is None or not 0 < value <= 0xFFFF:
        raise ValueError(f"packet identifier {value!r} out of range 1..65535")
    return value.to_bytes(2, "big")


def encode_publish(packet: pk.Publish, v5: bool) -> bytes:
    qos = packet.qos
    if qos not in (0, 1, 2):
        raise ValueError(f"QoS {qos}")
    first = 0x30 | (qos << 1) | (8 if packet.dup else 0) | (1 if packet.retain else 0)
    topic = packet.topic.encode("utf-8")
    if len(topic) > 0xFFFF:
        raise ValueError("topic longer than 65535 bytes")
    parts = [len(topic).to_bytes(2, "big"), topic]
    if qos:
        parts.append(_pid(packet.packet_id))
    elif packet.packet_id is not None:
        raise ValueError("packet identifier on a QoS 0 PUBLISH")
    if v5:
        props = packet.properties
        parts.append(b"\x00" if props is pp.EMPTY_PUBLISH else write_properties(props))
    parts.append(packet.payload)
    return _frame(first, b"".join(parts))


def _connect(packet: pk.Connect, v5: bool) -> bytes:
    if packet.protocol_level != (5 if v5 else 4):
        raise ValueError(f"CONNECT level {packet.protocol_level} encoded as {'5' if v5 else '3.1.1'}")
    will = packet.will
    flags = 0x02 if packet.clean_start else 0
    if will is not None:
        flags |= 0x04 | (will.qos << 3) | (0x20 if will.retain else 0)
    if packet.password is not None:
        flags |= 0x40
    if packet.username is not None:
        flags |= 0x80
    body = bytearray(string(packet.protocol_name))
    body += bytes((packet.protocol_level, flags))
    body += u16(packet.keepalive)
    if v5:
        body += write_properties(packet.properties)
    body += string(packet.client_id)
    if will is not None:
        if v5:
            body += write_properties(will.properties)
        body += string(will.topic)
        body += binary(will.payload)
    if packet.username is not None:
        body += string(packet.username)
    if packet.password is not None:
        body += binary(packet.password)
    return _frame(0x10, body)


def _connack(packet: pk.Connack, v5: bool) -> bytes:
    body = bytes((1 if packet.session_present else 0, int(packet.reason_code)))
    if v5:
        body += write_properties(packet.properties)
    return _frame(0x20, body)


def _ack(first: int, packet: pk.PubAck | pk.PubRec | pk.PubRel | pk.PubComp, v5: bool) -> bytes:
    pid = _pid(packet.packet_id)
    if not v5:
        return bytes((first, 2)) + pid
    if packet.properties is pp.EMPTY_ACK:
        if packet.reason_code == 0:
            return bytes((first, 2)) + pid
        return bytes((first, 3)) + pid + bytes((packet.reason_code,))
    return _frame(first, pid + bytes((packet.reason_code,)) + write_properties(packet.properties))


def _subscribe(packet: pk.Subscribe, v5: bool) -> bytes:
    body = bytearray(_pid(packet.packet_id))
    if v5:
        body += write_properties(packet.properties)
    for sub in packet.subscriptions:
        body += string(sub.topic_filter)
        options = sub.qos
        if v5:
            options |= (4 if sub.no_local else 0) | (8 if sub.retain_as_published else 0)
            options |= sub.retain_handling << 4
        body.append(options)
    return _frame(0x82, body)


def _suback(packet: pk.SubAck, v5: bool) -> bytes:
    body = bytearray(_pid(packet.packet_id))
    if v5:
        body += write_properties(packet.properties)
    body += bytes(int(c) for c in packet.reason_codes)
    return _frame(0x90, body)


def _unsubscribe(packet: pk.Unsubscribe, v5: bool) -> bytes:
    body = bytearray(_pid(packet.packet_id))
    if v5:
        body += write_properties(packet.properties)
    for topic_filter in packet.topic_filters:
        body += string(topic_filter)
    return _frame(0xA2, body)


def _unsuback(packet: pk.UnsubAck, v5: bool) -> bytes:
    body = bytearray(_pid(packet.packet_id))
    if v5:
        body += write_properties(packet.properties)
        body += bytes(int(c) for c in packet.reason_codes)
    return _frame(0xB0, body)


def _reason_and_props(first: int, reason: int, props: pp.DisconnectProperties | pp.AuthProperties) -> bytes:
    if props is pp.EMPTY_DISCONNECT or props is pp.EMPTY_AUTH:
        if reason == 0:
            return bytes((first, 0))
        return bytes((first, 1, reason))
    return _frame(first, bytes((reason,)) + write_properties(props))


def encode(packet: pk.Packet, version: ProtocolVersion | int) -> bytes:
    """The wire bytes of `packet` in protocol `version` (4 = 3.1.1, 5). MQTT 5-only content (reason
    codes, properties) is dropped on 3.1.1; AUTH cannot be encoded for 3.1.1."""
    try:
        return _encode(packet, version == V5)
    except OverflowError as exc:
        raise ValueError(f"a field of {type(packet).__name__} is out of range: {exc}") from None


def _encode(packet: pk.Packet, v5: bool) -> bytes:
    match packet:
        case pk.Publish():
            return encode_publish(packet, v5)
        case pk.PubAck():
            return _ack(0x40, packet, v5)
        case pk.Connect():
            return _connect(packet, v5)
        case pk.Connack():
            return _connack(packet, v5)
        case pk.PubRec():
            return _ack(0x50, packet, v5)
        case pk.PubRel():
            return _ack(0x62, packet, v5)
        case pk.PubComp():
            return _ack(0x70, packet, v5)
        case pk.Subscribe():
            return _subscribe(packet, v5)
        case pk.SubAck():
            return _suback(packet, v5)
        case pk.Unsubscribe():
            return _unsubscribe(packet, v5)
        case pk.UnsubAck():
            return _unsuback(packet, v5)
        case pk.PingReq():
            return b"\xc0\x00"
        case pk.PingResp():
            return b"\xd0\x00"
        case pk.Disconnect():
            if not v5:
                return b"\xe0\x00"
            return _reason_and_props(0xE0, packet.reason_code, packet.properties)
        case pk.Auth():
            if not v5:
                raise ValueError("AUTH does not exist in MQTT 3.1.1")
            return _reason_and_props(0xF0, packet.reason_code, packet.properties)
    raise TypeError(f"not an MQTT packet: {packet!r}")
