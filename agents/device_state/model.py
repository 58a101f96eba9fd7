"""Per-device state of the device-state agent and the effects `decide()` asks its shell to carry out.

All types are frozen: `decide()` returns a new `DeviceState` when something changed and the *same object* when
nothing did, so the shell can skip the table write with ``new is old``.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

import orjson

from schemas.state import (
    CommandOutcome,
    DeliverCommand,
    Kick,
    MalformedRecord,
    Reason,
    Reply,
    Will,
)

#: How many ended (replaced, disconnected, refused) connection ids a device remembers, so that a replayed
#: connect for one of them is refused instead of resurrecting it. Replays only span the records processed
#: since the last offset commit (seconds), so this bounds churn per device within that window.
ENDED_MEMORY = 16


@dataclass(frozen=True, slots=True)
class Holder:
    """The connection that currently holds the device; ``sequence`` is that of its ``connected`` event."""

    app: str
    device: str
    connection_id: str
    endpoint: str
    protocol: str
    app_uid: str
    device_uid: str
    since: float
    sequence: int
    will: Will | None = None


@dataclass(frozen=True, slots=True)
class RegistryMark:
    """The last registry change applied to one resource incarnation (``uid``) and the block it implies.

    ``block`` is set while connects of that incarnation are refused (deleted/disabled).
    """

    uid: str
    revision: int
    block: Reason | None


#: At most this many live command polls (waiters) per device key; a new one beyond drops the oldest.
MAX_POLLS = 8
#: At most this many polls per device key in all (live and spent), so the table entry stays small.
POLL_MEMORY = 24


@dataclass(frozen=True, slots=True)
class Poll:
    """A command waiter (:class:`~schemas.state.CommandPoll`) kept in the route's state; not a connection.

    ``device`` is the device the command must be for (a gateway polls on behalf of its devices). A poll is
    *live* while ``now < until`` and it is neither ``ended`` nor consumed (``command_id``: the request id of
    the command it answered). Spent polls are kept until ``until`` so that a replayed poll is not revived
    and a replayed command goes to the same poll again instead of consuming another one.
    """

    poll_id: str
    device: str
    endpoint: str
    until: float
    command_id: str | None = None
    ended: bool = False

    def live(self, now: float) -> bool:
        return self.command_id is None and not self.ended and now < self.until


#: Registry marks of one resource (device, or application in one partition), oldest first, at most
#: :data:`MARK_MEMORY` incarnations (uids): a late record of a deleted incarnation never hides the block of
#: the current one.
Marks = tuple[RegistryMark, ...]
MARK_MEMORY = 4


@dataclass(frozen=True, slots=True)
class DeviceState:
    """What the agent keeps per device key.

    ``sequence`` is the last sequence number given to a connection event of this device; it only grows, also
    across periods without a holder. ``ended`` holds the most recent ended connection ids, oldest first.
    ``marks`` are the device-level registry marks. ``polls`` are the command waiters of HTTP requests (live
    and recently spent, oldest first; see :class:`Poll`): they never make the device "held".
    """

    holder: Holder | None = None
    sequence: int = 0
    ended: tuple[str, ...] = ()
    marks: Marks = ()
    polls: tuple[Poll, ...] = ()

    def to_bytes(self) -> bytes:
        return orjson.dumps(_state_dict(self))

    @classmethod
    def from_bytes(cls, raw: bytes | bytearray | memoryview | str) -> DeviceState:
        try:
            d = orjson.loads(raw)
            h = d["holder"]
            return cls(
                holder=None if h is None else _holder(h),
                sequence=int(d["sequence"]),
                ended=tuple(map(str, d["ended"])),
                marks=marks_from_list(d.get("marks") or []),
                polls=tuple(_poll(p) for p in d.get("polls") or ()),
            )
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as e:
            raise MalformedRecord(f"device state: {e!r}") from None


def marks_to_bytes(marks: Marks) -> bytes:
    return orjson.dumps(_marks_list(marks))


def marks_from_bytes(raw: bytes | bytearray | memoryview | str) -> Marks:
    try:
        return marks_from_list(orjson.loads(raw))
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as e:
        raise MalformedRecord(f"registry marks: {e!r}") from None


def marks_from_list(items: list[dict[str, Any]]) -> Marks:
    return tuple(_mark(d) for d in items)


# -------------------------------------------------------------------------------------------------- effects


@dataclass(frozen=True, slots=True)
class EmitEvent:
    """Publish a device event (a Last Will) to ``events-<app>`` as if the device had sent it."""

    app: str
    device: str
    app_uid: str
    device_uid: str
    channel: str
    payload: bytes
    content_type: str | None
    event_id: str
    time: float


@dataclass(frozen=True, slots=True)
class EmitConnection:
    """Publish an ``io.drogue.connection.v1`` event; ``reason`` is None for ``connected: true``."""

    app: str
    device: str
    app_uid: str
    device_uid: str
    connected: bool
    connection_id: str
    reason: Reason | None
    sequence: int
    event_id: str
    time: float


@dataclass(frozen=True, slots=True)
class SendReply:
    """Send ``record`` to ``endpoint-control`` keyed by ``endpoint``."""

    endpoint: str
    record: Reply


@dataclass(frozen=True, slots=True)
class SendKick:
    endpoint: str
    record: Kick


@dataclass(frozen=True, slots=True)
class SendCommand:
    endpoint: str
    record: DeliverCommand


@dataclass(frozen=True, slots=True)
class CommandFailed:
    """The command could not be routed; tell ``endpoint`` (the requester) if it asked for an outcome."""

    endpoint: str | None
    record: CommandOutcome


ControlEffect = SendReply | SendKick | SendCommand | CommandFailed
Effect = EmitEvent | EmitConnection | ControlEffect


def event_id(connection_id: str, what: str) -> str:
    """Deterministic CloudEvent id of a connection's ``connected``/``disconnected``/``will`` event."""
    return f"{connection_id}:{what}"


