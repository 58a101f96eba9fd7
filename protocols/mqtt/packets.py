"""MQTT 3.1.1 and 5 control packets as frozen dataclasses (one type for both versions; v5-only fields are
simply empty on 3.1.1).

Reason codes: on MQTT 5 they are `ReasonCode` values; on 3.1.1 CONNACK carries a `ConnackReturnCode` and
SUBACK the 3.1.1 return codes (0, 1, 2, 0x80)."""

from __future__ import annotations

from dataclasses import dataclass

from protocols.mqtt.properties import (
    EMPTY_ACK,
    EMPTY_AUTH,
    EMPTY_CONNACK,
    EMPTY_CONNECT,
    EMPTY_DISCONNECT,
    EMPTY_PUBLISH,
    EMPTY_SUBSCRIBE,
    EMPTY_UNSUBSCRIBE,
    EMPTY_WILL,
    AckProperties,
    AuthProperties,
    ConnackProperties,
    ConnectProperties,
    DisconnectProperties,
    PublishProperties,
    SubscribeProperties,
    UnsubscribeProperties,
    WillProperties,
)
from protocols.mqtt.reason import ReasonCode


@dataclass(frozen=True, slots=True)
class Will:
    topic: str
    payload: bytes
    qos: int = 0
    retain: bool = False
    properties: WillProperties = EMPTY_WILL


@dataclass(frozen=True, slots=True)
class Connect:
    """CONNECT. `protocol_level` is 4 (3.1.1) or 5; `clean_start` is 3.1.1's clean session flag."""

    client_id: str
    protocol_level: int = 5
    clean_start: bool = True
    keepalive: int = 0
    username: str | None = None
    password: bytes | None = None
    will: Will | None = None
    properties: ConnectProperties = EMPTY_CONNECT
    protocol_name: str = "MQTT"


@dataclass(frozen=True, slots=True)
class Connack:
    reason_code: int = ReasonCode.SUCCESS
    session_present: bool = False
    properties: ConnackProperties = EMPTY_CONNACK


@dataclass(frozen=True, slots=True)
class Publish:
    """PUBLISH. `packet_id` is set exactly when qos > 0. On MQTT 5 an empty `topic` with a
    `properties.topic_alias` means "the topic this alias was last set to" (the session resolves it)."""

    topic: str
    payload: bytes
    qos: int = 0
    retain: bool = False
    dup: bool = False
    packet_id: int | None = None
    properties: PublishProperties = EMPTY_PUBLISH


_PUBLISH_FIELDS = tuple(
    Publish.__dict__[name].__set__ for name in ("topic", "payload", "qos", "retain", "dup", "packet_id", "properties")
)


def new_publish(
    topic: str, payload: bytes, qos: int, retain: bool, dup: bool, packet_id: int | None,
    properties: PublishProperties,
) -> Publish:
    """``Publish(...)`` for the decoder's hot path: the same object, set through the slot descriptors (a frozen
    dataclass' ``__init__`` makes one ``object.__setattr__`` call per field, about 3x slower)."""
    packet: Publish = object.__new__(Publish)
    s_topic, s_payload, s_qos, s_retain, s_dup, s_packet_id, s_properties = _PUBLISH_FIELDS
    s_topic(packet, topic)
    s_payload(packet, payload)
    s_qos(packet, qos)
    s_retain(packet, retain)
    s_dup(packet, dup)
    s_packet_id(packet, packet_id)
    s_properties(packet, properties)
    return packet


@dataclass(frozen=True, slots=True)
class PubAck:
    packet_id: int
    reason_code: ReasonCode = ReasonCode.SUCCESS
    properties: AckProperties = EMPTY_ACK


@dataclass(frozen=True, slots=True)
class PubRec:
    packet_id: int
    reason_code: ReasonCode = ReasonCode.SUCCESS
    properties: AckProperties = EMPTY_ACK


@dataclass(frozen=True, slots=True)
class PubRel:
    packet_id: int
    reason_code: ReasonCode = ReasonCode.SUCCESS
    properties: AckProperties = EMPTY_ACK


@dataclass(frozen=True, slots=True)
class PubComp:
    packet_id: int
    reason_code: ReasonCode = ReasonCode.SUCCESS
    properties: AckProperties = EMPTY_ACK


@dataclass(frozen=True, slots=True)
class Subscription:
    """One topic filter of a SUBSCRIBE with its options (`no_local`, `retain_as_published` and
    `retain_handling` are MQTT 5 only)."""

    topic_filter: str
    qos: int = 0
    no_local: bool = False
    retain_as_published: bool = False
    retain_handling: int = 0


@dataclass(frozen=True, slots=True)
class Subscribe:
    packet_id: int
    subscriptions: tuple[Subscription, ...]
    properties: SubscribeProperties = EMPTY_SUBSCRIBE


@dataclass(frozen=True, slots=True)
class SubAck:
    packet_id: int
    reason_codes: tuple[int, ...]
    properties: AckProperties = EMPTY_ACK


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    packet_id: int
    topic_filters: tuple[str, ...]
    properties: UnsubscribeProperties = EMPTY_UNSUBSCRIBE


@dataclass(frozen=True, slots=True)
class UnsubAck:
    """UNSUBACK. `reason_codes` is MQTT 5 only (empty on 3.1.1)."""

    packet_id: int
    reason_codes: tuple[int, ...] = ()
    properties: AckProperties = EMPTY_ACK


@dataclass(frozen=True, slots=True)
class PingReq:
    pass


@dataclass(frozen=True, slots=True)
class PingResp:
    pass


@dataclass(frozen=True, slots=True)
class Disconnect:
    """DISCONNECT, both directions. On 3.1.1 it carries nothing."""

    reason_code: ReasonCode = ReasonCode.SUCCESS
    properties: DisconnectProperties = EMPTY_DISCONNECT


@dataclass(frozen=True, slots=True)
class Auth:
    """AUTH (MQTT 5 only). Decoded so the session can refuse it properly."""

    reason_code: ReasonCode = ReasonCode.SUCCESS
    properties: AuthProperties = EMPTY_AUTH


Packet = (
    Connect
    | Connack
    | Publish
    | PubAck
    | PubRec
    | PubRel
    | PubComp
    | Subscribe
    | SubAck
    | Unsubscribe
    | UnsubAck
    | PingReq
    | PingResp
    | Disconnect
    | Auth
)

PINGREQ = PingReq()
PINGRESP = PingResp()
