"""Micro benchmark of the sans-I/O MQTT codec: packets/s for decoding and encoding a 200-byte PUBLISH
(QoS 0 and 1, MQTT 3.1.1 and 5), and for the server session's receive + PUBACK path.

Run: `.venv/bin/python benchmarks/mqtt_codec.py [--seconds 1.0]`. Prints a table; no assertions."""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

from protocols.mqtt import (
    Connect,
    Decoder,
    ProtocolVersion,
    Publish,
    PublishReceived,
    ServerSession,
    SessionConfig,
    encode,
)

BATCH = 100


def _rate(fn: Callable[[], int], seconds: float, rounds: int = 5) -> float:
    """Packets per CPU second, best of `rounds` (CPU time, so other processes on the machine matter less)."""
    best = 0.0
    for _ in range(rounds):
        done = 0
        start = time.process_time()
        deadline = start + seconds / rounds
        while (now := time.process_time()) < deadline or done == 0:
            done += fn()
        best = max(best, done / max(now - start, 1e-9))
    return best


def _packet(qos: int, version: ProtocolVersion) -> tuple[Publish, bytes]:
    topic = "telemetry/device-0001"
    overhead = len(encode(Publish(topic, b"", qos, packet_id=1 if qos else None), version))
    packet = Publish(topic, b"x" * (200 - overhead - 1), qos, packet_id=1 if qos else None)
    data = encode(packet, version)
    assert len(data) == 200, len(data)  # a 3-byte fixed header once the body passes 127 bytes
    return packet, data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=1.0, help="time per measurement")
    seconds = parser.parse_args().seconds
    rows: list[tuple[str, float]] = []
    for version in (ProtocolVersion.V311, ProtocolVersion.V5):
        name = "3.1.1" if version == ProtocolVersion.V311 else "5"
        for qos in (0, 1):
            packet, data = _packet(qos, version)
            chunk = data * BATCH

            decoder = Decoder(version)

            def decode(decoder: Decoder = decoder, chunk: bytes = chunk) -> int:
                return len(decoder.feed(chunk))

            def decode_one(decoder: Decoder = decoder, data: bytes = data) -> int:
                decoder.feed(data)
                return 1

            def encode_one(packet: Publish = packet, version: ProtocolVersion = version) -> int:
                for _ in range(BATCH):
                    encode(packet, version)
                return BATCH

            session = ServerSession(SessionConfig(receive_maximum=65535), now=0.0)
            session.receive(encode(Connect("bench", protocol_level=version), version), 0.0)
            session.connack(now=0.0)
            session.data_to_send()

            def session_path(session: ServerSession = session, chunk: bytes = chunk) -> int:
                events = session.receive(chunk, 1.0)
                for event in events:
                    if type(event) is PublishReceived and event.publish.packet_id is not None:
                        session.puback(event.publish.packet_id)
                session.data_to_send()
                return len(events)

            label = f"v{name} QoS {qos}"
            rows.append((f"decode   {label} ({BATCH} per chunk)", _rate(decode, seconds)))
            rows.append((f"decode   {label} (1 per chunk)", _rate(decode_one, seconds)))
            rows.append((f"encode   {label}", _rate(encode_one, seconds)))
            rows.append((f"session  {label} receive+puback ({BATCH} per chunk)", _rate(session_path, seconds)))
    width = max(len(label) for label, _ in rows)
    print(f"{'200-byte PUBLISH':<{width}}  packets per CPU second")
    for label, rate in rows:
        print(f"{label:<{width}}  {rate:>12,.0f}")


if __name__ == "__main__":
    main()
