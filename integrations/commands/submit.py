"""Submitting a command, whatever protocol it came in by: the ONE place of the §7.3 steps.

Write on the app; the device's targets from the :class:`~integrations.commands.model.DeviceDirectory`; a
disabled app or device refused (§17 row 14.7 fixed); the §2.2 payload rules; one
:class:`~schemas.state.CommandRequest` per target through the :class:`~integrations.commands.bus.CommandBus`
and, if asked, the wait for the delivery outcome. Each edge maps a :class:`Refusal` to its own code (HTTP
status in :mod:`integrations.commands.api`, MQTT 5 PUBACK reason in :mod:`integrations.mqtt.commands`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from enum import StrEnum

from integrations.auth import AuthError, AuthUnavailable, Caller, UserAccess
from integrations.commands.bus import CommandBus, KafkaUnavailable
from integrations.commands.model import DeviceDirectory, Outcome, command_requests
from schemas.events import PayloadRejected, normalize_payload

log = logging.getLogger(__name__)

__all__ = ["Refusal", "Submitted", "submit_command"]


class Refusal(StrEnum):
    NO_ACCESS = "no-access"  # no Write on the app, or no such app
    NO_DEVICE = "no-device"
    DISABLED = "disabled"
    BAD_PAYLOAD = "bad-payload"
    UNAVAILABLE = "unavailable"  # Kafka or the user store


@dataclass(frozen=True, slots=True)
class Submitted:
    """``refusal`` None: every request is on ``iot-commands``; ``outcome`` is set when a wait was asked for."""

    refusal: Refusal | None
    message: str = ""
    outcome: Outcome | None = None


async def submit_command(
    access: UserAccess, directory: DeviceDirectory, bus: CommandBus, caller: Caller, *, app: str, device: str,
    command: str, body: bytes, content_type: str | None, wait_s: float | None = None,
) -> Submitted:
    """Check, build and send one command; never raises for the caller's or the back end's faults."""
    try:
        if not await access.may(app, caller, "Write"):
            return Submitted(Refusal.NO_ACCESS, f"Not found Application / {app}")
        targets = await directory.command_targets(app, device)
    except (AuthUnavailable, AuthError) as e:
        return Submitted(Refusal.UNAVAILABLE, f"cannot check the permission: {e}")
    if targets is None:
        return Submitted(Refusal.NO_DEVICE, f"Device {device!r} of application {app!r} not found")
    if targets.app_disabled or targets.device_disabled:
        which = "application" if targets.app_disabled else "device"
        return Submitted(Refusal.DISABLED, f"The {which} is disabled")
    try:
        ct, payload = normalize_payload(body, content_type)
    except PayloadRejected as e:
        return Submitted(Refusal.BAD_PAYLOAD, str(e))
    reply_to = bus.instance_id if wait_s is not None else None
    requests = command_requests(app, device, targets, command, payload, ct, reply_to)
    try:
        outcome = await bus.send(requests, wait_s=wait_s)
    except KafkaUnavailable as e:
        log.warning("command %r for %s/%s refused: %s", command, app, device, e)
        return Submitted(Refusal.UNAVAILABLE, str(e))
    return Submitted(None, outcome=outcome if wait_s is not None else None)
