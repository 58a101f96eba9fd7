"""Helpers for the session tests: a connected session, and what it sent, decoded."""

from __future__ import annotations

from protocols.mqtt import (
    ConnectProperties,
    ConnectReceived,
    Decoder,
    ProtocolVersion,
    ServerSession,
    SessionConfig,
    encode,
)
from protocols.mqtt import packets as pk
from protocols.mqtt import properties as pp

V311 = ProtocolVersion.V311
V5 = ProtocolVersion.V5


def connected(
    version: ProtocolVersion = V5,
    *,
    keepalive: int = 0,
    config: SessionConfig | None = None,
    props: ConnectProperties = pp.EMPTY_CONNECT,
) -> ServerSession:
    session = ServerSession(config, now=0.0)
    [event] = session.receive(
        encode(pk.Connect("c", int(version), keepalive=keepalive, properties=props), version), 0.0
    )
    assert isinstance(event, ConnectReceived)
    assert session.connack(now=0.0) == []
    session.data_to_send()
    return session


def sent(session: ServerSession, version: ProtocolVersion = V5) -> list[pk.Packet]:
    return Decoder(version).feed(session.data_to_send())
