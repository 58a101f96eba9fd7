"""The MQTT endpoint in-process on a real loopback socket, with small fakes for the registry, Kafka and the
device-state agent: CONNACK codes, publish outcomes -> PUBACK codes, back-pressure, subscriptions, commands,
kicks and the disconnect reasons told to the agent. Clients: raw bytes through our codec (exact codes) and
paho-mqtt (a real client)."""

from __future__ import annotations

import asyncio
import ssl
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import httpx
import orjson
import paho.mqtt.client as paho
import pytest
import trustme
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from ingress.metrics import IngressMetrics
from ingress.mqtt.endpoint import MqttEndpoint
from ingress.mqtt.tls import server_context
from ingress.mqtt.websocket import serve_websocket
from ingress.publish import PublishUnavailable, QueueFull
from protocols.mqtt import (
    Connect,
    Disconnect,
    PubAck,
    Publish,
    PublishProperties,
    ReasonCode,
    SubAck,
    Subscribe,
    SubscribeProperties,
    Subscription,
    UnsubAck,
    Unsubscribe,
    Will,
    WillProperties,
    encode,
)
from schemas.auth import CertCredential
from schemas.events import DeviceEvent
from schemas.state import DeliverCommand, Kick, Reason
from tests.ingress.fakes import FakeAuthenticator, FakeDevice, RecordingSink
from tests.ingress.mqtt_support import FakeState, RawClient
from tests.support.procs import eventually

APP = "app1"


