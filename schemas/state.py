"""Records of the device-state protocol, exchanged over internal Kafka topics.

Topics (DESIGN.md "Topics"):

* ``device-state`` (key: device key) carries :class:`ConnectRequest` and :class:`DisconnectRequest` from the
  endpoints and from the lease watcher (``reason=endpoint_lost``).
* ``iot-commands`` (key: device key) carries :class:`CommandRequest`, and :class:`CommandPoll` /
  :class:`CommandPollEnd` from the HTTP endpoint (a request waiting with ``ct`` for a command). Polls share the
  commands' topic on purpose: with the same key they share one partition, so a command produced after a poll
  was acknowledged is processed after it (finds the waiter), and one produced after the poll's end never
  reaches that poll. On ``device-state`` the two would be ordered only per topic.
* ``endpoint-control`` (key: endpoint instance id) carries :class:`Reply`, :class:`Kick`,
  :class:`DeliverCommand` and :class:`CommandOutcome`; each endpoint reads only the records keyed by its
  own instance id.
* ``endpoint-heartbeats`` (key: endpoint instance id, compacted) carries :class:`Heartbeat`.
* ``device-state`` also carries :class:`EndpointLost`, sent by the lease watcher once to EVERY partition (explicit
  partition number, key ``endpoint-lost/<instance>``): each partition's agent ends its own holders of that instance.

Addressing on ``endpoint-control``: a record for instance ``i`` goes to partition :func:`control_partition`
(``crc32(i) % partitions``) with key ``i``; an endpoint reads only that partition and drops records whose key is
not its own instance id. With one partition (the default) every endpoint filters; more partitions spread the load.

:class:`RegistryChangeView` is the agent's small view of a registry change (the full record lives in
``schemas.registry``); build it with :meth:`RegistryChangeView.of`.

Every record serialises to one JSON object with a ``kind`` discriminator (the codec: ``schemas.record``);
decoding raises :class:`~schemas.record.MalformedRecord` for anything that is wrong.
"""

from __future__ import annotations

import dataclasses
import zlib
from dataclasses import dataclass
from enum import StrEnum
from typing import ClassVar, Protocol

from schemas.record import MalformedRecord as MalformedRecord  # what every decoder here raises
from schemas.record import Record, decode_kind, load


class Reason(StrEnum):
    """Why a connection ended (``connected:false`` event, kick) or why a connect was refused (reply)."""

    NORMAL = "normal"
    TAKEN_OVER = "taken_over"
    ENDPOINT_LOST = "endpoint_lost"
    KEEPALIVE_TIMEOUT = "keepalive_timeout"
    DEVICE_DELETED = "device_deleted"
    DEVICE_DISABLED = "device_disabled"
    APP_DELETED = "app_deleted"
    APP_DISABLED = "app_disabled"
    ERROR = "error"
    #: only in a rejected :class:`Reply`: the connection was already replaced or ended (a replayed connect).
    SUPERSEDED = "superseded"


class Operation(StrEnum):
    CREATED = "created"
    UPDATED = "updated"
    DELETED = "deleted"


class Scope(StrEnum):
    """Whether a registry change is about the device itself or about its whole application."""

    DEVICE = "device"
    APPLICATION = "application"


#: ``CommandOutcome.reason`` when the device has no live connection and no waiting poll.
DEVICE_OFFLINE = "device offline"
#: ``CommandOutcome.reason`` when a command reached a poll whose request is already answered or gone.
POLL_ENDED = "poll ended"

@dataclass(frozen=True, slots=True)
class Will(Record):
    """An MQTT Last Will, emitted as a normal device event on abnormal ends (reference §4.4)."""

    KIND: ClassVar[str] = "will"
    channel: str
    payload: bytes
    content_type: str | None = None


@dataclass(frozen=True, slots=True)
class ConnectRequest(Record):
    """An endpoint asks to make ``connection_id`` the holder of the device; answered by a :class:`Reply`."""

    KIND: ClassVar[str] = "connect"
    REQUIRED: ClassVar[tuple[str, ...]] = ("app", "device", "connection_id", "endpoint", "request_id")
    app: str
    device: str
    connection_id: str
    endpoint: str
    protocol: str
    app_uid: str
    device_uid: str
    request_id: str
    will: Will | None = None


@dataclass(frozen=True, slots=True)
class DisconnectRequest(Record):
    """The connection ended (endpoint), or its endpoint's lease expired (lease watcher, ``endpoint_lost``)."""

    KIND: ClassVar[str] = "disconnect"
    REQUIRED: ClassVar[tuple[str, ...]] = ("app", "device", "connection_id", "endpoint")
    app: str
    device: str
    connection_id: str
    endpoint: str
    reason: Reason
    skip_will: bool = False


