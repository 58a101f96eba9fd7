"""Client-side MQTT bytes for the load generator, built once with :func:`protocols.mqtt.encode`.

A PUBLISH frame of a fixed-size payload differs between messages only in the packet identifier (QoS 1) and
the payload, so :class:`PublishTemplate` encodes one frame and splices those in. :func:`split_frames` cuts the
server's byte stream into packets (the load generator only looks at the first byte of each).
"""

from __future__ import annotations

from dataclasses import dataclass

from protocols.mqtt import Connect, Disconnect, Publish, encode

CONNACK, PUBACK, PINGRESP, DISCONNECT = 0x20, 0x40, 0xD0, 0xE0


def connect_bytes(client_id: str, username: str, password: str, version: int, keepalive: int = 0) -> bytes:
    return encode(Connect(client_id, version, clean_start=True, keepalive=keepalive, username=username,
                          password=password.encode()), version)


def disconnect_bytes(version: int) -> bytes:
    return encode(Disconnect(), version)


class PublishTemplate:
    """PUBLISH frames to ``topic`` at ``qos`` for payloads of exactly ``payload_size`` bytes."""

    def __init__(self, topic: str, qos: int, version: int, payload_size: int) -> None:
        self.qos = qos
        frame = encode(Publish(topic, b"\0" * payload_size, qos, packet_id=1 if qos else None), version)
        body_at = len(frame) - payload_size
        if qos:
            pid_at = len(frame) - payload_size - (3 if version == 5 else 2)
            self._head, self._mid = frame[:pid_at], frame[pid_at + 2:body_at]
        else:
            self._head, self._mid = frame[:body_at], b""

    def frame(self, payload: bytes, packet_id: int = 0) -> bytes:
        if self.qos:
            return self._head + packet_id.to_bytes(2, "big") + self._mid + payload
        return self._head + payload


@dataclass(frozen=True, slots=True)
class Frame:
    kind: int  # the packet type nibble shifted back: 0x20 CONNACK, 0x40 PUBACK, ...
    body: bytes


def split_frames(buf: bytearray) -> list[Frame]:
    """Remove every complete packet from the front of ``buf`` and return them (a partial one stays)."""
    out: list[Frame] = []
    pos, n = 0, len(buf)
    while pos + 2 <= n:
        length, mult, i = 0, 1, pos + 1
        while True:
            if i >= n:
                del buf[:pos]
                return out
            byte = buf[i]
            length += (byte & 0x7F) * mult
            i += 1
            if not byte & 0x80:
                break
            mult *= 128
            if mult > 128 ** 3:
                raise ValueError("malformed remaining length from the server")
        if i + length > n:
            break
        out.append(Frame(buf[pos] & 0xF0, bytes(buf[i:i + length])))
        pos = i + length
    del buf[:pos]
    return out
