"""Commands to HTTP devices waiting with ``ct`` (reference §7.1): one future per waiting request.

After a publish was acknowledged, a request with ``ct > 0`` registers a *command poll* with the device-state
agents (:meth:`PollLink.command_poll`, a waiter that is not a connection: no connection events, no effect on
an MQTT connection of the device) and waits up to ``ct`` seconds. The agent routes a command for (app, sender,
device) to the oldest live poll of that route when no connection holds it, as a
:class:`~schemas.state.DeliverCommand` whose ``connection_id`` is the poll id; the process's one
:class:`~ingress.state_client.StateClient` hands it to :meth:`CommandWaits.on_command`, which resolves the
request's future. Thousands of waiting requests are thousands of futures and one consumer.

Outcomes (``CommandOutcome`` to the command's requester): ``delivered`` once the 200 response carrying the
command was handed to the server; ``poll ended`` for a command reaching a poll whose request already timed
out, left, or was answered. A request that ends without a command ends its poll
(:meth:`PollLink.end_command_poll`, in the background: the 202 is not delayed by it), so later commands are
not routed to a request that is gone.

Until the state client runs (Kafka or the internal topics missing at start; it retries in the background),
a request still waits its ``ct`` and then answers 202: a device polling in a loop keeps its pace.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Coroutine
from typing import Any, Protocol

from schemas.state import POLL_ENDED, DeliverCommand

__all__ = ["CommandWaits", "PollLink", "header_safe"]

log = logging.getLogger(__name__)

#: bound on registering a poll (Kafka ack); past it the request waits without a poll (it can get no command)
REGISTER_TIMEOUT_S = 5.0


class PollLink(Protocol):
    """What the waits need of :class:`~ingress.state_client.StateClient`."""

    async def command_poll(self, app: str, device: str, poll_id: str, until: float,
                           sender: str | None = None) -> None: ...

    async def end_command_poll(self, app: str, device: str, poll_id: str, sender: str | None = None) -> None: ...

    async def command_outcome(self, command: DeliverCommand, delivered: bool, reason: str | None = None) -> None:
        ...


def header_safe(name: str) -> bool:
    """Whether a command name can be sent as the ``command`` response header (no control characters)."""
    return bool(name) and all(c == "\t" or (c >= " " and c != "\x7f") for c in name)


class CommandWaits:
    """The waiting requests of one HTTP endpoint process. ``link`` is None until the state client runs."""

    def __init__(self, link: PollLink | None = None) -> None:
        self.link = link
        self._waiting: dict[str, asyncio.Future[DeliverCommand]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        #: resolved by :meth:`release`; one future shared by every wait (no task per request for it)
        self._closing: asyncio.Future[None] | None = None
        self._active = 0
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    async def wait(
        self, app: str, device: str, sender: str | None, timeout_s: float, gone: Awaitable[Any]
    ) -> DeliverCommand | None:
        """Wait up to ``timeout_s`` for a command for ``device`` of ``app`` via ``sender`` (None: the device
        itself). None on timeout, when ``gone`` (the client left) completes first, or on :meth:`close`."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        left = asyncio.ensure_future(gone)
        closing = self._closing_future()
        link = self.link
        poll_id = uuid.uuid4().hex
        fut: asyncio.Future[DeliverCommand] = loop.create_future()
        registered = False
        self._active += 1
        self._idle.clear()
        try:
            if link is not None and not closing.done():
                self._waiting[poll_id] = fut
                registered = await self._register(link, app, device, poll_id, time.time() + timeout_s, sender)
            await asyncio.wait([fut, left, closing], timeout=max(deadline - loop.time(), 0.0),
                               return_when=asyncio.FIRST_COMPLETED)
            return fut.result() if fut.done() and not fut.cancelled() else None
        finally:
            left.cancel()
            self._waiting.pop(poll_id, None)
            if registered and not fut.done() and link is not None:
                self._spawn(link.end_command_poll(app, device, poll_id, sender))
            self._active -= 1
            if not self._active:
                self._idle.set()

    def _closing_future(self) -> asyncio.Future[None]:
        if self._closing is None:
            self._closing = asyncio.get_running_loop().create_future()
        return self._closing

    async def _register(
        self, link: PollLink, app: str, device: str, poll_id: str, until: float, sender: str | None
    ) -> bool:
        try:
            async with asyncio.timeout(REGISTER_TIMEOUT_S):
                await link.command_poll(app, device, poll_id, until, sender)
            return True
        except Exception as e:  # Kafka trouble: the publish is done; this request just gets no command
            log.warning("cannot register the command wait of %s/%s: %s", app, device, e or type(e).__name__)
            return False

    async def on_command(self, command: DeliverCommand) -> None:
        """A command for one of our polls (``connection_id`` = poll id), from the state client."""
        fut = self._waiting.get(command.connection_id)
        if fut is None or fut.done():
            await self._outcome(command, False, POLL_ENDED)
        elif not header_safe(command.command):
            await self._outcome(command, False, "command name not allowed in an HTTP header")
        else:
            fut.set_result(command)

    async def delivered(self, command: DeliverCommand) -> None:
        """The response with ``command`` went out: tell its requester."""
        await self._outcome(command, True, None)

    def release(self) -> None:
        """Answer every waiting request now (202) and wait no more (shutdown). Call in the loop's thread."""
        closing = self._closing_future()
        if not closing.done():
            closing.set_result(None)

    async def close(self) -> None:
        """:meth:`release`, then wait (bounded) for the waits to end and their polls' ends to be sent."""
        self.release()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), REGISTER_TIMEOUT_S)
        if self._tasks:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.gather(*self._tasks, return_exceptions=True), REGISTER_TIMEOUT_S)

    async def _outcome(self, command: DeliverCommand, delivered: bool, reason: str | None) -> None:
        if self.link is None:
            return
        try:
            await self.link.command_outcome(command, delivered, reason)
        except Exception as e:
            log.warning("cannot report the outcome of command %s: %s", command.request_id, e or type(e).__name__)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        async def guarded() -> None:
            try:
                await coro
            except Exception as e:
                log.warning("cannot end a command wait: %s", e or type(e).__name__)

        task = asyncio.ensure_future(guarded())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
