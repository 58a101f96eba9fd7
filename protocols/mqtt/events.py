"""What the server session tells its I/O shell (see `protocols.mqtt.session.ServerSession`)."""

from __future__ import annotations

from dataclasses import dataclass

from protocols.mqtt.packets import Connect, Publish, Subscribe, Unsubscribe
from protocols.mqtt.properties import EMPTY_DISCONNECT, DisconnectProperties
from protocols.mqtt.reason import ProtocolVersion, ReasonCode


@dataclass(frozen=True, slots=True)
class ConnectReceived:
    """A valid CONNECT. Answer with `session.connack(...)` (success or refusal); until then nothing after
    the CONNECT is decoded (pause reading meanwhile). `persistent_session` is True when the client asks for
    state that outlives the connection (3.1.1 clean session 0; MQTT 5 clean start 0 or a session expiry
    interval > 0): refuse it if sessions are not kept."""

    connect: Connect
    version: ProtocolVersion
    persistent_session: bool


@dataclass(frozen=True, slots=True)
class PublishReceived:
    """An application message from the client, its topic alias already resolved. For QoS 1 call
    `session.puback(publish.packet_id, ...)` once the message is safe (in the order received)."""

    publish: Publish


_SET_PUBLISH = PublishReceived.__dict__["publish"].__set__


def publish_received(publish: Publish) -> PublishReceived:
    """``PublishReceived(publish)`` for the session's hot path (see :func:`protocols.mqtt.packets.new_publish`)."""
    event: PublishReceived = object.__new__(PublishReceived)
    _SET_PUBLISH(event, publish)
    return event


@dataclass(frozen=True, slots=True)
class SubscribeReceived:
    """Answer with `session.suback(packet_id, [one reason code per filter])`."""

    subscribe: Subscribe


@dataclass(frozen=True, slots=True)
class UnsubscribeReceived:
    """Answer with `session.unsuback(packet_id, ...)`."""

    unsubscribe: Unsubscribe


@dataclass(frozen=True, slots=True)
class PubackReceived:
    """The client acknowledged our QoS 1 PUBLISH `packet_id`; its slot in the in-flight window is free."""

    packet_id: int
    reason_code: ReasonCode


@dataclass(frozen=True, slots=True)
class DisconnectReceived:
    """The client said goodbye; the session is closed, close the transport. `publish_will` is True only for
    MQTT 5 reason 0x04 "Disconnect with Will Message" (a normal DISCONNECT discards the Will)."""

    reason_code: ReasonCode = ReasonCode.SUCCESS
    properties: DisconnectProperties = EMPTY_DISCONNECT

    @property
    def publish_will(self) -> bool:
        return self.reason_code == ReasonCode.DISCONNECT_WITH_WILL_MESSAGE


@dataclass(frozen=True, slots=True)
class ProtocolViolation:
    """The session ended abnormally (malformed or forbidden packet, CONNECT or keep-alive timeout). What
    the client should be told (MQTT 5 DISCONNECT / CONNACK) is already queued in `data_to_send()`: write
    it, then close the transport. The Will, if any, applies."""

    reason: ReasonCode
    message: str


Event = (
    ConnectReceived
    | PublishReceived
    | SubscribeReceived
    | UnsubscribeReceived
    | PubackReceived
    | DisconnectReceived
    | ProtocolViolation
)
