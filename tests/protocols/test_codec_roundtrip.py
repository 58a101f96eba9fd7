"""encode -> decode is the identity for every packet type in both versions, whatever the chunking."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocols.mqtt import Decoder, ProtocolVersion, encode
from protocols.mqtt import packets as pk
from tests.protocols.strategies import V5, V311, connects, packets, splits

FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _decode_all(chunks: list[bytes], decoder: Decoder) -> list[pk.Packet]:
    out: list[pk.Packet] = []
    for chunk in chunks:
        out.extend(decoder.feed(chunk))
    return out


@FAST
@given(st.data())
def test_connect_roundtrip_both_versions(data: st.DataObject) -> None:
    version = data.draw(st.sampled_from([V311, V5]))
    connect = data.draw(connects(version))
    wire = encode(connect, version)
    decoder = Decoder()
    assert decoder.feed(wire) == [connect]
    assert decoder.version == version


@FAST
@given(packet=packets(V311))
def test_v311_packet_roundtrip(packet: pk.Packet) -> None:
    assert Decoder(ProtocolVersion.V311).feed(encode(packet, ProtocolVersion.V311)) == [packet]


@FAST
@given(packet=packets(V5))
def test_v5_packet_roundtrip(packet: pk.Packet) -> None:
    assert Decoder(ProtocolVersion.V5).feed(encode(packet, ProtocolVersion.V5)) == [packet]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_stream_after_connect_in_random_chunks(data: st.DataObject) -> None:
    """A CONNECT then many packets, cut anywhere: the version switches at the CONNECT and nothing is lost."""
    version = data.draw(st.sampled_from([V311, V5]))
    connect = data.draw(connects(version))
    rest = data.draw(st.lists(packets(version), max_size=5))
    wire = encode(connect, version) + b"".join(encode(p, version) for p in rest)
    chunks = data.draw(splits(wire))
    decoder = Decoder()
    assert _decode_all(chunks, decoder) == [connect, *rest]
    assert decoder.buffered == 0


def test_large_packet_one_byte_at_a_time_is_linear() -> None:
    """A 1 MB PUBLISH fed in 1 kB chunks decodes once, with the buffer trimmed (no quadratic copies)."""
    packet = pk.Publish("big", b"x" * 1_000_000)
    wire = encode(packet, V5)
    decoder = Decoder(V5, max_packet_size=2_000_000)
    got: list[pk.Packet] = []
    for i in range(0, len(wire), 1024):
        got.extend(decoder.feed(wire[i : i + 1024]))
    assert got == [packet]
    assert decoder.buffered == 0
