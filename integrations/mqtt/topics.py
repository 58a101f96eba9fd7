"""The MQTT integration's topic language (reference §6, filters of :mod:`integrations.filters`), pure.

Subscriptions (topic filters)::

    [$share/<group>/ | $shared/<group>/] (app | a | application)/<app>[/<kind>/<value>...]

* any ``+`` or ``#`` -> :attr:`ReasonCode.WILDCARD_SUBSCRIPTIONS_NOT_SUPPORTED` (0xA2);
* any other shape, an empty app or group, an invalid filter -> 0x8F topic filter invalid;
* MQTT 5 user property ``content-mode`` = ``structured`` (default) | ``binary``; any other value fails the
  whole SUBSCRIBE (:class:`ContentModeInvalid`); several ``content-mode`` properties: the last one counts.

Messages of a subscription are published on its topic filter without the ``$share/<group>/`` prefix.

Commands (PUBLISH topic names): ``command/<app>/<device>/<command>``, exactly four levels, the first one
case-insensitive. Another shape -> 0x83 (Drogue's "Unsupported operation"); four levels with an empty one ->
0x90 topic name invalid.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum
from typing import Final

from integrations.filters import EventFilter, FilterError, from_mqtt
from protocols.mqtt import ReasonCode

__all__ = [
    "CONTENT_MODE",
    "CommandTopic",
    "ContentMode",
    "ContentModeInvalid",
    "SubscriptionTopic",
    "TopicRefused",
    "consumer_group",
    "content_mode",
    "parse_command_topic",
    "parse_subscription",
]

#: the MQTT 5 SUBSCRIBE user property choosing the content mode
CONTENT_MODE: Final = "content-mode"
_APP_PREFIXES: Final = frozenset({"app", "a", "application"})
_SHARE_PREFIXES: Final = ("$share/", "$shared/")


class TopicRefused(ValueError):
    """A topic (filter) the integration refuses; ``reason`` is the MQTT reason code to answer with."""

    def __init__(self, reason: ReasonCode, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


class ContentModeInvalid(ValueError):
    """The ``content-mode`` user property has an unknown value: the whole SUBSCRIBE fails."""


class ContentMode(Enum):
    STRUCTURED = "structured"
    BINARY = "binary"


@dataclass(frozen=True, slots=True)
class SubscriptionTopic:
    """A parsed subscription topic filter."""

    #: the full topic filter as subscribed (the key of the subscription in its connection)
    topic_filter: str
    #: the ``$share``/``$shared`` group, None for a plain subscription
    group: str | None
    app: str
    filter: EventFilter
    #: where its messages are published: the topic filter without the share prefix
    publish_topic: str


def parse_subscription(topic_filter: str, properties: Iterable[tuple[str, str]] = ()) -> SubscriptionTopic:
    """Parse a SUBSCRIBE topic filter (and its MQTT 5 user properties, for filters); raises :class:`TopicRefused`."""
    if "+" in topic_filter or "#" in topic_filter:
        raise TopicRefused(ReasonCode.WILDCARD_SUBSCRIPTIONS_NOT_SUPPORTED,
                           f"wildcard subscriptions are not supported: {topic_filter!r}")
    group: str | None = None
    rest = topic_filter
    for prefix in _SHARE_PREFIXES:
        if topic_filter.startswith(prefix):
            group, sep, rest = topic_filter[len(prefix):].partition("/")
            if not group or not sep:
                raise TopicRefused(ReasonCode.TOPIC_FILTER_INVALID,
                                   f"a shared subscription is {prefix}<group>/app/<app>, got {topic_filter!r}")
            break
    levels = rest.split("/")
    if len(levels) < 2 or levels[0] not in _APP_PREFIXES or not levels[1]:
        raise TopicRefused(ReasonCode.TOPIC_FILTER_INVALID,
                           f"subscribe to app/<application> (or a/, application/), got {topic_filter!r}")
    try:
        flt = from_mqtt(levels[2:], properties)
    except FilterError as e:
        raise TopicRefused(ReasonCode.TOPIC_FILTER_INVALID, str(e)) from None
    return SubscriptionTopic(topic_filter, group, levels[1], flt, rest)


def consumer_group(topic: SubscriptionTopic, client_id: str | None) -> str | None:
    """The Kafka consumer group of a subscription: its share group, else the client id, else None (anonymous).

    A topic filter with filter levels gets ``<client id>/<topic filter>``: the filtered subscriptions of one
    client must not be members of one group (they would split the partitions between them).
    """
    if topic.group is not None or client_id is None:
        return topic.group
    return f"{client_id}/{topic.publish_topic}" if topic.publish_topic.count("/") > 1 else client_id


def content_mode(properties: Iterable[tuple[str, str]]) -> ContentMode:
    """The content mode of an MQTT 5 SUBSCRIBE's user properties; raises :class:`ContentModeInvalid`."""
    mode = ContentMode.STRUCTURED
    for name, value in properties:
        if name == CONTENT_MODE:
            try:
                mode = ContentMode(value)
            except ValueError:
                raise ContentModeInvalid(
                    f"unknown content-mode {value!r} (use 'structured' or 'binary')") from None
    return mode


@dataclass(frozen=True, slots=True)
class CommandTopic:
    app: str
    device: str
    command: str


def parse_command_topic(topic: str) -> CommandTopic:
    """``command/<app>/<device>/<command>`` -> its parts; raises :class:`TopicRefused` (0x83 or 0x90)."""
    levels = topic.split("/")
    if len(levels) != 4 or levels[0].lower() != "command":
        raise TopicRefused(ReasonCode.IMPLEMENTATION_SPECIFIC_ERROR,
                           "Unsupported operation: publish commands to command/<application>/<device>/<command>")
    _, app, device, command = levels
    if not (app and device and command):
        raise TopicRefused(ReasonCode.TOPIC_NAME_INVALID,
                           f"empty application, device or command in {topic!r}")
    return CommandTopic(app, device, command)
