"""Helpers for the MQTT endpoint tests: a raw MQTT client on our codec (exact bytes, async) and a fake
device-state link recording what the endpoint asked."""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from paho.mqtt.enums import MQTTProtocolVersion

from protocols.mqtt import Connack, Connect, Decoder, Packet, ProtocolVersion, encode
from schemas.state import DeliverCommand, Reason, Reply, Will

TIMEOUT = 10.0


class RawClient:
    """One TCP connection speaking MQTT through :mod:`protocols.mqtt` (the client's view of the stream)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, version: int) -> None:
        self.reader, self.writer = reader, writer
        self.version = version
        self.decoder = Decoder(ProtocolVersion(version))
        self.packets: list[Packet] = []

    @classmethod
    async def open(cls, port: int, connect: Connect, ssl: ssl.SSLContext | None = None) -> tuple[RawClient, Connack]:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ssl)
        client = cls(reader, writer, connect.protocol_level)
        await client.send(connect)
        connack = await client.recv()
        assert isinstance(connack, Connack), connack
        return client, connack

    async def send(self, packet: Packet) -> None:
        self.writer.write(encode(packet, self.version))
        await self.writer.drain()

    async def recv(self, timeout_s: float = TIMEOUT) -> Packet | None:
        """The next packet from the server; None when it closed the connection."""
        async with asyncio.timeout(timeout_s):
            while not self.packets:
                data = await self.reader.read(65536)
                if not data:
                    return None
                self.packets.extend(self.decoder.feed(data))
        return self.packets.pop(0)

    async def closed(self, timeout_s: float = TIMEOUT) -> bool:
        """True once the server closed the connection (packets before that are dropped)."""
        while True:
            if await self.recv(timeout_s) is None:
                return True

    def close(self) -> None:
        self.writer.close()


@dataclass
class FakeState:
    """A :class:`ingress.mqtt.endpoint.StateLink` that accepts every connect unless told otherwise."""

    accept: bool = True
    down: bool = False
    connects: list[tuple[str, str, str, str, Will | None]] = field(default_factory=list)
    disconnects: list[tuple[str, str, str, Reason, bool]] = field(default_factory=list)
    outcomes: list[tuple[str, bool, str | None]] = field(default_factory=list)

    async def connect(self, app: str, device: str, connection_id: str, protocol: str, app_uid: str,
                      device_uid: str, will: Will | None = None) -> Reply:
        if self.down:
            from ingress.state_client import StateUnavailable

            raise StateUnavailable("no agent")
        self.connects.append((app, device, connection_id, protocol, will))
        return Reply("r", connection_id, self.accept, None if self.accept else Reason.ERROR)

    async def disconnect(self, app: str, device: str, connection_id: str, reason: Reason = Reason.NORMAL,
                         skip_will: bool = False) -> None:
        self.disconnects.append((app, device, connection_id, reason, skip_will))

    async def command_outcome(self, command: DeliverCommand, delivered: bool, reason: str | None = None) -> None:
        self.outcomes.append((command.request_id, delivered, reason))


class Paho:
    """A paho-mqtt client driven by hand (``loop`` steps, no background thread, no automatic reconnect).
    Blocking: call it through ``asyncio.to_thread``."""

    def __init__(self, port: int, user: str, password: str, protocol: MQTTProtocolVersion,
                 client_id: str = "paho", transport: Literal["tcp", "websockets"] = "tcp") -> None:
        import paho.mqtt.client as paho
        from paho.mqtt.enums import CallbackAPIVersion

        self.port = port
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=protocol,
                                  transport=transport)
        self.client.username_pw_set(user, password)
        self.connack: int | None = None
        self.disconnect_reason: int | None = None
        self.acked: set[int] = set()
        self.messages: list[tuple[str, bytes]] = []
        self.subscribed: list[list[int]] = []

        def on_connect(c: object, u: object, flags: object, rc: Any, props: object) -> None:
            self.connack = rc.value

        def on_disconnect(c: object, u: object, flags: object, rc: Any, props: object) -> None:
            self.disconnect_reason = rc.value

        def on_publish(c: object, u: object, mid: int, rc: object, props: object) -> None:
            self.acked.add(mid)

        def on_message(c: object, u: object, msg: Any) -> None:
            self.messages.append((msg.topic, msg.payload))

        def on_subscribe(c: object, u: object, mid: int, codes: list[Any], props: object) -> None:
            self.subscribed.append([code.value for code in codes])

        self.client.on_connect = on_connect
        self.client.on_disconnect = on_disconnect
        self.client.on_publish = on_publish
        self.client.on_message = on_message
        self.client.on_subscribe = on_subscribe

    def pump(self, until: Callable[[], object], what: str, timeout_s: float = TIMEOUT) -> None:
        deadline = time.monotonic() + timeout_s
        while not until():
            if time.monotonic() > deadline:
                raise AssertionError(f"paho: timed out waiting for {what}")
            self.client.loop(0.05)

    def connect(self) -> int:
        self.client.connect("127.0.0.1", self.port, keepalive=30)
        self.pump(lambda: self.connack is not None or self.disconnect_reason is not None, "CONNACK")
        assert self.connack is not None
        return self.connack

    def publish(self, topic: str, payload: bytes, qos: int = 1) -> None:
        info = self.client.publish(topic, payload, qos=qos)
        self.pump(lambda: info.mid in self.acked, f"PUBACK of {topic}")

    def subscribe(self, topic_filter: str) -> list[int]:
        self.client.subscribe(topic_filter, qos=0)
        self.pump(lambda: self.subscribed, "SUBACK")
        return self.subscribed.pop(0)

    def disconnect(self) -> None:
        self.client.disconnect()
        self.pump(lambda: self.disconnect_reason is not None, "close after DISCONNECT")
