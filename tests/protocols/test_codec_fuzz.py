"""Arbitrary and mutated bytes never make the decoder (or the session) raise anything but the codec error."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocols.mqtt import Decoder, MqttProtocolError, ProtocolVersion, ReasonCode, ServerSession, encode
from protocols.mqtt import packets as pk
from protocols.mqtt import properties as pp
from tests.protocols.strategies import V5, V311, splits

FUZZ = settings(max_examples=1200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _feed(decoder: Decoder, chunks: list[bytes]) -> None:
    try:
        for chunk in chunks:
            decoder.feed(chunk)
    except MqttProtocolError as exc:
        assert isinstance(exc.reason, ReasonCode)
        assert exc.reason.is_error


@FUZZ
@given(st.data())
def test_arbitrary_bytes_only_raise_the_codec_error(data: st.DataObject) -> None:
    version = data.draw(st.sampled_from([None, V311, V5]))
    wire = data.draw(st.binary(max_size=200))
    # a CONNECT prefix makes the interesting bodies reachable from a fresh decoder too
    if version is None and data.draw(st.booleans()):
        level = data.draw(st.sampled_from([4, 5]))
        wire = encode(pk.Connect("c", level), level)[: data.draw(st.integers(0, 20))] + wire
    _feed(
        Decoder(version, max_packet_size=data.draw(st.sampled_from([5, 64, 1 << 20]))),
        data.draw(splits(wire)),
    )


def _corpus(version: ProtocolVersion) -> list[bytes]:
    """Valid packets with every field and property kind, as the seeds of the mutations."""
    v5 = version == V5
    user = (("content-mode", "binary"), ("k", "v"))
    items: list[pk.Packet] = [
        pk.Publish("a/b", b"hello", 0),
        pk.Publish("a/b/c", b"x" * 150, 1, True, True, 7),
        pk.PubAck(7),
        pk.Subscribe(3, (pk.Subscription("a/+/#", 1), pk.Subscription("$share/g/app/x", 0))),
        pk.Unsubscribe(4, ("a/+", "#")),
        pk.PINGREQ,
        pk.Disconnect(),
    ]
    if v5:
        items += [
            pk.Publish(
                "t",
                b"{}",
                1,
                packet_id=9,
                properties=pp.PublishProperties(
                    payload_format_indicator=1,
                    message_expiry_interval=60,
                    topic_alias=2,
                    response_topic="r/t",
                    correlation_data=b"\x01\x02",
                    user_properties=user,
                    content_type="application/json",
                ),
            ),
            pk.PubAck(9, ReasonCode.NOT_AUTHORIZED, pp.AckProperties("denied", user)),
            pk.Subscribe(5, (pk.Subscription("app/x", 1, True, True, 2),), pp.SubscribeProperties(12, user)),
            pk.Disconnect(ReasonCode.DISCONNECT_WITH_WILL_MESSAGE, pp.DisconnectProperties(0, "bye", user)),
            pk.Auth(ReasonCode.CONTINUE_AUTHENTICATION, pp.AuthProperties("SCRAM", b"x")),
        ]
    connect = pk.Connect(
        "dev@app",
        int(version),
        True,
        30,
        "dev@app",
        b"secret",
        pk.Will(
            "w/t",
            b"gone",
            1,
            True,
            pp.WillProperties(content_type="text/plain", will_delay_interval=5) if v5 else pp.EMPTY_WILL,
        ),
        pp.ConnectProperties(
            session_expiry_interval=0,
            receive_maximum=10,
            maximum_packet_size=4096,
            topic_alias_maximum=4,
            user_properties=user,
        )
        if v5
        else pp.EMPTY_CONNECT,
    )
    return [encode(connect, version)] + [encode(p, version) for p in items]


CORPUS = {version: _corpus(version) for version in (V311, V5)}


@st.composite
def mutated_streams(draw: st.DrawFn) -> tuple[ProtocolVersion, bytes]:
    """A CONNECT and a few valid packets, then bytes overwritten, flipped, deleted or inserted."""
    version = draw(st.sampled_from([V311, V5]))
    corpus = CORPUS[version]
    parts = [corpus[0], *draw(st.lists(st.sampled_from(corpus[1:]), min_size=1, max_size=4))]
    wire = bytearray(b"".join(parts))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.integers(0, 3))
        pos = draw(st.integers(0, len(wire) - 1))
        if op == 0:
            wire[pos] = draw(st.integers(0, 255))
        elif op == 1:
            wire[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == 2:
            del wire[pos]
        else:
            wire.insert(pos, draw(st.integers(0, 255)))
        if not wire:
            wire.append(0)
    return version, bytes(wire)


@FUZZ
@given(st.data())
def test_mutated_valid_streams_only_raise_the_codec_error(data: st.DataObject) -> None:
    _version, wire = data.draw(mutated_streams())
    _feed(Decoder(), data.draw(splits(wire)))


@settings(max_examples=800, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_session_never_raises(data: st.DataObject) -> None:
    """The session turns every codec error into a ProtocolViolation event."""
    _version, wire = data.draw(mutated_streams())
    session = ServerSession(now=0.0)
    for i, chunk in enumerate(data.draw(splits(wire))):
        session.receive(chunk, float(i))
        if session.state.value == "await_connack":
            session.connack(assigned_client_identifier="x", now=float(i))
        session.poll(float(i))
        session.data_to_send()
