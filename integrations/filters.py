"""Event filters of the MQTT and WebSocket integrations (Kedge extension; Drogue 0.10 has none, reference §16).

One model, :class:`EventFilter`, three kinds of criteria:

* ``type``    — the CloudEvent ``type`` (e.g. ``io.drogue.connection.v1``);
* ``channel`` — the CloudEvent ``subject`` (``telemetry``, ``connection``, ``devices``, ...);
* ``device``  — the ``device`` extension *or* the ``sender`` extension (so a gateway name selects everything the
  gateway sent, and a device name selects that device's events, whoever sent them).

Several values of one kind are OR-ed, kinds are AND-ed; a kind with no values does not restrict. The empty filter
(:data:`NO_FILTER`) matches everything. :meth:`EventFilter.matches` is a few set look-ups, no allocation.

Syntax
------

WebSocket (``GET /{app}?...``): query parameters ``type=``, ``channel=``, ``device=``, each repeatable and/or
comma-separated: ``?type=io.drogue.event.v1&channel=telemetry,state&device=dev1``. Other parameters (``group_id``,
``token``, ...) are ignored by :func:`from_query`. An empty value (``type=``, ``a,,b``) is an error.

MQTT (subscription topic filter): extra topic levels after ``app/<app>`` (or ``a/<app>``, ``application/<app>``,
with or without ``$share/<group>/``), as ``<kind>/<value>`` pairs, in any order and repeatable::

    app/my-app                                     unfiltered, exactly Drogue 0.10
    app/my-app/type/io.drogue.connection.v1        only connection events
    app/my-app/channel/telemetry/device/dev1       telemetry of dev1
    app/my-app/device/dev1/device/dev2             dev1 or dev2  (same as  app/my-app/device/dev1,dev2)

A value is one topic level, percent-decoded (``channel/sensors%2Ftemp`` is the channel ``sensors/temp``; ``%2C``
is a literal comma), and may hold comma-separated values. ``+`` and ``#`` are not allowed anywhere in the
filter levels (the integration rejects wildcards before it gets here). MQTT 5 subscriptions may instead (or also)
carry user properties ``type``, ``channel``, ``device`` (values comma-separated, properties repeatable); other
user properties (``content-mode``) are ignored by :func:`from_user_properties`. Topic levels and user properties
of one SUBSCRIBE combine like repeated values: per kind, the union. Messages of a filtered subscription are
published on the subscription's topic filter without the ``$share/<group>/`` prefix (so the client's own
subscription matches them), e.g. ``app/my-app/type/io.drogue.connection.v1``.

Errors raise :class:`FilterError` with a message fit for the client; the MQTT integration answers it with
SUBACK ``0x8F`` (topic filter invalid), the WebSocket integration with HTTP 400.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final, Literal
from urllib.parse import unquote

from schemas.events import DeviceEvent
from schemas.types import EXT_DEVICE, EXT_SENDER

__all__ = [
    "KINDS",
    "NO_FILTER",
    "EventFilter",
    "FilterError",
    "Kind",
    "from_mqtt",
    "from_query",
    "from_topic_levels",
    "from_user_properties",
]

Kind = Literal["type", "channel", "device"]
KINDS: Final[tuple[Kind, ...]] = ("type", "channel", "device")


class FilterError(ValueError):
    """A filter expression is invalid; the message says why (for the client)."""


@dataclass(frozen=True, slots=True)
class EventFilter:
    """Criteria an event must meet: per kind, one of the values (empty set = any)."""

    types: frozenset[str] = frozenset()
    channels: frozenset[str] = frozenset()
    devices: frozenset[str] = frozenset()

    @property
    def is_empty(self) -> bool:
        """True when the filter lets every event through (an unfiltered, Drogue-compatible subscription)."""
        return not (self.types or self.channels or self.devices)

    def matches(self, event: DeviceEvent) -> bool:
        """Whether ``event`` passes: its type, subject and device/sender each meet the kind's values (if any)."""
        if self.types and event.type not in self.types:
            return False
        if self.channels and event.subject not in self.channels:
            return False
        if self.devices:
            ext = event.extensions
            if ext.get(EXT_DEVICE) not in self.devices and ext.get(EXT_SENDER) not in self.devices:
                return False
        return True

    def to_query(self) -> list[tuple[str, str]]:
        """The filter as WebSocket query parameters (one pair per value, sorted); inverse of :func:`from_query`."""
        return [(kind, v) for kind, values in self._by_kind() for v in sorted(values)]

    def describe(self) -> str:
        """A short canonical text for logs, e.g. ``type=a|b channel=telemetry`` (``*`` when empty)."""
        parts = [f"{kind}={'|'.join(sorted(values))}" for kind, values in self._by_kind() if values]
        return " ".join(parts) or "*"

    def _by_kind(self) -> tuple[tuple[Kind, frozenset[str]], ...]:
        return (("type", self.types), ("channel", self.channels), ("device", self.devices))