class _ChangeLike(Protocol):
    """What :meth:`RegistryChangeView.of` reads from a full registry change (``schemas.registry``)."""

    @property
    def operation(self) -> str: ...
    @property
    def app(self) -> str: ...
    @property
    def device(self) -> str | None: ...
    @property
    def uid(self) -> str: ...
    @property
    def disabled(self) -> bool: ...
    @property
    def revision(self) -> int: ...
    @property
    def cascade(self) -> bool: ...


@dataclass(frozen=True, slots=True)
class RegistryChangeView(Record):
    """The part of a registry change the device-state agent needs: may live connections stay?

    ``uid`` is the changed resource's uid (the device's, or the application's for ``scope=application``).
    ``revision`` orders the changes of one resource incarnation (``uid``); 0 means unknown, always apply.
    ``disabled`` is the resource's disabled flag after the change, None when unknown. An application-level
    change reaches the agent once per device key: :meth:`for_device` keeps ``scope=application`` and sets
    ``device``. ``cascade`` marks a device-scoped deletion caused by deleting its application (the connection
    then ends with ``app_deleted``).
    """

    KIND: ClassVar[str] = "registry-change"
    REQUIRED: ClassVar[tuple[str, ...]] = ("app",)
    app: str
    device: str | None
    operation: Operation
    uid: str
    disabled: bool | None = None
    scope: Scope = Scope.DEVICE
    revision: int = 0
    cascade: bool = False

    def __post_init__(self) -> None:
        if self.scope is Scope.DEVICE and not self.device:
            raise MalformedRecord("a device-scoped registry change needs a device")

    def for_device(self, device: str) -> RegistryChangeView:
        return dataclasses.replace(self, device=device)

    @classmethod
    def of(cls, change: _ChangeLike) -> RegistryChangeView:
        """The view of a full registry change (``schemas.registry.RegistryChange``)."""
        scope = Scope.APPLICATION if change.device is None else Scope.DEVICE
        return cls(
            change.app,
            change.device,
            Operation(change.operation),
            change.uid,
            change.disabled,
            scope,
            change.revision,
            change.cascade,
        )


@dataclass(frozen=True, slots=True)
class CommandRequest(Record):
    """A command for ``device``, to be delivered by the connection of ``sender`` (a gateway of the device) or,
    when ``sender`` is None, of the device itself. Keyed by :meth:`route`'s device key (reference §7.3: one
    request per target). ``reply_to`` is the instance that wants the :class:`CommandOutcome`, if any."""

    KIND: ClassVar[str] = "command"
    REQUIRED: ClassVar[tuple[str, ...]] = ("app", "device", "command", "request_id")
    app: str
    device: str
    command: str
    payload: bytes
    content_type: str | None
    request_id: str
    reply_to: str | None = None
    sender: str | None = None

    @property
    def route(self) -> str:
        """The device whose connection delivers the command (its state holds the connection)."""
        return self.sender or self.device


@dataclass(frozen=True, slots=True)
class CommandPoll(Record):
    """A short-lived command waiter (HTTP ``ct``, reference §7.1): deliver the next command for ``device`` via
    ``sender`` (the publishing gateway; None: the device itself) to ``endpoint`` as a :class:`DeliverCommand`
    whose ``connection_id`` is ``poll_id``, if one arrives before ``until`` (epoch seconds).

    Keyed by :meth:`route`'s device key, like :class:`CommandRequest`. A poll is not a connection: it never
    creates a holder, emits no connection events and kicks nobody (§3.1: HTTP creates no connection state).
    One poll answers at most one command; a connection holding the route takes priority over every poll.
    ``until`` is set by the endpoint's clock and compared with the agent's: it is the safety net for an
    endpoint that vanished; a live request ends its poll explicitly with :class:`CommandPollEnd`.
    """

    KIND: ClassVar[str] = "command-poll"
    REQUIRED: ClassVar[tuple[str, ...]] = ("app", "device", "endpoint", "poll_id")
    app: str
    device: str
    endpoint: str
    poll_id: str
    until: float
    sender: str | None = None

    @property
    def route(self) -> str:
        """The device whose state keeps the waiter (the gateway's, for a poll on behalf of a device)."""
        return self.sender or self.device


