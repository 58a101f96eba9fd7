"""The MQTT endpoint of one process: its connections by connection id, and what reaches them from the
device-state agents (kicks, commands) through the :class:`~ingress.state_client.StateClient`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, Protocol

from prometheus_client import Gauge

from ingress.metrics import IngressMetrics
from ingress.mqtt.connection import MqttConnection
from ingress.mqtt.login import MqttLogin, mqtt_login
from ingress.mqtt.ratelimit import ConnectRateLimiter
from ingress.mqtt.tls import peer_chain
from ingress.publish import EventSink
from protocols.mqtt import Connect, ProtocolVersion, SessionConfig
from schemas.auth import DeviceAuthenticator
from schemas.state import DeliverCommand, Kick, Reason, Reply, Will

__all__ = ["MqttEndpoint", "MqttResources", "StateLink"]

log = logging.getLogger(__name__)


class StateLink(Protocol):
    """What the endpoint needs of :class:`~ingress.state_client.StateClient`."""

    async def connect(self, app: str, device: str, connection_id: str, protocol: str, app_uid: str,
                      device_uid: str, will: Will | None = None) -> Reply: ...

    async def disconnect(self, app: str, device: str, connection_id: str, reason: Reason = Reason.NORMAL,
                         skip_will: bool = False) -> None: ...

    async def command_outcome(self, command: DeliverCommand, delivered: bool, reason: str | None = None) -> None:
        ...


@dataclass(frozen=True, slots=True)
class MqttResources:
    """What the endpoint needs from outside, built once per process (``kedge.wiring``)."""

    authenticator: DeviceAuthenticator
    sink: EventSink


_VERSIONS = {ProtocolVersion.V311: "3.1.1", ProtocolVersion.V5: "5"}


class MqttEndpoint:
    """Creates the connections (``protocol_factory``) and routes kicks and commands to them."""

    def __init__(
        self,
        *,
        instance: str,
        authenticator: DeviceAuthenticator,
        sink: EventSink,
        state: StateLink,
        metrics: IngressMetrics,
        session_config: SessionConfig | None = None,
        max_pending: int = 64,
        as_cache_size: int = 128,
        as_cache_ttl_s: float = 30.0,
        connect_rate: ConnectRateLimiter | None = None,
    ) -> None:
        self.instance = instance
        self.authenticator = authenticator
        self.sink = sink
        self.state = state
        self.metrics = metrics
        self.session_config = session_config or SessionConfig()
        self.max_pending = max_pending
        self.as_cache_size = as_cache_size
        self.as_cache_ttl_s = as_cache_ttl_s
        self.connect_rate = connect_rate if connect_rate is not None else ConnectRateLimiter(None, 1)
        self.connections: dict[str, MqttConnection] = {}
        self.open: set[MqttConnection] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        #: connections with PUBACKs to write at the end of this loop iteration
        self._to_flush: dict[MqttConnection, None] = {}
        self._by_version = Gauge("kedge_mqtt_connections", "Open MQTT device connections by protocol version",
                                 ["version"], registry=metrics.registry)

    def protocol_factory(self) -> MqttConnection:
        return MqttConnection(self)

    # ------------------------------------------------------------------------------------------ for connections

    def login(self, connect: Connect, transport: asyncio.BaseTransport | None) -> MqttLogin | None:
        """The login of a CONNECT (with the client certificate of a TLS connection, if any)."""
        return mqtt_login(connect.username, connect.password, connect.client_id, peer_chain(transport))

    def connect_allowed(self, transport: asyncio.BaseTransport | None, now: float) -> bool:
        """Take a token of the connection's source address (the per-source connect rate limit)."""
        peer = transport.get_extra_info("peername") if transport is not None else None
        source = str(peer[0]) if isinstance(peer, tuple) and peer else str(peer)
        return self.connect_rate.allow(source, now)

    @staticmethod
    def protocol_name(version: ProtocolVersion) -> str:
        return f"mqtt/{_VERSIONS[version]}"

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Run ``coro`` in the background, kept until done; failures are logged."""
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def flush_soon(self, conn: MqttConnection) -> None:
        """Have ``conn`` write what it queued once this loop iteration's callbacks ran (one write for many
        PUBACKs that Kafka acknowledged in one batch)."""
        to_flush = self._to_flush
        if not to_flush:
            asyncio.get_running_loop().call_soon(self._flush)
        to_flush[conn] = None

    def _flush(self) -> None:
        to_flush, self._to_flush = self._to_flush, {}
        for conn in to_flush:
            conn.flush_acks()

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background task failed", exc_info=task.exception())

    def register(self, conn: MqttConnection) -> None:
        assert conn.connection_id is not None
        self.connections[conn.connection_id] = conn

    def unregister(self, conn: MqttConnection) -> None:
        if conn.connection_id is not None and self.connections.get(conn.connection_id) is conn:
            del self.connections[conn.connection_id]

    def connection_opened(self, conn: MqttConnection) -> None:
        self.open.add(conn)
        self.metrics.connections.inc()
        if conn.version is not None:
            self._by_version.labels(_VERSIONS[conn.version]).inc()

    def connection_closed(self, conn: MqttConnection) -> None:
        if conn in self.open:
            self.open.discard(conn)
            self.metrics.connections.dec()
            if conn.version is not None:
                self._by_version.labels(_VERSIONS[conn.version]).dec()

    # ------------------------------------------------------------------------------------------ from the agents

    def on_kick(self, kick: Kick) -> None:
        conn = self.connections.get(kick.connection_id)
        if conn is not None:
            conn.kick(kick.reason)

    async def on_command(self, command: DeliverCommand) -> None:
        conn = self.connections.get(command.connection_id)
        failure = conn.deliver(command) if conn is not None else "connection closed"
        await self.state.command_outcome(command, failure is None, failure)

    # ------------------------------------------------------------------------------------------ stop

    async def shutdown(self, timeout_s: float = 10.0) -> None:
        """Close every connection (telling the agent) and wait for the background work (publishes, requests)."""
        for conn in list(self.connections.values()):
            conn.shutdown()
        if self._tasks:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.gather(*self._tasks, return_exceptions=True), timeout_s)
