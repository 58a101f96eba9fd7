"""Commands published by applications: ``command/<app>/<device>/<command>`` -> ``iot-commands`` (reference §6, §7.3).

The same steps as the HTTP command API, in one place: :func:`integrations.commands.submit.submit_command` (an
MQTT command has no content type, as in Drogue: JSON if it parses, else ``application/octet-stream``).

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
from typing import Final

from integrations.auth import Caller, UserAccess
from integrations.commands.bus import CommandBus
from integrations.commands.model import DeviceDirectory
from integrations.commands.submit import Refusal, submit_command
from integrations.mqtt.topics import CommandTopic
from protocols.mqtt import ReasonCode

log = logging.getLogger(__name__)

__all__ = ["CommandOutcome", "CommandSender", "PendingAck", "PubackQueue"]


_REFUSALS: Final[dict[Refusal, ReasonCode]] = {
    Refusal.NO_ACCESS: ReasonCode.NOT_AUTHORIZED,
    Refusal.NO_DEVICE: ReasonCode.NOT_AUTHORIZED,
    Refusal.DISABLED: ReasonCode.NOT_AUTHORIZED,
    Refusal.BAD_PAYLOAD: ReasonCode.UNSPECIFIED_ERROR,
    Refusal.UNAVAILABLE: ReasonCode.UNSPECIFIED_ERROR,
}


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
        # an MQTT command has no content type, as in Drogue: JSON if it parses, else octet-stream
        done = await submit_command(self.access, self.directory, self.bus, caller, app=topic.app,
                                    device=topic.device, command=topic.command, body=payload, content_type=None)
        if done.refusal is None:
            return CommandOutcome(ReasonCode.SUCCESS)
        return CommandOutcome(_REFUSALS[done.refusal], done.message)

    async def stop(self) -> None:
        await self.bus.stop()