@dataclass(frozen=True, slots=True)
class CommandPollEnd(Record):
    """The request behind ``poll_id`` is gone (timed out, client left): route no command to it any more."""

    KIND: ClassVar[str] = "command-poll-end"
    REQUIRED: ClassVar[tuple[str, ...]] = ("app", "device", "poll_id")
    app: str
    device: str
    poll_id: str
    sender: str | None = None

    @property
    def route(self) -> str:
        return self.sender or self.device


@dataclass(frozen=True, slots=True)
class Reply(Record):
    """The agent's answer to a :class:`ConnectRequest`; ``reason`` is None when accepted."""

    KIND: ClassVar[str] = "reply"
    REQUIRED: ClassVar[tuple[str, ...]] = ("request_id", "connection_id")
    request_id: str
    connection_id: str
    accepted: bool
    reason: Reason | None = None


@dataclass(frozen=True, slots=True)
class Kick(Record):
    """Close ``connection_id`` now (MQTT 5: DISCONNECT 0x8E for ``taken_over``; MQTT 3.1.1: close)."""

    KIND: ClassVar[str] = "kick"
    REQUIRED: ClassVar[tuple[str, ...]] = ("app", "device", "connection_id")
    app: str
    device: str
    connection_id: str
    reason: Reason


@dataclass(frozen=True, slots=True)
class DeliverCommand(Record):
    """Deliver a command over ``connection_id``; report to ``reply_to`` (if set) with a CommandOutcome.

    For a command answering a :class:`CommandPoll`, ``connection_id`` is the poll's ``poll_id``."""

    KIND: ClassVar[str] = "deliver-command"
    REQUIRED: ClassVar[tuple[str, ...]] = ("app", "device", "connection_id", "command", "request_id")
    app: str
    device: str
    connection_id: str
    command: str
    payload: bytes
    content_type: str | None
    request_id: str
    reply_to: str | None = None


@dataclass(frozen=True, slots=True)
class CommandOutcome(Record):
    """Whether a command reached the device; ``reason`` explains a failure (e.g. :data:`DEVICE_OFFLINE`)."""

    KIND: ClassVar[str] = "command-outcome"
    REQUIRED: ClassVar[tuple[str, ...]] = ("request_id",)
    request_id: str
    delivered: bool
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class Heartbeat(Record):
    """An endpoint instance renews its lease for ``lease_s`` seconds; ``lease_s == 0`` releases it."""

    KIND: ClassVar[str] = "heartbeat"
    REQUIRED: ClassVar[tuple[str, ...]] = ("endpoint",)
    endpoint: str
    seq: int
    time: float
    lease_s: float

    def __post_init__(self) -> None:
        if self.lease_s < 0 or self.lease_s != self.lease_s:  # negative or NaN
            raise MalformedRecord(f"invalid lease_s {self.lease_s!r}")


@dataclass(frozen=True, slots=True)
class EndpointLost(Record):
    """The lease of ``endpoint`` expired or was released: end every connection it holds (``endpoint_lost``)."""

    KIND: ClassVar[str] = "endpoint-lost"
    REQUIRED: ClassVar[tuple[str, ...]] = ("endpoint",)
    endpoint: str


def control_partition(instance_id: str, partitions: int) -> int:
    """The ``endpoint-control`` partition that carries every record addressed to ``instance_id``."""
    if partitions < 1:
        raise ValueError(f"partitions must be >= 1, got {partitions}")
    return zlib.crc32(instance_id.encode("utf-8")) % partitions


StateRequest = (
    ConnectRequest | DisconnectRequest | RegistryChangeView | CommandRequest | CommandPoll | CommandPollEnd
    | EndpointLost
)
ControlRecord = Reply | Kick | DeliverCommand | CommandOutcome

_STATE_KINDS: dict[str, type[StateRequest]] = {
    c.KIND: c for c in (ConnectRequest, DisconnectRequest, RegistryChangeView, CommandRequest, CommandPoll,
                        CommandPollEnd, EndpointLost)
}
_CONTROL_KINDS: dict[str, type[ControlRecord]] = {
    c.KIND: c for c in (Reply, Kick, DeliverCommand, CommandOutcome)
}


def decode_state_request(raw: bytes | bytearray | memoryview | str) -> StateRequest:
    """Decode any record the device-state agent consumes."""
    return decode_kind(_STATE_KINDS, load(raw))


def decode_control(raw: bytes | bytearray | memoryview | str) -> ControlRecord:
    """Decode any record of the ``endpoint-control`` topic."""
    return decode_kind(_CONTROL_KINDS, load(raw))
