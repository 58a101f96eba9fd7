"""The server session's configuration, states and the errors its methods raise."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class SessionError(RuntimeError):
    """The shell called a method the session cannot honour now (a programming error or a race the
    shell must handle, e.g. publishing after close)."""


class InflightWindowFull(SessionError):
    """No free slot for another QoS 1 PUBLISH: wait for a `PubackReceived`."""


class PacketTooLargeForClient(SessionError):
    """The PUBLISH exceeds the Maximum Packet Size the client announced; the spec says to drop it and
    behave as if it had been delivered."""


class State(Enum):
    AWAIT_CONNECT = "await_connect"
    AWAIT_CONNACK = "await_connack"
    CONNECTED = "connected"
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class SessionConfig:
    """Server limits. `max_packet_size` bounds incoming packets (advertised on MQTT 5);
    `receive_maximum` bounds the client's unacknowledged QoS 1 PUBLISHes (MQTT 5, advertised);
    `max_inflight` bounds ours (further limited by the client's Receive Maximum);
    `topic_alias_maximum` 0 refuses client topic aliases; `retain_available` False refuses retained
    PUBLISHes on MQTT 5 (advertised)."""

    connect_timeout: float = 15.0
    max_packet_size: int = 256 * 1024
    receive_maximum: int = 64
    max_inflight: int = 32
    topic_alias_maximum: int = 16
    retain_available: bool = True
    keepalive_factor: float = 1.5
