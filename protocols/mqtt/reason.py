"""MQTT 5 reason codes, MQTT 3.1.1 CONNACK return codes, and the codec's one error type."""

from __future__ import annotations

from enum import IntEnum


class ProtocolVersion(IntEnum):
    """The protocol level byte of CONNECT."""

    V311 = 4
    V5 = 5


class ReasonCode(IntEnum):
    """MQTT 5 reason codes (spec 2.4), named as in the spec. 0x00 doubles as Success / Normal
    disconnection / Granted QoS 0."""

    SUCCESS = 0x00
    NORMAL_DISCONNECTION = 0x00
    GRANTED_QOS_0 = 0x00
    GRANTED_QOS_1 = 0x01
    GRANTED_QOS_2 = 0x02
    DISCONNECT_WITH_WILL_MESSAGE = 0x04
    NO_MATCHING_SUBSCRIBERS = 0x10
    NO_SUBSCRIPTION_EXISTED = 0x11
    CONTINUE_AUTHENTICATION = 0x18
    RE_AUTHENTICATE = 0x19
    UNSPECIFIED_ERROR = 0x80
    MALFORMED_PACKET = 0x81
    PROTOCOL_ERROR = 0x82
    IMPLEMENTATION_SPECIFIC_ERROR = 0x83
    UNSUPPORTED_PROTOCOL_VERSION = 0x84
    CLIENT_IDENTIFIER_NOT_VALID = 0x85
    BAD_USER_NAME_OR_PASSWORD = 0x86
    NOT_AUTHORIZED = 0x87
    SERVER_UNAVAILABLE = 0x88
    SERVER_BUSY = 0x89
    BANNED = 0x8A
    SERVER_SHUTTING_DOWN = 0x8B
    BAD_AUTHENTICATION_METHOD = 0x8C
    KEEP_ALIVE_TIMEOUT = 0x8D
    SESSION_TAKEN_OVER = 0x8E
    TOPIC_FILTER_INVALID = 0x8F
    TOPIC_NAME_INVALID = 0x90
    PACKET_IDENTIFIER_IN_USE = 0x91
    PACKET_IDENTIFIER_NOT_FOUND = 0x92
    RECEIVE_MAXIMUM_EXCEEDED = 0x93
    TOPIC_ALIAS_INVALID = 0x94
    PACKET_TOO_LARGE = 0x95
    MESSAGE_RATE_TOO_HIGH = 0x96
    QUOTA_EXCEEDED = 0x97
    ADMINISTRATIVE_ACTION = 0x98
    PAYLOAD_FORMAT_INVALID = 0x99
    RETAIN_NOT_SUPPORTED = 0x9A
    QOS_NOT_SUPPORTED = 0x9B
    USE_ANOTHER_SERVER = 0x9C
    SERVER_MOVED = 0x9D
    SHARED_SUBSCRIPTIONS_NOT_SUPPORTED = 0x9E
    CONNECTION_RATE_EXCEEDED = 0x9F
    MAXIMUM_CONNECT_TIME = 0xA0
    SUBSCRIPTION_IDENTIFIERS_NOT_SUPPORTED = 0xA1
    WILDCARD_SUBSCRIPTIONS_NOT_SUPPORTED = 0xA2

    @property
    def is_error(self) -> bool:
        return self.value >= 0x80


#: reason codes a server may put in a DISCONNECT it sends (spec 3.14.2.1)
SERVER_DISCONNECT_REASONS: frozenset[ReasonCode] = frozenset(
    {ReasonCode.SUCCESS}
    | {r for r in ReasonCode if r.value >= 0x80}
    - {
        ReasonCode.UNSUPPORTED_PROTOCOL_VERSION,
        ReasonCode.CLIENT_IDENTIFIER_NOT_VALID,
        ReasonCode.BAD_USER_NAME_OR_PASSWORD,
        ReasonCode.SERVER_UNAVAILABLE,
        ReasonCode.BANNED,
        ReasonCode.BAD_AUTHENTICATION_METHOD,
        ReasonCode.PACKET_IDENTIFIER_IN_USE,
        ReasonCode.PACKET_IDENTIFIER_NOT_FOUND,
    }
)