# ---------------------------------------------------------------------------------------------------- codec


def _state_dict(s: DeviceState) -> dict[str, Any]:
    h = s.holder
    return {
        "v": 2,
        "holder": None
        if h is None
        else {
            "app": h.app,
            "device": h.device,
            "connection_id": h.connection_id,
            "endpoint": h.endpoint,
            "protocol": h.protocol,
            "app_uid": h.app_uid,
            "device_uid": h.device_uid,
            "since": h.since,
            "sequence": h.sequence,
            "will": None if h.will is None else h.will.to_dict(),
        },
        "sequence": s.sequence,
        "ended": list(s.ended),
        "marks": _marks_list(s.marks),
        "polls": [
            {"poll_id": p.poll_id, "device": p.device, "endpoint": p.endpoint, "until": p.until,
             "command_id": p.command_id, "ended": p.ended}
            for p in s.polls
        ],
    }


def _poll(d: dict[str, Any]) -> Poll:
    command_id = d["command_id"]
    return Poll(str(d["poll_id"]), str(d["device"]), str(d["endpoint"]), float(d["until"]),
                None if command_id is None else str(command_id), bool(d["ended"]))


def _marks_list(marks: Marks) -> list[dict[str, Any]]:
    return [{"uid": m.uid, "revision": m.revision, "block": m.block} for m in marks]


def _mark(d: dict[str, Any]) -> RegistryMark:
    block = d["block"]
    return RegistryMark(str(d["uid"]), int(d["revision"]), None if block is None else Reason(block))


def _holder(h: dict[str, Any]) -> Holder:
    w = h["will"]
    will = None if w is None else Will(str(w["channel"]), base64.b64decode(w["payload"]), w["content_type"])
    return Holder(
        app=str(h["app"]),
        device=str(h["device"]),
        connection_id=str(h["connection_id"]),
        endpoint=str(h["endpoint"]),
        protocol=str(h["protocol"]),
        app_uid=str(h["app_uid"]),
        device_uid=str(h["device_uid"]),
        since=float(h["since"]),
        sequence=int(h["sequence"]),
        will=will,
    )
