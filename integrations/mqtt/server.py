"""The MQTT integration server, `kedge serve mqtt-integration` (reference §6): TCP on uvloop.

``kedge`` builds the parts that need the registry (the :class:`~integrations.auth.UserAccess` and the command
API's :class:`~integrations.commands.model.DeviceDirectory`) and hands them over; this package never imports
the registry. Stop (SIGTERM/SIGINT): refuse new connections, MQTT 5 DISCONNECT 0x8B to every client, let each
subscription commit what was acknowledged and leave its consumer group, stop the command producer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import ssl
import uuid
from collections.abc import Callable, Coroutine
from typing import Any

import uvloop

from integrations.auth import UserAccess
from integrations.commands.bus import CommandBus
from integrations.commands.model import DeviceDirectory
from integrations.mqtt.commands import CommandSender
from integrations.mqtt.connection import IntegrationConnection
from kedge.settings import IntegrationSettings, KafkaSettings
from kedge.tls import TlsSettingsError, listener_context
from protocols.mqtt import SessionConfig

log = logging.getLogger("kedge.mqtt_integration")

__all__ = ["MqttIntegration", "run"]

#: gets ``[(scheme, host, port)]`` of every listener (``mqtt``, ``mqtts``, ``ws``)
Ready = Callable[[list[tuple[str, str, int]]], None]

#: the client's unacknowledged QoS 1 command PUBLISHes (advertised as Receive Maximum); also the bound of
#: commands being sent per connection, above which the socket is not read
MAX_PENDING_COMMANDS = 64


class MqttIntegration:
    def __init__(self, access: UserAccess, directory: DeviceDirectory, integration: IntegrationSettings,
                 kafka_settings: KafkaSettings) -> None:
        self.access = access
        self.settings = integration
        self.kafka_settings = kafka_settings
        bus = CommandBus(kafka_settings, instance_id=f"mqtt-integration-{uuid.uuid4()}")
        self.commands = CommandSender(access, directory, bus)
        self.session_config = SessionConfig(
            connect_timeout=integration.mqtt_connect_timeout_s, max_packet_size=integration.mqtt_max_packet_bytes,
            receive_maximum=MAX_PENDING_COMMANDS, max_inflight=65535, retain_available=False,
        )
        self.max_pending_commands = MAX_PENDING_COMMANDS
        self.subscribe_timeout_s = integration.mqtt_subscribe_timeout_s
        self.connections: set[IntegrationConnection] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("task failed", exc_info=task.exception())

    async def serve(self, stop: asyncio.Event, on_ready: Ready | None = None) -> None:
        """Listen on ``mqtt_host:mqtt_port`` (and ``mqtt_tls_port``, ``mqtt_ws_port`` if set) until ``stop`` is
        set."""
        loop = asyncio.get_running_loop()
        s = self.settings
        tls = _tls_context(s) if s.mqtt_tls_port is not None else None
        servers = [await loop.create_server(lambda: IntegrationConnection(self), s.mqtt_host, s.mqtt_port,
                                            reuse_address=True, backlog=1024)]
        listening = [("mqtt", *servers[0].sockets[0].getsockname()[:2])]
        if tls is not None:
            servers.append(await loop.create_server(lambda: IntegrationConnection(self), s.mqtt_host,
                                                    s.mqtt_tls_port, ssl=tls, reuse_address=True, backlog=1024,
                                                    ssl_handshake_timeout=s.mqtt_connect_timeout_s))
            listening.append(("mqtts", *servers[1].sockets[0].getsockname()[:2]))
        if s.mqtt_ws_port is not None:
            from integrations.mqtt.websocket import serve_websocket

            ws = await serve_websocket(self, s.mqtt_host, s.mqtt_ws_port)
            listening.append(("ws", *next(iter(ws.sockets)).getsockname()[:2]))
        else:
            ws = None
        for scheme, host, port in listening:
            log.info("mqtt integration listening on %s://%s:%s", scheme, host, port)
        if on_ready is not None:
            on_ready(listening)
        try:
            await stop.wait()
        finally:
            for server in servers:
                server.close()
            if ws is not None:
                ws.close(close_connections=False)
            await self.shutdown()
            if ws is not None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(ws.wait_closed(), 10.0)

    async def shutdown(self) -> None:
        tasks = [task for conn in list(self.connections) for _, task in conn.subscriptions.values()]
        for conn in list(self.connections):
            conn.shutdown()
        if tasks:
            await asyncio.wait(tasks, timeout=10.0)
        pending = list(self._tasks)
        if pending:
            await asyncio.wait(pending, timeout=5.0)
        await self.commands.stop()


def _tls_context(s: IntegrationSettings) -> ssl.SSLContext:
    ctx = listener_context(s.mqtt_tls_cert, s.mqtt_tls_key, setting="KEDGE_INTEGRATION__MQTT_TLS")
    if ctx is None:
        raise TlsSettingsError("KEDGE_INTEGRATION__MQTT_TLS_PORT is set: it needs KEDGE_INTEGRATION__MQTT_TLS_CERT "
                               "and KEDGE_INTEGRATION__MQTT_TLS_KEY")
    return ctx


def run(access_factory: Callable[[], contextlib.AbstractAsyncContextManager[tuple[UserAccess, DeviceDirectory]]],
        integration: IntegrationSettings, kafka_settings: KafkaSettings, on_ready: Ready | None = None) -> None:
    """Serve on uvloop until SIGTERM or SIGINT (a clean stop, exit status 0)."""

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        try:
            async with access_factory() as (access, directory):
                await MqttIntegration(access, directory, integration, kafka_settings).serve(stop, on_ready)
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT):
                with contextlib.suppress(Exception):
                    loop.remove_signal_handler(sig)

    uvloop.run(main())