#: reason codes a CONNACK may carry (spec 3.2.2.2)
CONNACK_REASONS: frozenset[ReasonCode] = frozenset(
    ReasonCode(v) for v in (0x00, *range(0x80, 0x8B), 0x8C, 0x90, 0x95, 0x97, 0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9F)
)


class ConnackReturnCode(IntEnum):
    """MQTT 3.1.1 CONNACK return codes (spec 3.2.2.3)."""

    ACCEPTED = 0
    UNACCEPTABLE_PROTOCOL_VERSION = 1
    IDENTIFIER_REJECTED = 2
    SERVER_UNAVAILABLE = 3
    BAD_USER_NAME_OR_PASSWORD = 4
    NOT_AUTHORIZED = 5


_TO_V311: dict[ReasonCode, ConnackReturnCode] = {
    ReasonCode.SUCCESS: ConnackReturnCode.ACCEPTED,
    ReasonCode.UNSUPPORTED_PROTOCOL_VERSION: ConnackReturnCode.UNACCEPTABLE_PROTOCOL_VERSION,
    ReasonCode.CLIENT_IDENTIFIER_NOT_VALID: ConnackReturnCode.IDENTIFIER_REJECTED,
    ReasonCode.SERVER_UNAVAILABLE: ConnackReturnCode.SERVER_UNAVAILABLE,
    ReasonCode.SERVER_BUSY: ConnackReturnCode.SERVER_UNAVAILABLE,
    ReasonCode.SERVER_SHUTTING_DOWN: ConnackReturnCode.SERVER_UNAVAILABLE,
    ReasonCode.USE_ANOTHER_SERVER: ConnackReturnCode.SERVER_UNAVAILABLE,
    ReasonCode.SERVER_MOVED: ConnackReturnCode.SERVER_UNAVAILABLE,
    ReasonCode.CONNECTION_RATE_EXCEEDED: ConnackReturnCode.SERVER_UNAVAILABLE,
    ReasonCode.QUOTA_EXCEEDED: ConnackReturnCode.SERVER_UNAVAILABLE,
    ReasonCode.BAD_USER_NAME_OR_PASSWORD: ConnackReturnCode.BAD_USER_NAME_OR_PASSWORD,
    ReasonCode.BAD_AUTHENTICATION_METHOD: ConnackReturnCode.BAD_USER_NAME_OR_PASSWORD,
    ReasonCode.NOT_AUTHORIZED: ConnackReturnCode.NOT_AUTHORIZED,
    ReasonCode.BANNED: ConnackReturnCode.NOT_AUTHORIZED,
}


def to_v311_connack(reason: ReasonCode) -> ConnackReturnCode:
    """The nearest MQTT 3.1.1 CONNACK return code for an MQTT 5 CONNACK reason.

    Errors without a close counterpart (malformed, protocol error, implementation specific, unspecified,
    packet too large...) map to 3 "server unavailable", the v3.1.1 code that blames nobody."""
    code = _TO_V311.get(reason)
    if code is not None:
        return code
    return ConnackReturnCode.SERVER_UNAVAILABLE


class MqttProtocolError(Exception):
    """The one error the codec raises: the peer sent something the spec forbids.

    `reason` is the MQTT 5 reason code the server should answer with (DISCONNECT, or CONNACK while
    connecting; an MQTT 3.1.1 server just closes). `protocol_level` is set for
    UNSUPPORTED_PROTOCOL_VERSION (so the server can answer in a format the client understands)."""

    def __init__(self, reason: ReasonCode, message: str, *, protocol_level: int | None = None) -> None:
        super().__init__(f"{reason.name} (0x{reason.value:02X}): {message}")
        self.reason = reason
        self.message = message
        self.protocol_level = protocol_level
