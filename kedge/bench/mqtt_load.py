"""One simulated MQTT device: a raw asyncio protocol writing pre-encoded frames (no MQTT client library)."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from kedge.bench.wire import CONNACK, DISCONNECT, PUBACK, Frame, split_frames

if TYPE_CHECKING:
    from kedge.bench.loadproc import Generator


class MqttDevice(asyncio.Protocol):
    """A connection of device ``index``; publishes when the generator tells it to (:meth:`publish`)."""

    def __init__(self, gen: Generator, index: int, connect: bytes) -> None:
        self.gen = gen
        self.index = index
        self.connect = connect
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.connack: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.connect_sent = 0.0
        self.connect_latency = 0.0
        self.closed = False
        self.paused = False
        self.seq = 0
        self.pid = 0
        self.inflight: dict[int, int] = {}  # packet id -> seq (QoS 1)
        self.unconfirmed: list[int] = []
        self.disconnect_reason: int | None = None

    # ------------------------------------------------------------------------------------------ asyncio

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's transports are not asyncio's classes
        self.connect_sent = time.perf_counter()
        self.transport.write(self.connect)  # type: ignore[union-attr]

    def data_received(self, data: bytes) -> None:
        self.buf += data
        try:
            frames = split_frames(self.buf)
        except ValueError:
            self.gen.error("malformed frame from server")
            self.abort()
            return
        acked = 0
        for frame in frames:
            if frame.kind == PUBACK:
                acked += self._puback(frame)
            elif frame.kind == CONNACK:
                self._connack(frame)
            elif frame.kind == DISCONNECT:
                self.disconnect_reason = frame.body[0] if frame.body else 0
                self.gen.error(f"server DISCONNECT 0x{self.disconnect_reason:02x}")
        if acked:
            self.gen.confirmed += acked
            if self.gen.flat_out and self.gen.running:
                self.publish(acked)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if not self.connack.done():
            self.connack.set_result(-1)
        elif self.gen.running:
            self.gen.error("connection closed by server")
        self.unconfirmed.extend(self.inflight.values())
        self.inflight.clear()
        self.gen.on_closed(self)

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        if self.gen.flat_out and self.gen.running and self.gen.spec.qos == 0:
            self.publish(self.gen.batch)

    # ------------------------------------------------------------------------------------------ packets

    def _connack(self, frame: Frame) -> None:
        self.connect_latency = time.perf_counter() - self.connect_sent
        code = frame.body[1] if len(frame.body) > 1 else 0xFF
        if not self.connack.done():
            self.connack.set_result(code)

    def _puback(self, frame: Frame) -> int:
        pid = int.from_bytes(frame.body[:2], "big")
        seq = self.inflight.pop(pid, None)
        if seq is None:
            self.gen.error("PUBACK for an unknown packet id")
            return 0
        code = frame.body[2] if len(frame.body) > 2 else 0
        if code >= 0x80:
            self.unconfirmed.append(seq)
            self.gen.error(f"PUBACK 0x{code:02x}")
            return 0
        return 1

    # ------------------------------------------------------------------------------------------ sending

    def room(self) -> int:
        """How many publishes this connection may send now."""
        if self.closed or self.paused or self.transport is None:
            return 0
        if self.gen.spec.qos:
            return max(0, self.gen.spec.inflight - len(self.inflight))
        return self.gen.batch

    def publish(self, n: int) -> int:
        n = min(n, self.room())
        if n <= 0:
            return 0
        gen, template, fmt = self.gen, self.gen.template, self.gen.fmt
        now = time.time_ns()
        frames = []
        if gen.spec.qos:
            for _ in range(n):
                pid = self.pid % 0xFFFF + 1
                while pid in self.inflight:
                    pid = pid % 0xFFFF + 1
                self.pid = pid
                self.inflight[pid] = self.seq
                frames.append(template.frame(fmt.make(self.index, self.seq, now), pid))
                self.seq += 1
        else:
            for _ in range(n):
                frames.append(template.frame(fmt.make(self.index, self.seq, now)))
                self.seq += 1
            gen.confirmed += n
        assert self.transport is not None
        self.transport.write(b"".join(frames))
        gen.sent += n
        return n

    def close(self, disconnect: bytes) -> None:
        if self.transport is not None and not self.closed:
            self.transport.write(disconnect)
            self.transport.close()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()
