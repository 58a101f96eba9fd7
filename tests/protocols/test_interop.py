"""Real clients (paho-mqtt 3.1.1 and 5, gmqtt 5) against a tiny asyncio shell driving `ServerSession`
over loopback: the bytes the session writes are the bytes real clients expect."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from typing import Any

import paho.mqtt.client as paho
import pytest
from gmqtt import Client as GmqttClient
from gmqtt.mqtt.constants import MQTTv50
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from protocols.mqtt import (
    Connack,
    Connect,
    ConnectReceived,
    Decoder,
    Disconnect,
    Event,
    ProtocolVersion,
    ProtocolViolation,
    PubackReceived,
    PublishProperties,
    PublishReceived,
    ReasonCode,
    ServerSession,
    SessionConfig,
    SubscribeReceived,
    encode,
)

TIMEOUT = 10.0


class Connection(asyncio.Protocol):
    """The test-only I/O shell: moves bytes, keeps one timer, answers every request positively."""

    def __init__(self, server: TinyServer) -> None:
        self.server = server
        self.loop = asyncio.get_running_loop()
        self.session = ServerSession(SessionConfig(connect_timeout=5.0), now=self.loop.time())
        self.transport: asyncio.Transport | None = None
        self.timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self._rearm()

    def data_received(self, data: bytes) -> None:
        self._handle(self.session.receive(data, self.loop.time()))

    def connection_lost(self, exc: Exception | None) -> None:
        if self.timer is not None:
            self.timer.cancel()

    def _handle(self, events: list[Event]) -> None:
        for event in events:
            self.server.events.put_nowait(event)
            if isinstance(event, ConnectReceived):
                self.server.connections.append(self)
                assigned = None if event.connect.client_id else "assigned-1"
                self._handle(
                    self.session.connack(
                        assigned_client_identifier=assigned,
                        wildcard_subscription_available=True,
                        shared_subscription_available=False,
                        now=self.loop.time(),
                    )
                )
            elif isinstance(event, PublishReceived) and event.publish.packet_id is not None:
                self.session.puback(event.publish.packet_id)
            elif isinstance(event, SubscribeReceived):
                subs = event.subscribe.subscriptions
                self.session.suback(event.subscribe.packet_id, [ReasonCode(min(s.qos, 1)) for s in subs])
        self._flush()

    def _flush(self) -> None:
        assert self.transport is not None
        data = self.session.data_to_send()
        if data:
            self.transport.write(data)
        if self.session.closed:
            self.transport.close()
        self._rearm()

    def _rearm(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        deadline = self.session.next_deadline()
        if deadline is not None:
            self.timer = self.loop.call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        self.timer = None
        self._handle(self.session.poll(self.loop.time()))

    # what the endpoint would do
    def publish(self, topic: str, payload: bytes, qos: int, properties: PublishProperties | None = None) -> int | None:
        packet_id = self.session.publish(topic, payload, qos, properties=properties or PublishProperties())
        self._flush()
        return packet_id

    def kick(self, reason: ReasonCode) -> None:
        self.session.disconnect(reason)
        self._flush()


class TinyServer:
    def __init__(self) -> None:
        self.events: asyncio.Queue[Event] = asyncio.Queue()
        self.connections: list[Connection] = []
        self.port = 0

    async def next_event(self, kind: type[Any]) -> Any:
        """The next event of `kind` (others are skipped), bounded."""
        async with asyncio.timeout(TIMEOUT):
            while True:
                event = await self.events.get()
                if isinstance(event, kind):
                    return event
                assert not isinstance(event, ProtocolViolation), event


@pytest.fixture
async def server() -> AsyncIterator[TinyServer]:
    tiny = TinyServer()
    loop = asyncio.get_running_loop()
    srv = await loop.create_server(lambda: Connection(tiny), "127.0.0.1", 0)
    tiny.port = srv.sockets[0].getsockname()[1]
    yield tiny
    srv.close()
    for conn in tiny.connections:
        if conn.transport is not None:
            conn.transport.close()
    await srv.wait_closed()


async def _wait(event: threading.Event, what: str) -> None:
    assert await asyncio.to_thread(event.wait, TIMEOUT), f"paho: no {what} within {TIMEOUT} s"


class PahoProbe:
    """A paho client on its own network thread, its callbacks turned into threading events."""

    def __init__(self, version: ProtocolVersion) -> None:
        protocol = paho.MQTTv5 if version == ProtocolVersion.V5 else paho.MQTTv311
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id="dev1@app1", protocol=protocol)
        self.client.username_pw_set("dev1@app1", "secret")
        self.connected = threading.Event()
        self.published = threading.Event()
        self.subscribed = threading.Event()
        self.message = threading.Event()
        self.disconnected = threading.Event()
        self.connect_reason: Any = None
        self.granted: list[Any] = []
        self.messages: list[Any] = []
        self.disconnect_reason: Any = None
        self.client.on_connect = self._on_connect
        self.client.on_publish = lambda c, u, mid, rc, props: self.published.set()
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        self.client.on_disconnect = self._on_disconnect

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        self.connect_reason = reason
        self.connected.set()

    def _on_subscribe(self, client: Any, userdata: Any, mid: int, reasons: list[Any], props: Any) -> None:
        self.granted = reasons
        self.subscribed.set()

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        self.messages.append(message)
        self.message.set()

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        self.disconnect_reason = reason
        self.disconnected.set()


@pytest.mark.parametrize("version", [ProtocolVersion.V311, ProtocolVersion.V5], ids=["3.1.1", "5"])
async def test_paho(server: TinyServer, version: ProtocolVersion) -> None:
    probe = PahoProbe(version)
    client = probe.client
    v5 = version == ProtocolVersion.V5
    will_props = None
    if v5:
        will_props = Properties(PacketTypes.WILLMESSAGE)
        will_props.ContentType = "text/plain"
    client.will_set("will/dev1", b"gone", qos=1, properties=will_props)
    await asyncio.to_thread(client.connect, "127.0.0.1", server.port, 20)
    client.loop_start()
    try:
        connect = await server.next_event(ConnectReceived)
        assert connect.version == version
        assert connect.connect.username == "dev1@app1"
        assert connect.connect.password == b"secret"
        assert connect.connect.keepalive == 20
        assert connect.connect.will.topic == "will/dev1"
        if v5:
            assert connect.connect.will.properties.content_type == "text/plain"
        await _wait(probe.connected, "CONNACK")
        assert not probe.connect_reason.is_failure

        # device -> server, QoS 1 (PUBACK) and QoS 0
        props = None
        if v5:
            props = Properties(PacketTypes.PUBLISH)
            props.ContentType = "application/json"
            props.UserProperty = ("k", "v")
        client.publish("telemetry", b'{"temp":21}', qos=1, properties=props)
        got = await server.next_event(PublishReceived)
        assert got.publish.topic == "telemetry"
        assert got.publish.payload == b'{"temp":21}'
        assert got.publish.qos == 1
        if v5:
            assert got.publish.properties.content_type == "application/json"
            assert got.publish.properties.user_properties == (("k", "v"),)
        await _wait(probe.published, "PUBACK")
        client.publish("telemetry", b"q0", qos=0)
        assert (await server.next_event(PublishReceived)).publish.payload == b"q0"

        # subscriptions and a server -> client QoS 1 publish
        client.subscribe("command/inbox/#", qos=1)
        await server.next_event(SubscribeReceived)
        await _wait(probe.subscribed, "SUBACK")
        assert [int(getattr(r, "value", r)) for r in probe.granted] == [1]
        conn = server.connections[-1]
        packet_id = conn.publish("command/inbox//reboot", b"now", 1)
        assert (await server.next_event(PubackReceived)).packet_id == packet_id
        await _wait(probe.message, "PUBLISH")
        assert probe.messages[0].topic == "command/inbox//reboot"
        assert probe.messages[0].payload == b"now"
        assert probe.messages[0].qos == 1

        # the kick: MQTT 5 sees "Session taken over", 3.1.1 a closed connection
        conn.kick(ReasonCode.SESSION_TAKEN_OVER)
        await _wait(probe.disconnected, "disconnect")
        if v5:
            assert probe.disconnect_reason.value == 0x8E
    finally:
        client.disconnect()
        client.loop_stop()


async def test_gmqtt_v5(server: TinyServer) -> None:
    loop = asyncio.get_running_loop()
    connected: asyncio.Future[Any] = loop.create_future()
    subscribed: asyncio.Future[Any] = loop.create_future()
    message: asyncio.Future[Any] = loop.create_future()
    disconnected: asyncio.Future[Any] = loop.create_future()

    def done(future: asyncio.Future[Any], value: Any) -> None:
        if not future.done():
            future.set_result(value)

    client = GmqttClient("app-client", receive_maximum=4)
    client.set_config({"reconnect_retries": 0})
    client.on_connect = lambda c, flags, rc, props: done(connected, (rc, props))
    client.on_subscribe = lambda c, mid, qos, props: done(subscribed, qos)
    client.on_disconnect = lambda c, packet, exc=None: done(disconnected, packet)

    def on_message(c: Any, topic: str, payload: bytes, qos: int, props: dict[str, Any]) -> int:
        done(message, (topic, payload, qos, props))
        return 0

    client.on_message = on_message
    async with asyncio.timeout(TIMEOUT):
        await client.connect("127.0.0.1", server.port, version=MQTTv50, keepalive=30)
        connect = await server.next_event(ConnectReceived)
        assert connect.connect.client_id == "app-client"
        assert connect.connect.properties.receive_maximum == 4
        rc, props = await connected
        assert rc == 0
        assert props["max_qos"] == [1]
        assert props["maximum_packet_size"] == [SessionConfig().max_packet_size]
        assert props["topic_alias_maximum"] == [SessionConfig().topic_alias_maximum]
        assert props["wildcard_subscription_available"] == [1]

        client.publish("telemetry/x", b"hello", qos=1, content_type="text/plain", message_expiry_interval=60)
        got = await server.next_event(PublishReceived)
        assert got.publish.payload == b"hello"
        assert got.publish.properties.content_type == "text/plain"
        assert got.publish.properties.message_expiry_interval == 60

        client.subscribe("app/app1", qos=1, user_property=("content-mode", "binary"))
        sub = await server.next_event(SubscribeReceived)
        assert sub.subscribe.properties.user_properties == (("content-mode", "binary"),)
        assert list(await subscribed) == [1]

        conn = server.connections[-1]
        out = PublishProperties(
            payload_format_indicator=1,
            content_type="application/cloudevents+json; charset=utf-8",
            user_properties=(("ce_type", "io.drogue.event.v1"),),
        )
        packet_id = conn.publish("app/app1", b'{"specversion":"1.0"}', 1, out)
        topic, payload, qos, props = await message
        assert (topic, payload, qos) == ("app/app1", b'{"specversion":"1.0"}', 1)
        assert props["content_type"] == ["application/cloudevents+json; charset=utf-8"]
        assert (await server.next_event(PubackReceived)).packet_id == packet_id

        conn.kick(ReasonCode.SESSION_TAKEN_OVER)
        packet = await disconnected  # gmqtt hands over the DISCONNECT body: the reason code first
        assert bytes(packet)[:1] == b"\x8e"
    await asyncio.wait_for(client.disconnect(), TIMEOUT)


async def test_keepalive_timeout_with_a_silent_client(server: TinyServer) -> None:
    """A raw socket that connects with keep alive 1 and then says nothing is cut after 1.5 s."""
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(encode(Connect("silent", 5, keepalive=1), ProtocolVersion.V5))
    data = b""
    async with asyncio.timeout(TIMEOUT):
        while chunk := await reader.read(1024):
            data += chunk
    writer.close()
    packets = Decoder(ProtocolVersion.V5).feed(data)
    assert isinstance(packets[0], Connack)
    assert packets[-1] == Disconnect(ReasonCode.KEEP_ALIVE_TIMEOUT)
    violation = await server.next_event(ProtocolViolation)
    assert violation.reason == ReasonCode.KEEP_ALIVE_TIMEOUT
