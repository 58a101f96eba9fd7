"""MQTT over WebSocket (subprotocol ``mqtt``, reference §5): each binary message's bytes go into the same
:class:`~ingress.mqtt.connection.MqttConnection` as a TCP stream's; a small transport adapter writes the
session's bytes back as binary messages. A plain HTTP request (no upgrade) gets 404 "MQTT Web Socket protocol
only"."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from http import HTTPStatus
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from ingress.mqtt.endpoint import MqttEndpoint

__all__ = ["serve_websocket"]


class _WsTransport(asyncio.Transport):
    """The part of ``asyncio.Transport`` a connection uses, over one WebSocket."""

    def __init__(self, ws: ServerConnection) -> None:
        super().__init__()
        self.ws = ws
        self._out: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._closing = False
        self.readable = asyncio.Event()
        self.readable.set()
        self.sender = asyncio.create_task(self._send())

    async def _send(self) -> None:
        with contextlib.suppress(ConnectionClosed):
            while (data := await self._out.get()) is not None:
                await self.ws.send(data)
        await self.ws.close()

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not self._closing:
            self._out.put_nowait(bytes(data))

    def close(self) -> None:
        if not self._closing:
            self._closing = True
            self._out.put_nowait(None)

    def abort(self) -> None:
        self.close()

    def is_closing(self) -> bool:
        return self._closing

    def pause_reading(self) -> None:
        self.readable.clear()

    def resume_reading(self) -> None:
        self.readable.set()

    def is_reading(self) -> bool:
        return self.readable.is_set()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "peername":
            return self.ws.remote_address
        if name == "ssl_object":
            return self.ws.transport.get_extra_info("ssl_object", default)
        return default


def _plain_http(connection: ServerConnection, request: Request) -> Response | None:
    if request.headers.get("Upgrade", "").lower() != "websocket":
        return connection.respond(HTTPStatus.NOT_FOUND, "MQTT Web Socket protocol only\n")
    return None


async def serve_websocket(
    endpoint: MqttEndpoint, host: str, port: int, ssl_context: ssl.SSLContext | None = None
) -> Server:
    """Listen for MQTT over WebSocket on ``host:port`` (any path)."""

    async def handler(ws: ServerConnection) -> None:
        transport = _WsTransport(ws)
        conn = endpoint.protocol_factory()
        conn.connection_made(transport)
        try:
            async for message in ws:
                if isinstance(message, str):  # MQTT is binary
                    break
                await transport.readable.wait()
                conn.data_received(message)
                if transport.is_closing():
                    break
        except ConnectionClosed:
            pass
        finally:
            transport.close()
            conn.connection_lost(None)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(transport.sender, 5)

    return await serve(handler, host, port, subprotocols=["mqtt"],  # type: ignore[list-item]
                       process_request=_plain_http, ssl=ssl_context, compression=None,
                       max_size=endpoint.session_config.max_packet_size + 16, ping_interval=None)
