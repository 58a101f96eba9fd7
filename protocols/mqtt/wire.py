"""Wire primitives (spec 1.5): variable byte integers, length-prefixed strings and binary data, and the
topic name / topic filter rules (spec 4.7). Readers raise `MqttProtocolError`, writers `ValueError`."""

from __future__ import annotations

from protocols.mqtt.reason import MqttProtocolError, ReasonCode

MAX_VBI = 268_435_455

#: what readers read from: a packet body, or a view of the decoder's buffer (no copy of the packet)
Buffer = bytes | memoryview

_MALFORMED = ReasonCode.MALFORMED_PACKET


def malformed(message: str) -> MqttProtocolError:
    return MqttProtocolError(_MALFORMED, message)


def protocol_error(message: str) -> MqttProtocolError:
    return MqttProtocolError(ReasonCode.PROTOCOL_ERROR, message)


def read_vbi(data: Buffer, pos: int, end: int) -> tuple[int, int]:
    """A variable byte integer at `pos`: (value, next position). At most 4 bytes; minimal encoding is not
    required."""
    value = 0
    shift = 0
    for i in range(4):
        if pos + i >= end:
            raise malformed("truncated variable byte integer")
        byte = data[pos + i]
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos + i + 1
        shift += 7
    raise malformed("variable byte integer longer than 4 bytes")


def vbi(value: int) -> bytes:
    if value < 128:
        if value < 0:
            raise ValueError("negative variable byte integer")
        return bytes((value,))
    if value > MAX_VBI:
        raise ValueError(f"{value} does not fit a variable byte integer")
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def read_u16(data: Buffer, pos: int, end: int) -> int:
    if pos + 2 > end:
        raise malformed("truncated two byte integer")
    return (data[pos] << 8) | data[pos + 1]


def read_u32(data: Buffer, pos: int, end: int) -> int:
    if pos + 4 > end:
        raise malformed("truncated four byte integer")
    return int.from_bytes(data[pos : pos + 4], "big")


def read_binary(data: Buffer, pos: int, end: int) -> tuple[bytes, int]:
    if pos + 2 > end:
        raise malformed("truncated binary data length")
    stop = pos + 2 + ((data[pos] << 8) | data[pos + 1])
    if stop > end:
        raise malformed("binary data runs past its packet")
    return bytes(data[pos + 2 : stop]), stop


def decode_utf8(raw: Buffer) -> str:
    """Well-formed UTF-8 without U+0000 (surrogates are ill-formed UTF-8 and rejected by the codec)."""
    try:
        text = str(raw, "utf-8")
    except UnicodeDecodeError as exc:
        problem = exc.reason
    else:
        if "\x00" in text:
            raise malformed("UTF-8 string contains U+0000")
        return text
    raise malformed(f"ill-formed UTF-8 string: {problem}")  # outside the handler: no chained exception


def read_string(data: Buffer, pos: int, end: int) -> tuple[str, int]:
    if pos + 2 > end:
        raise malformed("truncated string length")
    stop = pos + 2 + ((data[pos] << 8) | data[pos + 1])
    if stop > end:
        raise malformed("string runs past its packet")
    return decode_utf8(data[pos + 2 : stop]), stop


def binary(value: bytes) -> bytes:
    if len(value) > 0xFFFF:
        raise ValueError("binary data longer than 65535 bytes")
    return len(value).to_bytes(2, "big") + value


def string(value: str) -> bytes:
    return binary(value.encode("utf-8"))


def u16(value: int) -> bytes:
    return value.to_bytes(2, "big")


def check_topic_name(topic: str, *, allow_empty: bool = False) -> None:
    """A PUBLISH / Will topic name: no wildcards, not empty (unless an MQTT 5 topic alias stands for it)."""
    if "+" in topic or "#" in topic:
        raise MqttProtocolError(ReasonCode.TOPIC_NAME_INVALID, f"wildcard in topic name {topic!r}")
    if not topic and not allow_empty:
        raise MqttProtocolError(ReasonCode.TOPIC_NAME_INVALID, "empty topic name")


def check_topic_filter(topic_filter: str) -> None:
    """A topic filter: not empty; `#` alone in the last level; `+` alone in its level; a shared
    subscription `$share/<group>/<filter>` has a group without wildcards and a non-empty filter."""
    if not topic_filter:
        raise MqttProtocolError(ReasonCode.TOPIC_FILTER_INVALID, "empty topic filter")
    if "+" in topic_filter or "#" in topic_filter:
        levels = topic_filter.split("/")
        last = len(levels) - 1
        for i, level in enumerate(levels):
            if ("#" in level and (level != "#" or i != last)) or ("+" in level and level != "+"):
                raise MqttProtocolError(
                    ReasonCode.TOPIC_FILTER_INVALID, f"misplaced wildcard in topic filter {topic_filter!r}"
                )
    if topic_filter.startswith("$share/"):
        parts = topic_filter.split("/", 2)
        if len(parts) < 3 or not parts[1] or parts[1] in ("+", "#") or not parts[2]:
            raise MqttProtocolError(ReasonCode.TOPIC_FILTER_INVALID, f"invalid shared subscription {topic_filter!r}")


def split_shared(topic_filter: str) -> tuple[str | None, str]:
    """`$share/<group>/<filter>` -> (group, filter); any other filter -> (None, filter)."""
    if topic_filter.startswith("$share/"):
        parts = topic_filter.split("/", 2)
        if len(parts) == 3:
            return parts[1], parts[2]
    return None, topic_filter
