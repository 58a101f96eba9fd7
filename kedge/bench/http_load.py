"""One simulated HTTP device: a raw keep-alive HTTP/1.1 connection, one request in flight."""

from __future__ import annotations

import asyncio
import base64
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kedge.bench.loadproc import Generator

ACCEPTED = (200, 202)


def request_head(host: str, channel: str, user: str, password: str, size: int) -> bytes:
    auth = base64.b64encode(f"{user}:{password}".encode()).decode()
    return (f"POST /v1/{channel} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Basic {auth}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {size}\r\n\r\n").encode()


class HttpDevice(asyncio.Protocol):
    """Device ``index`` publishing over one keep-alive connection; :meth:`publish` sends one request."""

    def __init__(self, gen: Generator, index: int, head: bytes) -> None:
        self.gen = gen
        self.index = index
        self.head = head
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.ready: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.connect_latency = 0.0
        self.closed = False
        self.busy = False
        self.seq = 0
        self.pending: int | None = None
        self.unconfirmed: list[int] = []
        self.inflight: dict[int, int] = {}

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's transports are not asyncio's classes
        self.ready.set_result(0)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            length = 0
            for line in bytes(self.buf[:end]).split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            total = end + 4 + length
            if len(self.buf) < total:
                return
            try:
                status = int(self.buf[9:12])
            except ValueError:
                status = 0
            del self.buf[:total]
            self._answered(status)

    def _answered(self, status: int) -> None:
        seq, self.pending, self.busy = self.pending, None, False
        self.inflight.clear()
        if seq is None:
            self.gen.error("response without a request")
            return
        if status in ACCEPTED:
            self.gen.confirmed += 1
        else:
            self.unconfirmed.append(seq)
            self.gen.error(f"HTTP {status}")
        if self.gen.flat_out and self.gen.running:
            self.publish(1)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.pending is not None:
            self.unconfirmed.append(self.pending)
            self.pending = None
        if self.gen.running:
            self.gen.error("connection closed by server")
        if not self.ready.done():
            self.ready.set_result(-1)
        self.gen.on_closed(self)

    def room(self) -> int:
        return 0 if self.closed or self.busy or self.transport is None else 1

    def publish(self, n: int) -> int:
        if n <= 0 or not self.room():
            return 0
        assert self.transport is not None
        self.busy, self.pending = True, self.seq
        self.inflight[0] = self.seq
        self.transport.write(self.head + self.gen.fmt.make(self.index, self.seq, time.time_ns()))
        self.seq += 1
        self.gen.sent += 1
        return 1

    def close(self, _disconnect: bytes) -> None:
        if self.transport is not None and not self.closed:
            self.transport.close()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()
