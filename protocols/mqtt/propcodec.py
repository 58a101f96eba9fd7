"""Encoding and decoding of MQTT 5 properties (spec 2.2.2) for each packet kind.

An identifier not valid for the packet kind is a Malformed Packet; a second occurrence of a property that
may appear once is a Protocol Error (only User Property, and Subscription Identifier in PUBLISH, repeat)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from protocols.mqtt import properties as p
from protocols.mqtt.reason import MqttProtocolError, ReasonCode
from protocols.mqtt.wire import (
    Buffer,
    binary,
    malformed,
    protocol_error,
    read_binary,
    read_string,
    read_u16,
    read_u32,
    read_vbi,
    string,
    vbi,
)

BYTE, U16, U32, VBI, STR, BIN, PAIR = range(7)

#: identifier -> (field name, kind)
_IDS: dict[int, tuple[str, int]] = {
    0x01: ("payload_format_indicator", BYTE),
    0x02: ("message_expiry_interval", U32),
    0x03: ("content_type", STR),
    0x08: ("response_topic", STR),
    0x09: ("correlation_data", BIN),
    0x0B: ("subscription_identifier", VBI),
    0x11: ("session_expiry_interval", U32),
    0x12: ("assigned_client_identifier", STR),
    0x13: ("server_keep_alive", U16),
    0x15: ("authentication_method", STR),
    0x16: ("authentication_data", BIN),
    0x17: ("request_problem_information", BYTE),
    0x18: ("will_delay_interval", U32),
    0x19: ("request_response_information", BYTE),
    0x1A: ("response_information", STR),
    0x1C: ("server_reference", STR),
    0x1F: ("reason_string", STR),
    0x21: ("receive_maximum", U16),
    0x22: ("topic_alias_maximum", U16),
    0x23: ("topic_alias", U16),
    0x24: ("maximum_qos", BYTE),
    0x25: ("retain_available", BYTE),
    0x26: ("user_properties", PAIR),
    0x27: ("maximum_packet_size", U32),
    0x28: ("wildcard_subscription_available", BYTE),
    0x29: ("subscription_identifiers_available", BYTE),
    0x2A: ("shared_subscription_available", BYTE),
}
_BY_NAME = {name: ident for ident, (name, _) in _IDS.items()}
_BY_NAME["subscription_identifiers"] = 0x0B

#: byte properties whose only valid values are 0 and 1
_BOOLEAN = {0x01, 0x17, 0x19, 0x24, 0x25, 0x28, 0x29, 0x2A}
#: properties where 0 is a Protocol Error
_NONZERO = {0x0B, 0x21, 0x27}

P = TypeVar("P", bound=p.AnyProperties)


class _Spec:
    __slots__ = ("allowed", "cls", "empty", "fields", "multi")

    def __init__(self, cls: type[Any], empty: Any, multi: frozenset[str] = frozenset({"user_properties"})):
        self.cls = cls
        self.empty = empty
        self.fields: tuple[str, ...] = tuple(cls.__dataclass_fields__)
        self.multi = multi
        self.allowed: dict[int, tuple[str, int]] = {}
        for name in self.fields:
            ident = _BY_NAME[name]
            self.allowed[ident] = (name, _IDS[ident][1])


SPECS: dict[type[Any], _Spec] = {
    s.cls: s
    for s in (
        _Spec(p.WillProperties, p.EMPTY_WILL),
        _Spec(p.ConnectProperties, p.EMPTY_CONNECT),
        _Spec(p.ConnackProperties, p.EMPTY_CONNACK),
        _Spec(p.PublishProperties, p.EMPTY_PUBLISH, frozenset({"user_properties", "subscription_identifiers"})),
        _Spec(p.AckProperties, p.EMPTY_ACK),
        _Spec(p.SubscribeProperties, p.EMPTY_SUBSCRIBE),
        _Spec(p.UnsubscribeProperties, p.EMPTY_UNSUBSCRIBE),
        _Spec(p.DisconnectProperties, p.EMPTY_DISCONNECT),
        _Spec(p.AuthProperties, p.EMPTY_AUTH),
    )
}


def read_properties(data: Buffer, pos: int, end: int, cls: type[P]) -> tuple[P, int]:
    """The property block at `pos` (length prefix included) as a `cls`: (properties, next position)."""
    length, pos = read_vbi(data, pos, end)
    if length == 0:
        return SPECS[cls].empty, pos
    stop = pos + length
    if stop > end:
        raise malformed("properties run past their packet")
    spec = SPECS[cls]
    values: dict[str, Any] = {}
    while pos < stop:
        ident, pos = read_vbi(data, pos, stop)
        entry = spec.allowed.get(ident)
        if entry is None:
            raise malformed(f"property 0x{ident:02X} is not valid in {cls.__name__}")
        name, kind = entry
        value: Any
        if kind == BYTE:
            if pos >= stop:
                raise malformed("truncated byte property")
            value = data[pos]
            pos += 1
            if ident in _BOOLEAN and value > 1:
                raise protocol_error(f"property 0x{ident:02X} must be 0 or 1, got {value}")
        elif kind == U16:
            value = read_u16(data, pos, stop)
            pos += 2
        elif kind == U32:
            value = read_u32(data, pos, stop)
            pos += 4
        elif kind == VBI:
            value, pos = read_vbi(data, pos, stop)
        elif kind == STR:
            value, pos = read_string(data, pos, stop)
        elif kind == BIN:
            value, pos = read_binary(data, pos, stop)
        else:
            key, pos = read_string(data, pos, stop)
            val, pos = read_string(data, pos, stop)
            value = (key, val)
        if value == 0 and ident in _NONZERO:
            raise protocol_error(f"property 0x{ident:02X} must not be 0")
        if ident == 0x23 and value == 0:
            raise MqttProtocolError(ReasonCode.TOPIC_ALIAS_INVALID, "topic alias 0")
        if name in spec.multi:
            values.setdefault(name, []).append(value)
        elif name in values:
            raise protocol_error(f"property 0x{ident:02X} appears more than once")
        else:
            values[name] = value
    for name in spec.multi:
        if name in values:
            values[name] = tuple(values[name])
    return spec.cls(**values), stop


_WRITERS: dict[int, Callable[[Any], bytes]] = {
    BYTE: lambda v: bytes((v,)),
    U16: lambda v: v.to_bytes(2, "big"),
    U32: lambda v: v.to_bytes(4, "big"),
    VBI: vbi,
    STR: string,
    BIN: binary,
    PAIR: lambda kv: string(kv[0]) + string(kv[1]),
}


def write_properties(props: p.AnyProperties) -> bytes:
    """The property block of `props`, length prefix included."""
    spec = SPECS[type(props)]
    if props is spec.empty:
        return b"\x00"
    out = bytearray()
    for name in spec.fields:
        value = getattr(props, name)
        if value is None or value == ():
            continue
        ident = _BY_NAME[name]
        kind = _IDS[ident][1]
        prefix = bytes((ident,))
        write = _WRITERS[kind]
        for item in value if name in spec.multi else (value,):
            out += prefix
            out += write(item)
    return vbi(len(out)) + bytes(out)
