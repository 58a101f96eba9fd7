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
    """The connection that currently holds the device."""

    connection_id: str
    endpoint: str
    protocol: str
    app_uid: str
    device_uid: str
    since: float
    will: Will | None = None


@dataclass(frozen=True, slots=True)
class RegistryMark:
    """The last registry change applied at one level (device or application) and the block it implies.

    ``block`` is set while connects of the resource incarnation ``uid`` are refused (deleted/disabled).
    """

    uid: str
    revision: int
    block: Reason | None


@dataclass(frozen=True, slots=True)
class DeviceState:
    """What the agent keeps per device key.

    ``sequence`` is the last sequence number given to a connection event of this device; it only grows, also
    across periods without a holder. ``ended`` holds the most recent ended connection ids, oldest first.
    """

    holder: Holder | None = None
    sequence: int = 0
    ended: tuple[str, ...] = ()
    device_mark: RegistryMark | None = None
    app_mark: RegistryMark | None = None

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
                ended=tuple(str(c) for c in d["ended"]),
                device_mark=_mark(d.get("device_mark")),
                app_mark=_mark(d.get("app_mark")),
            )
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as e:
            raise MalformedRecord(f"device state: {e!r}") from None


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
        "v": 1,
        "holder": None
        if h is None
        else {
            "connection_id": h.connection_id,
            "endpoint": h.endpoint,
            "protocol": h.protocol,
            "app_uid": h.app_uid,
            "device_uid": h.device_uid,
            "since": h.since,
            "will": None if h.will is None else h.will.to_dict(),
        },
        "sequence": s.sequence,
        "ended": list(s.ended),
        "device_mark": _mark_dict(s.device_mark),
        "app_mark": _mark_dict(s.app_mark),
    }


def _mark_dict(m: RegistryMark | None) -> dict[str, Any] | None:
    return None if m is None else {"uid": m.uid, "revision": m.revision, "block": m.block}


def _mark(d: dict[str, Any] | None) -> RegistryMark | None:
    if d is None:
        return None
    block = d["block"]
    return RegistryMark(str(d["uid"]), int(d["revision"]), None if block is None else Reason(block))


def _holder(h: dict[str, Any]) -> Holder:
    w = h["will"]
    will = None if w is None else Will(str(w["channel"]), base64.b64decode(w["payload"]), w["content_type"])
    return Holder(
        connection_id=str(h["connection_id"]),
        endpoint=str(h["endpoint"]),
        protocol=str(h["protocol"]),
        app_uid=str(h["app_uid"]),
        device_uid=str(h["device_uid"]),
        since=float(h["since"]),
        will=will,
    )