class GatedSink(RecordingSink):
    """Holds every QoS 1 publish until ``gate`` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.waiting = 0

    async def publish(self, event: DeviceEvent, *, topic_ready: bool = True) -> None:
        self.waiting += 1
        await self.gate.wait()
        self.waiting -= 1
        self.publish_nowait(event, topic_ready=topic_ready)


@dataclass
class Stack:
    port: int
    endpoint: MqttEndpoint
    auth: FakeAuthenticator
    sink: RecordingSink
    state: FakeState


@pytest.fixture
async def stack() -> AsyncIterator[Stack]:
    auth = FakeAuthenticator([
        FakeDevice(APP, "dev1", "secret", user=("alice", "pw")),
        FakeDevice(APP, "gw", "secret"),
        FakeDevice(APP, "child", "secret", gateways=("gw",)),
        FakeDevice(APP, "off", "secret", disabled=True),
    ])
    sink, state = RecordingSink(), FakeState()
    endpoint = MqttEndpoint(instance="test", authenticator=auth, sink=sink, state=state,
                            metrics=IngressMetrics("mqtt"), max_pending=4)
    server = await asyncio.get_running_loop().create_server(endpoint.protocol_factory, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    yield Stack(port, endpoint, auth, sink, state)
    server.close()
    await endpoint.shutdown(2)


def connect(version: int, user: str | None = "dev1@app1", password: bytes | None = b"secret", **kw: object) -> Connect:
    return Connect(kw.pop("client_id", "c1"), version, username=user, password=password, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("user", "password", "client_id", "v3", "v5"),
    [
        ("dev1@app1", b"wrong", "c", 4, ReasonCode.BAD_USER_NAME_OR_PASSWORD),
        ("nobody@app1", b"secret", "c", 4, ReasonCode.BAD_USER_NAME_OR_PASSWORD),
        ("dev1@app1", None, "c", 4, ReasonCode.BAD_USER_NAME_OR_PASSWORD),
        (None, None, "c", 4, ReasonCode.BAD_USER_NAME_OR_PASSWORD),
        ("alice", b"pw", "nodevice", 4, ReasonCode.BAD_USER_NAME_OR_PASSWORD),
        ("off@app1", b"secret", "c", 5, ReasonCode.NOT_AUTHORIZED),
    ],
)
async def test_refused_connects_get_the_connack_code_of_the_reason(
    stack: Stack, user: str | None, password: bytes | None, client_id: str, v3: int, v5: ReasonCode
) -> None:
    for version, code in ((4, v3), (5, v5)):
        client, connack = await RawClient.open(stack.port, connect(version, user, password, client_id=client_id))
        assert connack.reason_code == code, (version, connack)
        assert await client.closed()
    assert stack.state.connects == []


async def test_user_credential_with_client_id_device_at_app(stack: Stack) -> None:
    client, connack = await RawClient.open(stack.port, connect(5, "alice", b"pw", client_id="dev1@app1"))
    assert connack.reason_code == ReasonCode.SUCCESS
    assert stack.state.connects[0][:2] == (APP, "dev1")
    client.close()


async def test_back_end_failures_answer_server_unavailable(stack: Stack) -> None:
    stack.auth.down = True
    for version, code in ((4, 3), (5, ReasonCode.SERVER_UNAVAILABLE)):
        _, connack = await RawClient.open(stack.port, connect(version))
        assert connack.reason_code == code
    stack.auth.down = False
    stack.state.down = True
    for version, code in ((4, 3), (5, ReasonCode.SERVER_UNAVAILABLE)):
        _, connack = await RawClient.open(stack.port, connect(version))
        assert connack.reason_code == code
    # the connection the agent may have accepted late is ended, without its Will
    await eventually(lambda: len(stack.state.disconnects) == 2, 5, "cleanup disconnects")
    assert {d[3:] for d in stack.state.disconnects} == {(Reason.ERROR, True)}
    stack.state.down = False
    stack.state.accept = False
    _, connack = await RawClient.open(stack.port, connect(5))
    assert connack.reason_code == ReasonCode.SERVER_UNAVAILABLE


async def test_persistent_session_is_refused(stack: Stack) -> None:
    _, connack = await RawClient.open(stack.port, connect(4, clean_start=False))
    assert connack.reason_code == 2  # identifier rejected
    _, connack = await RawClient.open(stack.port, connect(5, clean_start=False))
    assert connack.reason_code == ReasonCode.IMPLEMENTATION_SPECIFIC_ERROR
    assert stack.state.connects == []


async def test_v5_publish_outcomes_map_to_puback_codes(stack: Stack) -> None:
    will = Will("lwt", b"bye", properties=WillProperties(content_type="text/plain"))
    client, connack = await RawClient.open(stack.port, connect(5, will=will))
    assert connack.reason_code == ReasonCode.SUCCESS
    (app, dev, _cid, protocol, sent_will) = stack.state.connects[0]
    assert (app, dev, protocol) == (APP, "dev1", "mqtt/5")
    assert sent_will is not None and (sent_will.channel, sent_will.payload, sent_will.content_type) == (
        "lwt", b"bye", "text/plain")

    async def ack(topic: str, payload: bytes = b"{}", pid: int = 1, ct: str | None = None) -> int:
        await client.send(Publish(topic, payload, 1, packet_id=pid,
                                  properties=PublishProperties(content_type=ct)))
        puback = await client.recv()
        assert isinstance(puback, PubAck) and puback.packet_id == pid, puback
        return puback.reason_code

    assert await ack("telemetry") == ReasonCode.SUCCESS
    assert await ack("a/b/c") == ReasonCode.TOPIC_NAME_INVALID
    assert await ack("/x") == ReasonCode.TOPIC_NAME_INVALID
    assert await ack("telemetry/child") == ReasonCode.NOT_AUTHORIZED  # dev1 is not child's gateway
    assert await ack("telemetry", b"not json", ct="application/json") == ReasonCode.UNSPECIFIED_ERROR
    stack.sink.fail = QueueFull("full")
    assert await ack("telemetry") == ReasonCode.QUOTA_EXCEEDED
    stack.sink.fail = PublishUnavailable("down")
    assert await ack("telemetry") == ReasonCode.UNSPECIFIED_ERROR
    stack.sink.fail = None
    assert len(stack.sink.events) == 1
    event = stack.sink.events[0]
    assert (event.subject, event.device, event.sender, event.application) == ("telemetry", "dev1", "dev1", APP)

    await client.send(Disconnect(ReasonCode.DISCONNECT_WITH_WILL_MESSAGE))
    assert await client.closed()
    await eventually(lambda: stack.state.disconnects, 5, "the disconnect request")
    assert stack.state.disconnects[0][3:] == (Reason.NORMAL, False)


async def test_gateway_publishes_on_behalf_of_its_device_with_cached_authorization(stack: Stack) -> None:
    client, _ = await RawClient.open(stack.port, connect(5, "gw@app1"))
    for pid in (1, 2):
        await client.send(Publish("telemetry/child", b"1", 1, packet_id=pid))
        puback = await client.recv()
        assert isinstance(puback, PubAck) and puback.reason_code == ReasonCode.SUCCESS
    assert [(e.device, e.sender) for e in stack.sink.events] == [("child", "gw")] * 2
    assert stack.auth.as_calls == [("gw", "child")]  # the second one came from the cache
    await client.send(Disconnect())
    assert await client.closed()
    await eventually(lambda: stack.state.disconnects, 5, "the disconnect request")
    assert stack.state.disconnects[0][3:] == (Reason.NORMAL, True)  # a normal DISCONNECT skips the Will


async def test_v311_failed_publish_closes_instead_of_acking(stack: Stack) -> None:
    client, _ = await RawClient.open(stack.port, connect(4))
    await client.send(Publish("telemetry", b"1", 1, packet_id=1))
    assert isinstance(await client.recv(), PubAck)
    await client.send(Publish("a/b/c", b"1", 1, packet_id=2))
    assert await client.recv() is None  # closed, no PUBACK
    await eventually(lambda: stack.state.disconnects, 5, "the disconnect request")
    assert stack.state.disconnects[0][3:] == (Reason.ERROR, False)


async def test_qos2_is_refused(stack: Stack) -> None:
    client, _ = await RawClient.open(stack.port, connect(5))
    await client.send(Publish("telemetry", b"1", 2, packet_id=1))
    answer = await client.recv()
    assert isinstance(answer, Disconnect) and answer.reason_code == ReasonCode.QOS_NOT_SUPPORTED
    assert await client.closed()
    client3, _ = await RawClient.open(stack.port, connect(4))
    await client3.send(Publish("telemetry", b"1", 2, packet_id=1))
    assert await client3.recv() is None
    assert stack.sink.events == []
    await eventually(lambda: len(stack.state.disconnects) == 2, 5, "the disconnect requests")
    assert {d[3:] for d in stack.state.disconnects} == {(Reason.ERROR, False)}


async def test_pubacks_wait_for_kafka_in_order_and_reading_pauses(stack: Stack) -> None:
    sink = GatedSink()
    stack.endpoint.sink = sink
    client, _ = await RawClient.open(stack.port, connect(4))
    for pid in range(1, 5):
        await client.send(Publish("telemetry", str(pid).encode(), 1, packet_id=pid))
    await eventually(lambda: sink.waiting == 4, 5, "four publishes waiting for Kafka")
    for pid in range(5, 9):
        await client.send(Publish("telemetry", str(pid).encode(), 1, packet_id=pid))
    await asyncio.sleep(0.2)  # give the endpoint the chance to (wrongly) read more
    assert sink.waiting == 4, "reading must pause at max_pending unacked publishes"
    with pytest.raises(TimeoutError):
        await client.recv(0.2)  # nothing acked before Kafka acked
    sink.gate.set()
    acks = [await client.recv() for _ in range(8)]
    assert [a.packet_id for a in acks if isinstance(a, PubAck)] == list(range(1, 9))
    assert [e.data for e in sink.events] == [str(i).encode() for i in range(1, 9)]


class FillingSink(RecordingSink):
    """Saturated after every ``room`` best-effort events, until the test frees it (``wait_room``)."""

    def __init__(self, room: int) -> None:
        super().__init__()
        self.room = room
        self.freed = asyncio.Event()
        self.waits = 0

    @property
    def saturated(self) -> bool:
        return len(self.events) > 0 and len(self.events) % self.room == 0 and not self.freed.is_set()

    async def wait_room(self) -> None:
        self.waits += 1
        await self.freed.wait()
        self.freed.clear()


async def test_qos0_back_pressure_holds_what_was_read_and_drops_nothing(stack: Stack) -> None:
    """One read brings many QoS 0 PUBLISHes; when the publisher fills up halfway, the rest waits in order."""
    sink = FillingSink(room=5)
    stack.endpoint.sink = sink
    client, _ = await RawClient.open(stack.port, connect(4))
    frames = b"".join(encode(Publish("telemetry", b"%d" % n, 0), 4) for n in range(12))
    last = encode(Publish("telemetry", b"last", 1, packet_id=7), 4)  # its PUBACK tells when all were handled
    client.writer.write(frames + last)  # one write: one read on the endpoint
    await client.writer.drain()
    for filled in (5, 10):
        await eventually(lambda filled=filled: len(sink.events) == filled and sink.waits == filled // 5, 5,
                         f"the endpoint to stop at {filled} events")
        with pytest.raises(TimeoutError):
            await client.recv(0.1)  # the QoS 1 PUBLISH behind the held ones is not handled yet
        sink.freed.set()
    ack = await client.recv()
    assert isinstance(ack, PubAck) and ack.packet_id == 7
    assert [e.data for e in sink.events] == [b"%d" % n for n in range(12)] + [b"last"]
    client.close()


async def test_subscriptions_commands_and_unsubscribe(stack: Stack) -> None:
    client, _ = await RawClient.open(stack.port, connect(5, "gw@app1"))
    filters = ["command/inbox//#", "command/inbox/child/#", "command/inbox/+/#", "other/#", "command/inbox"]
    await client.send(Subscribe(1, tuple(Subscription(f, 1) for f in filters)))
    suback = await client.recv()
    assert isinstance(suback, SubAck)
    assert list(suback.reason_codes) == [0, 0, 0, ReasonCode.UNSPECIFIED_ERROR, ReasonCode.UNSPECIFIED_ERROR]
    await client.send(Subscribe(2, (Subscription("command/inbox/#"),), SubscribeProperties(7)))
    suback = await client.recv()
    assert isinstance(suback, SubAck)
    assert list(suback.reason_codes) == [ReasonCode.SUBSCRIPTION_IDENTIFIERS_NOT_SUPPORTED]

    cid = stack.state.connects[0][2]

    def command(device: str, name: str) -> DeliverCommand:
        return DeliverCommand(APP, device, cid, name, b"go", "text/plain", f"req-{name}", "requester")

    await stack.endpoint.on_command(command("gw", "reboot"))
    await stack.endpoint.on_command(command("child", "blink"))
    first, second = await client.recv(), await client.recv()
    assert isinstance(first, Publish) and isinstance(second, Publish)
    assert (first.topic, first.payload, first.qos) == ("command/inbox//reboot", b"go", 0)
    assert first.properties.content_type == "text/plain"
    assert second.topic == "command/inbox/child/blink"

    await client.send(Unsubscribe(3, ("command/inbox//#", "command/inbox/+/#", "nope/#")))
    unsuback = await client.recv()
    assert isinstance(unsuback, UnsubAck)
    assert list(unsuback.reason_codes) == [0, 0, ReasonCode.NO_SUBSCRIPTION_EXISTED]
    await stack.endpoint.on_command(command("gw", "again"))  # own commands no longer subscribed
    assert stack.state.outcomes == [("req-reboot", True, None), ("req-blink", True, None),
                                    ("req-again", False, "device is not subscribed to commands")]
    await stack.endpoint.on_command(DeliverCommand(APP, "gw", "gone", "x", b"", None, "req-gone", "r"))
    assert stack.state.outcomes[-1] == ("req-gone", False, "connection closed")


async def test_kick_closes_with_session_taken_over_and_sends_no_disconnect(stack: Stack) -> None:
    v5, _ = await RawClient.open(stack.port, connect(5))
    v3, _ = await RawClient.open(stack.port, connect(4, "gw@app1"))
    for (app, device, cid, _p, _w) in stack.state.connects:
        stack.endpoint.on_kick(Kick(app, device, cid, Reason.TAKEN_OVER))
    answer = await v5.recv()
    assert isinstance(answer, Disconnect) and answer.reason_code == ReasonCode.SESSION_TAKEN_OVER
    assert await v5.closed()
    assert await v3.recv() is None
    await asyncio.sleep(0.1)
    assert stack.state.disconnects == []
    assert stack.endpoint.connections == {}


async def test_keepalive_expiry_ends_with_keepalive_timeout(stack: Stack) -> None:
    client, _ = await RawClient.open(stack.port, connect(5, keepalive=1))
    assert await client.closed(5)  # 1.5 x keepalive without a packet
    await eventually(lambda: stack.state.disconnects, 5, "the disconnect request")
    assert stack.state.disconnects[0][3:] == (Reason.KEEPALIVE_TIMEOUT, False)


async def test_paho_v311_and_v5_connect_and_publish(stack: Stack) -> None:
    def run(protocol: MQTTProtocolVersion) -> int:
        done = threading.Event()
        results: list[int] = []
        client = paho.Client(CallbackAPIVersion.VERSION2, client_id="paho", protocol=protocol)
        client.username_pw_set("dev1@app1", "secret")
        client.on_connect = lambda c, u, f, rc, p: results.append(rc.value)
        client.on_publish = lambda c, u, mid, rc, p: done.set()
        client.connect("127.0.0.1", stack.port, keepalive=30)
        client.loop_start()
        try:
            client.publish("telemetry", orjson.dumps({"temp": protocol}), qos=1)
            assert done.wait(10), "no PUBACK"
        finally:
            client.disconnect()
            client.loop_stop()
        return results[0]

    assert await asyncio.to_thread(run, paho.MQTTv311) == 0
    assert await asyncio.to_thread(run, paho.MQTTv5) == 0
    assert [orjson.loads(e.data) for e in stack.sink.events] == [{"temp": 4}, {"temp": 5}]
    assert [c[3] for c in stack.state.connects] == ["mqtt/3.1.1", "mqtt/5"]


async def test_tls_and_websocket_listeners_feed_the_same_endpoint(stack: Stack, tmp_path: Path) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    cert.private_key_and_cert_chain_pem.write_to_path(str(tmp_path / "server.pem"))
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    ctx = server_context(tmp_path / "server.pem", tmp_path / "server.pem")
    loop = asyncio.get_running_loop()
    tls = await loop.create_server(stack.endpoint.protocol_factory, "127.0.0.1", 0, ssl=ctx)
    ws = await serve_websocket(stack.endpoint, "127.0.0.1", 0)
    tls_port = tls.sockets[0].getsockname()[1]
    ws_port = next(iter(ws.sockets)).getsockname()[1]

    def run(transport: Literal["tcp", "websockets"], port: int, tls_on: bool) -> int:
        done = threading.Event()
        results: list[int] = []
        client = paho.Client(CallbackAPIVersion.VERSION2, client_id="paho", protocol=paho.MQTTv5,
                             transport=transport)
        if tls_on:
            client.tls_set(ca_certs=str(tmp_path / "ca.pem"))
        client.username_pw_set("dev1@app1", "secret")
        client.on_connect = lambda c, u, f, rc, p: results.append(rc.value)
        client.on_publish = lambda c, u, mid, rc, p: done.set()
        client.connect("127.0.0.1", port, keepalive=30)
        client.loop_start()
        try:
            client.publish("telemetry", transport.encode(), qos=1)
            assert done.wait(10), "no PUBACK"
        finally:
            client.disconnect()
            client.loop_stop()
        return results[0]

    try:
        assert await asyncio.to_thread(run, "tcp", tls_port, True) == 0
        assert await asyncio.to_thread(run, "websockets", ws_port, False) == 0
        async with httpx.AsyncClient() as http:
            plain = await http.get(f"http://127.0.0.1:{ws_port}/mqtt")
        assert (plain.status_code, plain.text) == (404, "MQTT Web Socket protocol only\n")
    finally:
        tls.close()
        ws.close()
    assert [e.data for e in stack.sink.events] == [b"tcp", b"websockets"]
    await eventually(lambda: len(stack.state.disconnects) == 2, 5, "two disconnect requests")
    assert {d[3:] for d in stack.state.disconnects} == {(Reason.NORMAL, True)}


async def test_tls_client_certificate_is_the_credential(stack: Stack, tmp_path: Path) -> None:
    ca = trustme.CA()
    ca.issue_cert("127.0.0.1").private_key_and_cert_chain_pem.write_to_path(str(tmp_path / "server.pem"))
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    ctx = server_context(tmp_path / "server.pem", tmp_path / "server.pem", client_ca=tmp_path / "ca.pem")
    tls = await asyncio.get_running_loop().create_server(stack.endpoint.protocol_factory, "127.0.0.1", 0, ssl=ctx)
    port = tls.sockets[0].getsockname()[1]
    device_cert = ca.issue_cert("dev1")
    client_ctx = ssl.create_default_context(cafile=str(tmp_path / "ca.pem"))
    device_cert.configure_cert(client_ctx)
    try:
        _, connack = await RawClient.open(port, connect(5, None, None), ssl=client_ctx)
        # the fake registry knows no certificates: refused, but asked with the verified leaf certificate
        assert connack.reason_code == ReasonCode.BAD_USER_NAME_OR_PASSWORD
        (app, device, credential), = stack.auth.calls
        assert (app, device) == ("", "")  # taken from the certificate by the registry
        assert isinstance(credential, CertCredential) and len(credential.chain) == 1
        assert ssl.DER_cert_to_PEM_cert(credential.chain[0]).encode() == device_cert.cert_chain_pems[0].bytes()
        # a certificate together with a password is refused without asking (§17 row 14.6)
        _, connack = await RawClient.open(port, connect(5), ssl=client_ctx)
        assert connack.reason_code == ReasonCode.BAD_USER_NAME_OR_PASSWORD
        assert len(stack.auth.calls) == 1
    finally:
        tls.close()
