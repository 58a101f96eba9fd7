"""Hypothesis strategies generating valid MQTT packets for each protocol version."""

from __future__ import annotations

import itertools
from typing import Any

from hypothesis import strategies as st

from protocols.mqtt import packets as pk
from protocols.mqtt import properties as pp
from protocols.mqtt.reason import ConnackReturnCode, ProtocolVersion, ReasonCode

V311 = ProtocolVersion.V311
V5 = ProtocolVersion.V5

#: valid MQTT strings: no surrogates, no U+0000
text = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), max_size=12)
_level = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00+#/"), max_size=6)
topic_names = st.lists(_level, min_size=1, max_size=4).map("/".join).filter(bool)


@st.composite
def topic_filters(draw: st.DrawFn) -> str:
    levels = draw(st.lists(st.one_of(_level, st.just("+")), min_size=1, max_size=4))
    if draw(st.booleans()):
        levels.append("#")
    result = "/".join(levels)
    if not result:
        return "#"
    if draw(st.integers(0, 5)) == 0:
        group = draw(_level.filter(bool))
        return f"$share/{group}/{result}"
    return result


u16 = st.integers(0, 0xFFFF)
u16_nonzero = st.integers(1, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)
u32_nonzero = st.integers(1, 0xFFFFFFFF)
vbi_nonzero = st.integers(1, 268_435_455)
flag = st.sampled_from([0, 1])
blob = st.binary(max_size=16)
user_properties = st.lists(st.tuples(text, text), max_size=3).map(tuple)
packet_ids = st.integers(1, 0xFFFF)
reasons = st.sampled_from(list(ReasonCode))


