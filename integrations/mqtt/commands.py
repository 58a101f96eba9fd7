"""Commands published by applications: ``command/<app>/<device>/<command>`` -> ``iot-commands`` (reference §6, §7.3).

The same steps and parts as the HTTP command API (:mod:`integrations.commands.api`): Write on the app, the
device's targets from the :class:`~integrations.commands.model.DeviceDirectory`, the §2.2 payload rules (an
MQTT command has no content type, as in Drogue: JSON if it parses, else ``application/octet-stream``), one
:class:`~schemas.state.CommandRequest` per target through the :class:`~integrations.commands.bus.CommandBus`.

The outcome is an MQTT 5 PUBACK reason (§17 row 14.9 fixed: a refused command is not acknowledged as success):

| reason | when |
|---|---|
| 0x00 success | every request is on ``iot-commands`` |
| 0x87 not authorized | no Write on the app, the app or the device does not exist, or one of them is disabled |
| 0x80 unspecified error | Kafka or the user store is unavailable |
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass

from integrations.auth import AuthError, AuthUnavailable, Caller, UserAccess
from integrations.commands.bus import CommandBus, KafkaUnavailable
from integrations.commands.model import DeviceDirectory, command_requests
from integrations.mqtt.topics import CommandTopic
from protocols.mqtt import ReasonCode
from schemas.events import normalize_payload

log = logging.getLogger(__name__)

__all__ = ["CommandOutcome", "CommandSender", "PendingAck", "PubackQueue"]


@dataclass(frozen=True, slots=True)
class CommandOutcome:
    reason: ReasonCode
    message: str | None = None


class PendingAck:
    """A QoS 1 command PUBLISH whose PUBACK is not sent yet."""

    __slots__ = ("outcome", "packet_id")

    def __init__(self, packet_id: int) -> None:
        self.packet_id = packet_id
        self.outcome: CommandOutcome | None = None


class PubackQueue:
    """PUBACKs go out in the order the PUBLISHes came in (MQTT 4.6), whatever order the commands finish in."""

    def __init__(self) -> None:
        self._queue: deque[PendingAck] = deque()

    def expect(self, packet_id: int) -> PendingAck:
        ack = PendingAck(packet_id)
        self._queue.append(ack)
        return ack

    def done(self, ack: PendingAck, outcome: CommandOutcome) -> list[tuple[int, CommandOutcome]]:
        """Record ``ack``'s outcome; the PUBACKs due now, in order."""
        ack.outcome = outcome
        due: list[tuple[int, CommandOutcome]] = []
        while self._queue and self._queue[0].outcome is not None:
            head = self._queue.popleft()
            assert head.outcome is not None
            due.append((head.packet_id, head.outcome))
        return due


class CommandSender:
    """Sends one application command; never raises (the outcome says what happened)."""

    def __init__(self, access: UserAccess, directory: DeviceDirectory, bus: CommandBus) -> None:
        self.access = access
        self.directory = directory
        self.bus = bus

    async def send(self, caller: Caller, topic: CommandTopic, payload: bytes) -> CommandOutcome:
        app, device = topic.app, topic.device
        try:
            allowed = await self.access.may(app, caller, "Write")
            if not allowed:
                return CommandOutcome(ReasonCode.NOT_AUTHORIZED, f"not authorized: Write on application {app!r}")
            targets = await self.directory.command_targets(app, device)
        except (AuthUnavailable, AuthError) as e:
            return CommandOutcome(ReasonCode.UNSPECIFIED_ERROR, f"cannot check the permission: {e}")
        if targets is None:
            return CommandOutcome(ReasonCode.NOT_AUTHORIZED, f"device {device!r} of application {app!r} not found")
        if targets.app_disabled or targets.device_disabled:
            which = "application" if targets.app_disabled else "device"
            return CommandOutcome(ReasonCode.NOT_AUTHORIZED, f"the {which} is disabled")
        content_type, data = normalize_payload(payload, None)  # never rejects without a content type
        requests = command_requests(app, device, targets, topic.command, data, content_type, None)
        try:
            await self.bus.send(requests)
        except KafkaUnavailable as e:
            log.warning("command %r for %s/%s refused: %s", topic.command, app, device, e)
            return CommandOutcome(ReasonCode.UNSPECIFIED_ERROR, str(e))
        return CommandOutcome(ReasonCode.SUCCESS)

    async def stop(self) -> None:
        await self.bus.stop()
