"""The pure part of the command API: who gets a command, the records sent, how outcomes combine (§7.3).

A command for ``device`` goes to every *target*: the device itself and each enabled gateway of its
``spec.gatewaySelector.matchNames`` (a device may be connected through any of them). One
:class:`~schemas.state.CommandRequest` per target, keyed by the target's device key, so the device-state agent
of that key routes it to the endpoint holding the target's connection.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from schemas.keys import device_key
from schemas.state import CommandOutcome, CommandRequest

__all__ = ["CommandTargets", "DeviceDirectory", "Outcome", "combine", "command_requests"]


@dataclass(frozen=True, slots=True)
class CommandTargets:
    """What the registry says about a command's device (and its app)."""

    app_disabled: bool
    device_disabled: bool
    #: the enabled gateways of the device's ``gatewaySelector.matchNames`` (existing ones, in order)
    gateways: tuple[str, ...] = ()


class DeviceDirectory(Protocol):
    """The registry look-up of the command API (``kedge`` wires an adapter over ``registry.store.Registry``)."""

    async def command_targets(self, app: str, device: str) -> CommandTargets | None:
        """The targets of a command to ``device`` of ``app``; None when the app or the device does not exist
        (or is being deleted)."""
        ...


def command_requests(
    app: str, device: str, targets: CommandTargets, command: str, payload: bytes, content_type: str | None,
    reply_to: str | None,
) -> list[tuple[bytes, CommandRequest]]:
    """``(key, record)`` per target: the device first, then its gateways (each with its own request id)."""
    out: list[tuple[bytes, CommandRequest]] = []
    for target in (device, *(g for g in targets.gateways if g != device)):
        request = CommandRequest(app=app, device=device, command=command, payload=payload,
                                 content_type=content_type, request_id=uuid.uuid4().hex, reply_to=reply_to,
                                 sender=None if target == device else target)
        out.append((device_key(app, target).encode(), request))
    return out


@dataclass(frozen=True, slots=True)
class Outcome:
    """The answer to a waiting caller: delivered, not delivered (with the reason), or unknown (None)."""

    delivered: bool | None
    reason: str | None = None


def combine(outcomes: Sequence[CommandOutcome | None]) -> Outcome:
    """Delivered if any target took it; not delivered once every target refused; else unknown."""
    if any(o is not None and o.delivered for o in outcomes):
        return Outcome(True)
    if outcomes and all(o is not None for o in outcomes):
        first = outcomes[0]
        assert first is not None
        return Outcome(False, first.reason or "not delivered")
    return Outcome(None, "no delivery outcome in time")