def _opt(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.none() | strategy


will_properties = st.builds(
    pp.WillProperties,
    payload_format_indicator=_opt(flag),
    message_expiry_interval=_opt(u32),
    content_type=_opt(text),
    response_topic=_opt(topic_names),
    correlation_data=_opt(blob),
    will_delay_interval=_opt(u32),
    user_properties=user_properties,
)


@st.composite
def connect_properties(draw: st.DrawFn) -> pp.ConnectProperties:
    method = draw(_opt(text))
    return pp.ConnectProperties(
        session_expiry_interval=draw(_opt(u32)),
        receive_maximum=draw(_opt(u16_nonzero)),
        maximum_packet_size=draw(_opt(u32_nonzero)),
        topic_alias_maximum=draw(_opt(u16)),
        request_response_information=draw(_opt(flag)),
        request_problem_information=draw(_opt(flag)),
        user_properties=draw(user_properties),
        authentication_method=method,
        authentication_data=None if method is None else draw(_opt(blob)),
    )


connack_properties = st.builds(
    pp.ConnackProperties,
    session_expiry_interval=_opt(u32),
    receive_maximum=_opt(u16_nonzero),
    maximum_qos=_opt(flag),
    retain_available=_opt(flag),
    maximum_packet_size=_opt(u32_nonzero),
    assigned_client_identifier=_opt(text),
    topic_alias_maximum=_opt(u16),
    reason_string=_opt(text),
    user_properties=user_properties,
    wildcard_subscription_available=_opt(flag),
    subscription_identifiers_available=_opt(flag),
    shared_subscription_available=_opt(flag),
    server_keep_alive=_opt(u16),
    response_information=_opt(text),
    server_reference=_opt(text),
    authentication_method=_opt(text),
    authentication_data=_opt(blob),
)

publish_properties = st.builds(
    pp.PublishProperties,
    payload_format_indicator=_opt(flag),
    message_expiry_interval=_opt(u32),
    topic_alias=_opt(u16_nonzero),
    response_topic=_opt(topic_names),
    correlation_data=_opt(blob),
    user_properties=user_properties,
    subscription_identifiers=st.lists(vbi_nonzero, max_size=3).map(tuple),
    content_type=_opt(text),
)

ack_properties = st.builds(pp.AckProperties, reason_string=_opt(text), user_properties=user_properties)
subscribe_properties = st.builds(
    pp.SubscribeProperties, subscription_identifier=_opt(vbi_nonzero), user_properties=user_properties
)
unsubscribe_properties = st.builds(pp.UnsubscribeProperties, user_properties=user_properties)
disconnect_properties = st.builds(
    pp.DisconnectProperties,
    session_expiry_interval=_opt(u32),
    reason_string=_opt(text),
    user_properties=user_properties,
    server_reference=_opt(text),
)
auth_properties = st.builds(
    pp.AuthProperties,
    authentication_method=_opt(text),
    authentication_data=_opt(blob),
    reason_string=_opt(text),
    user_properties=user_properties,
)


@st.composite
def connects(draw: st.DrawFn, version: ProtocolVersion) -> pk.Connect:
    v5 = version == V5
    will = None
    if draw(st.booleans()):
        will = pk.Will(
            draw(topic_names),
            draw(blob),
            draw(st.integers(0, 2)),
            draw(st.booleans()),
            draw(will_properties) if v5 else pp.EMPTY_WILL,
        )
    username = draw(_opt(text))
    password = draw(_opt(blob)) if v5 or username is not None else None
    return pk.Connect(
        draw(text),
        int(version),
        draw(st.booleans()),
        draw(u16),
        username,
        password,
        will,
        draw(connect_properties()) if v5 else pp.EMPTY_CONNECT,
    )


@st.composite
def publishes(draw: st.DrawFn, version: ProtocolVersion) -> pk.Publish:
    qos = draw(st.integers(0, 2))
    props = draw(publish_properties) if version == V5 else pp.EMPTY_PUBLISH
    topic = draw(topic_names)
    if props.topic_alias is not None and draw(st.booleans()):
        topic = ""
    return pk.Publish(
        topic,
        draw(st.binary(max_size=300)),
        qos,
        draw(st.booleans()),
        draw(st.booleans()) if qos else False,
        draw(packet_ids) if qos else None,
        props,
    )


@st.composite
def subscriptions(draw: st.DrawFn, version: ProtocolVersion) -> pk.Subscription:
    topic_filter = draw(topic_filters())
    if version != V5:
        return pk.Subscription(topic_filter, draw(st.integers(0, 2)))
    return pk.Subscription(
        topic_filter,
        draw(st.integers(0, 2)),
        False if topic_filter.startswith("$share/") else draw(st.booleans()),
        draw(st.booleans()),
        draw(st.integers(0, 2)),
    )


def _acks(version: ProtocolVersion) -> st.SearchStrategy[pk.Packet]:
    v5 = version == V5
    out: list[st.SearchStrategy[pk.Packet]] = []
    for cls in (pk.PubAck, pk.PubRec, pk.PubRel, pk.PubComp):
        if v5:
            out.append(st.builds(cls, packet_ids, reasons, ack_properties))
        else:
            out.append(st.builds(cls, packet_ids))
    return st.one_of(out)


def packets(version: ProtocolVersion) -> st.SearchStrategy[pk.Packet]:
    """Every packet type except CONNECT (which needs a fresh decoder), valid for `version`."""
    v5 = version == V5
    ack = ack_properties if v5 else st.just(pp.EMPTY_ACK)
    if v5:
        connack = st.builds(pk.Connack, reasons, st.booleans(), connack_properties)
        suback_codes = st.lists(reasons, min_size=1, max_size=4).map(tuple)
        unsuback = st.builds(pk.UnsubAck, packet_ids, suback_codes, ack)
        disconnect = st.builds(pk.Disconnect, reasons, disconnect_properties)
    else:
        connack = st.builds(pk.Connack, st.sampled_from(list(ConnackReturnCode)), st.booleans())
        suback_codes = st.lists(st.sampled_from([0, 1, 2, 0x80]), min_size=1, max_size=4).map(tuple)
        unsuback = st.builds(pk.UnsubAck, packet_ids)
        disconnect = st.just(pk.Disconnect())
    strategies: list[st.SearchStrategy[pk.Packet]] = [
        connack,
        publishes(version),
        _acks(version),
        st.builds(
            pk.Subscribe,
            packet_ids,
            st.lists(subscriptions(version), min_size=1, max_size=3).map(tuple),
            subscribe_properties if v5 else st.just(pp.EMPTY_SUBSCRIBE),
        ),
        st.builds(pk.SubAck, packet_ids, suback_codes, ack),
        st.builds(
            pk.Unsubscribe,
            packet_ids,
            st.lists(topic_filters(), min_size=1, max_size=3).map(tuple),
            unsubscribe_properties if v5 else st.just(pp.EMPTY_UNSUBSCRIBE),
        ),
        unsuback,
        st.just(pk.PINGREQ),
        st.just(pk.PINGRESP),
        disconnect,
    ]
    if v5:
        strategies.append(st.builds(pk.Auth, reasons, auth_properties))
    return st.one_of(strategies)


versions = st.sampled_from([V311, V5])


@st.composite
def splits(draw: st.DrawFn, data: bytes) -> list[bytes]:
    """`data` cut into random chunks."""
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=8)))
    bounds = [0, *cuts, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]
