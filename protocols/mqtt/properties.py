"""MQTT 5 property sets, one frozen dataclass per packet kind (spec 2.2.2).

`None` means "absent"; multi-valued properties are tuples. Each class has an `EMPTY` instance shared by
every packet without properties (the fast path: no allocation, no parsing)."""

from __future__ import annotations

from dataclasses import dataclass

UserProperties = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class WillProperties:
    payload_format_indicator: int | None = None
    message_expiry_interval: int | None = None
    content_type: str | None = None
    response_topic: str | None = None
    correlation_data: bytes | None = None
    will_delay_interval: int | None = None
    user_properties: UserProperties = ()


@dataclass(frozen=True, slots=True)
class ConnectProperties:
    session_expiry_interval: int | None = None
    receive_maximum: int | None = None
    maximum_packet_size: int | None = None
    topic_alias_maximum: int | None = None
    request_response_information: int | None = None
    request_problem_information: int | None = None
    user_properties: UserProperties = ()
    authentication_method: str | None = None
    authentication_data: bytes | None = None


@dataclass(frozen=True, slots=True)
class ConnackProperties:
    session_expiry_interval: int | None = None
    receive_maximum: int | None = None
    maximum_qos: int | None = None
    retain_available: int | None = None
    maximum_packet_size: int | None = None
    assigned_client_identifier: str | None = None
    topic_alias_maximum: int | None = None
    reason_string: str | None = None
    user_properties: UserProperties = ()
    wildcard_subscription_available: int | None = None
    subscription_identifiers_available: int | None = None
    shared_subscription_available: int | None = None
    server_keep_alive: int | None = None
    response_information: str | None = None
    server_reference: str | None = None
    authentication_method: str | None = None
    authentication_data: bytes | None = None


@dataclass(frozen=True, slots=True)
class PublishProperties:
    payload_format_indicator: int | None = None
    message_expiry_interval: int | None = None
    topic_alias: int | None = None
    response_topic: str | None = None
    correlation_data: bytes | None = None
    user_properties: UserProperties = ()
    subscription_identifiers: tuple[int, ...] = ()
    content_type: str | None = None


@dataclass(frozen=True, slots=True)
class AckProperties:
    """Properties of PUBACK, PUBREC, PUBREL, PUBCOMP, SUBACK and UNSUBACK."""

    reason_string: str | None = None
    user_properties: UserProperties = ()


@dataclass(frozen=True, slots=True)
class SubscribeProperties:
    subscription_identifier: int | None = None
    user_properties: UserProperties = ()


@dataclass(frozen=True, slots=True)
class UnsubscribeProperties:
    user_properties: UserProperties = ()


@dataclass(frozen=True, slots=True)
class DisconnectProperties:
    session_expiry_interval: int | None = None
    reason_string: str | None = None
    user_properties: UserProperties = ()
    server_reference: str | None = None


@dataclass(frozen=True, slots=True)
class AuthProperties:
    authentication_method: str | None = None
    authentication_data: bytes | None = None
    reason_string: str | None = None
    user_properties: UserProperties = ()


AnyProperties = (
    WillProperties
    | ConnectProperties
    | ConnackProperties
    | PublishProperties
    | AckProperties
    | SubscribeProperties
    | UnsubscribeProperties
    | DisconnectProperties
    | AuthProperties
)

EMPTY_WILL = WillProperties()
EMPTY_CONNECT = ConnectProperties()
EMPTY_CONNACK = ConnackProperties()
EMPTY_PUBLISH = PublishProperties()
EMPTY_ACK = AckProperties()
EMPTY_SUBSCRIBE = SubscribeProperties()
EMPTY_UNSUBSCRIBE = UnsubscribeProperties()
EMPTY_DISCONNECT = DisconnectProperties()
EMPTY_AUTH = AuthProperties()
