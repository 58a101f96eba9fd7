"""The asyncio shell of one MQTT server session, shared by the device endpoint and the MQTT integration.

It only moves bytes: what arrives goes into :class:`protocols.mqtt.ServerSession`, what the session wants to
send is written, and one timer follows the session's next deadline (connect timeout, keepalive). Subclasses
act on the session's events in :meth:`SessionProtocol.handle_events` and decide when reading pauses
(:meth:`SessionProtocol.set_reading_paused`).
"""

from __future__ import annotations

import asyncio
from typing import cast

from protocols.mqtt import Event, ServerSession
from protocols.mqtt.session_config import SessionConfig

__all__ = ["SessionProtocol"]


class SessionProtocol(asyncio.Protocol):
    """One connection: a :class:`ServerSession` and the transport it talks through."""

    def __init__(self, config: SessionConfig) -> None:
        self.loop = asyncio.get_running_loop()
        self.session = ServerSession(config, now=self.loop.time())
        self.transport: asyncio.Transport | None = None
        self._reading_paused = False
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None

    def handle_events(self, events: list[Event]) -> None:
        """Act on what the session decoded (or on a deadline that passed)."""
        raise NotImplementedError

    # ------------------------------------------------------------------------------------------ transport

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # (uvloop's transports are not subclasses)
        self.arm_timer()

    def data_received(self, data: bytes) -> None:
        self.handle_events(self.session.receive(data, self.loop.time()))
        self.flush()

    def eof_received(self) -> bool:
        return False

    def cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def flush(self) -> None:
        """Write what the session has to send and follow its next deadline."""
        data = self.session.data_to_send()
        transport = self.transport
        if data and transport is not None and not transport.is_closing():
            transport.write(data)
        self.arm_timer()

    def close(self) -> None:
        """Send what is pending, then close the transport."""
        self.flush()
        if self.transport is not None:
            self.transport.close()

    def arm_timer(self) -> None:
        """Keep one timer at (or before) the session's next deadline; an early one just re-arms."""
        deadline = self.session.next_deadline()
        if deadline is None or (self._timer_at is not None and self._timer_at <= deadline):
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = deadline
        self._timer = self.loop.call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = self._timer_at = None
        self.handle_events(self.session.poll(self.loop.time()))
        self.flush()

    def set_reading_paused(self, pause: bool) -> None:
        """Stop (or resume) taking bytes from the socket: the back-pressure of the I/O shell."""
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if pause and not self._reading_paused:
            transport.pause_reading()
        elif not pause and self._reading_paused:
            transport.resume_reading()
        self._reading_paused = pause
