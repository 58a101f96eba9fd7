"""Run the MQTT endpoint on uvloop until SIGTERM/SIGINT (`kedge serve mqtt`).

Start: the resources (authenticator, publisher), the device-state client (its lease exists before the first
connect), then the TCP listener, and optionally a tiny HTTP listener for ``GET /metrics``. Stop: refuse new
connections, close the open ones (MQTT 5 DISCONNECT 0x8B) telling the agent, wait for the publishes in flight,
then release the lease (``StateClient.stop``) and flush the producer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import ssl
import uuid
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager

import uvloop

from ingress.metrics import CONTENT_TYPE_LATEST, IngressMetrics
from ingress.mqtt.endpoint import MqttEndpoint, MqttResources
from ingress.mqtt.ratelimit import ConnectRateLimiter
from ingress.state_client import StateClient
from kedge.settings import Settings
from kedge.tls import TlsSettingsError, server_context
from protocols.mqtt import SessionConfig

__all__ = ["run", "serve", "tls_context"]

log = logging.getLogger(__name__)

Ready = Callable[[list[tuple[str, str, int]]], None]


def session_config(settings: Settings) -> SessionConfig:
    m = settings.mqtt
    return SessionConfig(connect_timeout=m.connect_timeout_s, max_packet_size=m.max_packet_bytes,
                         receive_maximum=m.max_pending_publishes)


async def serve(
    settings: Settings,
    metrics: IngressMetrics,
    resources: Callable[[], AbstractAsyncContextManager[MqttResources]],
    stop: asyncio.Event,
    on_ready: Ready | None = None,
) -> None:
    """Serve until ``stop`` is set; ``on_ready`` gets ``[(kind, host, port)]`` of every listener."""
    m = settings.mqtt
    loop = asyncio.get_running_loop()
    tls = tls_context(settings)  # before anything starts: a bad TLS setting is one line, not a traceback
    async with resources() as res:
        state = StateClient(settings.kafka, settings.lease, instance_id=f"mqtt-{uuid.uuid4()}",
                            topology=settings.topology)
        await state.start()
        try:
            endpoint = MqttEndpoint(
                instance=settings.instance, authenticator=res.authenticator, sink=res.sink, state=state,
                metrics=metrics, session_config=session_config(settings), max_pending=m.max_pending_publishes,
                as_cache_size=m.as_cache_size, as_cache_ttl_s=m.as_cache_ttl_s,
                connect_rate=ConnectRateLimiter(m.connect_rate_per_source, m.connect_burst_per_source),
            )
            state.on_kick = endpoint.on_kick
            state.on_command = endpoint.on_command
            servers = [await loop.create_server(endpoint.protocol_factory, m.host, m.port, reuse_address=True,
                                                backlog=1024)]
            listening = [("mqtt", *servers[0].sockets[0].getsockname()[:2])]
            if m.tls_port is not None:
                servers.append(await loop.create_server(endpoint.protocol_factory, m.host, m.tls_port, ssl=tls,
                                                        reuse_address=True, backlog=1024,
                                                        ssl_handshake_timeout=m.connect_timeout_s))
                listening.append(("mqtts", *servers[-1].sockets[0].getsockname()[:2]))
            if m.ws_port is not None:
                from ingress.mqtt.websocket import serve_websocket

                ws = await serve_websocket(endpoint, m.host, m.ws_port)
                servers.append(ws)  # type: ignore[arg-type]
                listening.append(("ws", *next(iter(ws.sockets)).getsockname()[:2]))
            if m.wss_port is not None:
                from ingress.mqtt.websocket import serve_websocket

                wss = await serve_websocket(endpoint, m.host, m.wss_port, ssl_context=tls)
                servers.append(wss)  # type: ignore[arg-type]
                listening.append(("wss", *next(iter(wss.sockets)).getsockname()[:2]))
            if m.metrics_port is not None:
                servers.append(await asyncio.start_server(_metrics_handler(metrics), m.host, m.metrics_port))
                listening.append(("metrics", *servers[-1].sockets[0].getsockname()[:2]))
            if on_ready is not None:
                on_ready(listening)
            await stop.wait()
            for server in servers:
                server.close()
            await endpoint.shutdown()
        finally:
            await state.stop(release=True)


def tls_context(settings: Settings) -> ssl.SSLContext | None:
    """The context of the TLS listeners (``tls_port``: mqtts, ``wss_port``: MQTT over wss), None without them."""
    m = settings.mqtt
    if m.tls_port is None and m.wss_port is None:
        return None
    if m.tls_cert is None or m.tls_key is None:
        raise TlsSettingsError("KEDGE_MQTT__TLS_PORT and KEDGE_MQTT__WSS_PORT need KEDGE_MQTT__TLS_CERT and "
                               "KEDGE_MQTT__TLS_KEY")
    return server_context(m.tls_cert, m.tls_key, m.tls_client_ca, setting="KEDGE_MQTT__TLS")


def _metrics_handler(
    metrics: IngressMetrics,
) -> Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(5):
                head = await reader.readuntil(b"\r\n\r\n")
            line = head.split(b"\r\n", 1)[0].split()
            if len(line) >= 2 and line[0] in (b"GET", b"HEAD") and line[1] == b"/metrics":
                body, status, ctype = metrics.render(), b"200 OK", CONTENT_TYPE_LATEST.encode()
            else:
                body, status, ctype = b"not found\n", b"404 Not Found", b"text/plain"
            writer.write(b"HTTP/1.1 " + status + b"\r\nContent-Type: " + ctype + b"\r\nContent-Length: "
                         + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n"
                         + (b"" if line[:1] == [b"HEAD"] else body))
            await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            pass
        finally:
            writer.close()

    return handle


def run(
    settings: Settings,
    metrics: IngressMetrics,
    resources: Callable[[], AbstractAsyncContextManager[MqttResources]],
    on_ready: Ready | None = None,
) -> None:
    """Serve in this thread on uvloop until SIGTERM or SIGINT (a clean stop, exit status 0)."""

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        try:
            await serve(settings, metrics, resources, stop, on_ready)
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT):
                with contextlib.suppress(Exception):
                    loop.remove_signal_handler(sig)

    uvloop.run(main())
