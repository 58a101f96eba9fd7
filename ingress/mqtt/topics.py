"""Topics of the MQTT endpoint (reference §5). Pure; no I/O.

Publish topics by dialect (``spec.mqtt.dialect`` of the device, else the app, else ``drogue/v1``):

* ``drogue/v1``: ``<channel>`` (own device) or ``<channel>/<device>`` (on behalf of ``<device>``); an empty
  topic, an empty channel or three or more segments are invalid (v5 PUBACK 0x90).
* ``plainTopic`` without ``devicePrefix``: the whole topic is the channel.
* ``plainTopic`` with ``devicePrefix``: ``<device>/<channel...>``; an empty first segment means the own device;
  no ``/`` is invalid.

Command subscriptions (every dialect), all granted with QoS 0:

| filter | commands | topic delivered |
|---|---|---|
| ``command/inbox/#``, ``command/inbox/+/#`` | own, every proxied device | own: ``command/inbox//<cmd>``, |
| | | other: ``command/inbox/<device>/<cmd>`` |
| ``command/inbox//#`` | own only | ``command/inbox//<cmd>`` |
| ``command/inbox/<device>/#`` | one device | ``command/inbox/<device>/<cmd>`` |
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Dialect", "DialectInvalid", "Subscriptions", "Target", "TopicInvalid", "filter_kind"]

INBOX = "command/inbox/"


class TopicInvalid(ValueError):
    """The PUBLISH topic does not fit the device's dialect (v5 PUBACK 0x90 Topic name invalid)."""


class DialectInvalid(ValueError):
    """The registry holds a ``spec.mqtt.dialect`` this endpoint does not know."""


@dataclass(frozen=True, slots=True)
class Target:
    """Where a PUBLISH goes: its channel, and the device it is for (None: the connected device itself)."""

    channel: str
    device: str | None = None


@dataclass(frozen=True, slots=True)
class Dialect:
    plain: bool = False
    device_prefix: bool = False

    @classmethod
    def of(cls, spec: Mapping[str, Any] | None) -> Dialect:
        """The dialect of an identity's ``mqtt_dialect`` (None: ``drogue/v1``)."""
        if spec is None:
            return DROGUE_V1
        kind = spec.get("type")
        if kind == "drogue/v1":
            return DROGUE_V1
        if kind == "plainTopic":
            return cls(True, bool(spec.get("devicePrefix", spec.get("device_prefix", False))))
        raise DialectInvalid(f"unknown MQTT dialect {kind!r}")

    def target(self, topic: str) -> Target:
        """The channel and device of a PUBLISH ``topic``; :class:`TopicInvalid` when it does not fit."""
        if not topic:
            raise TopicInvalid("empty topic")
        if self.plain:
            if not self.device_prefix:
                return Target(topic)
            device, sep, channel = topic.partition("/")
            if not sep or not channel:
                raise TopicInvalid("expected <device>/<channel>")
            return Target(channel, device or None)
        parts = topic.split("/")
        if len(parts) > 2:
            raise TopicInvalid("expected <channel> or <channel>/<device>")
        if not parts[0]:
            raise TopicInvalid("empty channel")
        return Target(parts[0], (parts[1] or None) if len(parts) == 2 else None)


DROGUE_V1 = Dialect()

ALL = "all"
OWN = "own"


def filter_kind(topic_filter: str) -> tuple[str, str | None] | None:
    """``(ALL|OWN, None)`` or ``("device", name)`` for an accepted command filter; None for anything else."""
    if topic_filter in ("command/inbox/#", "command/inbox/+/#"):
        return ALL, None
    if topic_filter == "command/inbox//#":
        return OWN, None
    if topic_filter.startswith(INBOX) and topic_filter.endswith("/#"):
        device = topic_filter[len(INBOX):-2]
        if device and not any(c in device for c in "+#/"):
            return "device", device
    return None


@dataclass(slots=True)
class Subscriptions:
    """The command filters of one connection (a duplicate filter is confirmed again, not added twice)."""

    filters: set[str] = field(default_factory=set)

    def add(self, topic_filter: str) -> bool:
        """Accept ``topic_filter`` if it is a command filter; False otherwise."""
        if filter_kind(topic_filter) is None:
            return False
        self.filters.add(topic_filter)
        return True

    def remove(self, topic_filter: str) -> bool:
        """False when there was no such subscription."""
        if topic_filter in self.filters:
            self.filters.discard(topic_filter)
            return True
        return False

    def command_topic(self, own: str, device: str, command: str) -> str | None:
        """The topic to deliver ``command`` for ``device`` to a connection of ``own``; None: not subscribed."""
        kinds = [filter_kind(f) for f in self.filters]
        wants_all = (ALL, None) in kinds
        if device == own and (wants_all or (OWN, None) in kinds):
            return f"{INBOX}/{command}"
        if ("device", device) in kinds or (device != own and wants_all):
            return f"{INBOX}{device}/{command}"
        return None
