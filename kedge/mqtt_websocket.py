"""MQTT over WebSocket (subprotocol ``mqtt``, any path), for the device endpoint and the integration alike.

Each binary message's bytes go into the same :class:`asyncio.Protocol` a TCP connection would get; a transport
adapter writes the protocol's bytes back as binary messages, with write back-pressure like a TCP transport:
above :data:`HIGH_WATER` bytes not yet sent it calls the protocol's ``pause_writing``, below :data:`LOW_WATER`
``resume_writing``; ``pause_reading`` stops taking messages from the socket. A plain HTTP request (no upgrade)
gets 404 "MQTT Web Socket protocol only" (reference §5).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections import deque
from collections.abc import Callable
from http import HTTPStatus
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

__all__ = ["HIGH_WATER", "LOW_WATER", "serve_mqtt_websocket"]

HIGH_WATER = 256 * 1024
LOW_WATER = 64 * 1024


class _WsTransport(asyncio.Transport):
    """The part of ``asyncio.Transport`` the connection uses, over one WebSocket."""

    def __init__(self, ws: ServerConnection, protocol: asyncio.BaseProtocol) -> None:
        super().__init__()
        self.ws = ws
        self.protocol = protocol
        self._out: deque[bytes] = deque()
        self._buffered = 0
        self._ready = asyncio.Event()
        self._closing = False
        self._writing_paused = False
        self.readable = asyncio.Event()
        self.readable.set()
        self.sender = asyncio.create_task(self._send())

    async def _send(self) -> None:
        with contextlib.suppress(ConnectionClosed):
            while True:
                while not self._out:
                    if self._closing:
                        await self.ws.close()
                        return
                    self._ready.clear()
                    await self._ready.wait()
                data = self._out.popleft()
                await self.ws.send(data)
                self._buffered -= len(data)
                if self._writing_paused and self._buffered <= LOW_WATER:
                    self._writing_paused = False
                    self.protocol.resume_writing()

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._closing:
            return
        chunk = bytes(data)
        self._out.append(chunk)
        self._buffered += len(chunk)
        self._ready.set()
        if not self._writing_paused and self._buffered > HIGH_WATER:
            self._writing_paused = True
            self.protocol.pause_writing()

    def get_write_buffer_size(self) -> int:
        return self._buffered

    def close(self) -> None:
        if not self._closing:
            self._closing = True
            self._ready.set()

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


async def serve_mqtt_websocket(protocol_factory: Callable[[], asyncio.Protocol], host: str, port: int, *,
                               max_packet_size: int, ssl_context: ssl.SSLContext | None = None) -> Server:
    """Listen for MQTT over WebSocket on ``host:port``; one ``protocol_factory()`` per connection."""

    async def handler(ws: ServerConnection) -> None:
        conn = protocol_factory()
        transport = _WsTransport(ws, conn)
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
                       max_size=max_packet_size + 16, ping_interval=None)