NO_FILTER: Final = EventFilter()


class _Builder:
    def __init__(self) -> None:
        self.values: dict[Kind, set[str]] = {"type": set(), "channel": set(), "device": set()}

    def add(self, kind: Kind, raw: str, *, where: str) -> None:
        for value in raw.split(","):
            if not value:
                raise FilterError(f"empty {kind} value in {where} {raw!r}")
            self.values[kind].add(value)

    def build(self) -> EventFilter:
        v = self.values
        if not (v["type"] or v["channel"] or v["device"]):
            return NO_FILTER
        return EventFilter(frozenset(v["type"]), frozenset(v["channel"]), frozenset(v["device"]))


def _kind(name: str) -> Kind | None:
    return name if name in KINDS else None


def from_query(params: Iterable[tuple[str, str]]) -> EventFilter:
    """The filter of WebSocket query parameters (``type``/``channel``/``device``; other names are ignored)."""
    b = _Builder()
    for name, value in params:
        kind = _kind(name)
        if kind is not None:
            b.add(kind, value, where="query parameter")
    return b.build()


def _topic_levels_into(b: _Builder, levels: Sequence[str]) -> None:
    if len(levels) % 2:
        raise FilterError(
            f"filter levels must be <kind>/<value> pairs (kinds: {', '.join(KINDS)}), got {'/'.join(levels)!r}"
        )
    for i in range(0, len(levels), 2):
        name, raw = levels[i], levels[i + 1]
        kind = _kind(name)
        if kind is None:
            raise FilterError(f"unknown filter kind {name!r} in topic filter (kinds: {', '.join(KINDS)})")
        if "+" in raw or "#" in raw or "+" in name or "#" in name:
            raise FilterError("wildcards (+, #) are not supported in filter levels")
        if not raw:
            raise FilterError(f"empty {kind} value in topic filter")
        # split before decoding, so that %2C is a literal comma inside one value
        for part in raw.split(","):
            if not part:
                raise FilterError(f"empty {kind} value in topic level {raw!r}")
            b.values[kind].add(unquote(part, errors="strict"))


def from_topic_levels(levels: Sequence[str]) -> EventFilter:
    """The filter of the MQTT topic levels after ``app/<app>`` (``[]`` -> :data:`NO_FILTER`).

    ``levels`` is ``topic.split("/")[2:]`` of the topic filter without ``$share/<group>/``.
    """
    b = _Builder()
    try:
        _topic_levels_into(b, levels)
    except UnicodeDecodeError:
        raise FilterError("percent-encoded filter value is not UTF-8") from None
    return b.build()


def from_user_properties(properties: Iterable[tuple[str, str]]) -> EventFilter:
    """The filter of MQTT 5 SUBSCRIBE user properties ``type``/``channel``/``device`` (others ignored)."""
    return from_query(properties)


def from_mqtt(levels: Sequence[str], properties: Iterable[tuple[str, str]] = ()) -> EventFilter:
    """Topic levels and user properties of one SUBSCRIBE together (per kind, the union of the values)."""
    b = _Builder()
    try:
        _topic_levels_into(b, levels)
    except UnicodeDecodeError:
        raise FilterError("percent-encoded filter value is not UTF-8") from None
    for name, value in properties:
        kind = _kind(name)
        if kind is not None:
            b.add(kind, value, where="user property")
    return b.build()
