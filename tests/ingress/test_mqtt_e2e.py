"""End to end: devices created in a real registry database connect to `kedge serve mqtt` (a subprocess) with
paho-mqtt (3.1.1 and 5) and raw MQTT; a real `kedge worker` is the device-state agent; the events are read back
from `events-<app>` on the real broker (binary mode, parsed with the cloudevents SDK).

One stack (worker + endpoint) for the module; each test uses its own devices, so the per-device event order
of one test is not mixed with another's.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import httpx
import orjson
import paho.mqtt.client as paho
import pytest
import trustme
from aiokafka import AIOKafkaProducer
from cloudevents.v1.kafka import KafkaMessage, from_binary
from paho.mqtt.enums import MQTTProtocolVersion

from kedge.broker import EmbeddedBroker
from protocols.mqtt import Connect, Disconnect, Publish, ReasonCode, Will
from schemas.keys import device_key
from schemas.state import CommandRequest
from tests.agents.support import DEVICE_PARTITIONS, EventReader, connection_log, create_topics, start_worker
from tests.ingress.kafka_support import read_records
from tests.ingress.mqtt_support import Paho, RawClient
from tests.ingress.registry_support import seed_registry
from tests.support.procs import ProcGroup, kedge
from topology import names

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@dataclass
class Stack:
    bootstrap: str
    app: str
    uids: dict[str, str]
    port: int
    topic: str
    tls_port: int
    ws_port: int
    metrics_url: str
    ca_pem: Path
    #: a second endpoint process (its own instance and lease) on the same broker, worker and registry
    other_port: int


@pytest.fixture(scope="module")
async def stack(
    kafka_broker: EmbeddedBroker, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> AsyncIterator[Stack]:
    tmp = tmp_path_factory.mktemp("mqtt-e2e")
    app = f"mqtt-{uuid.uuid4().hex[:8]}"
    uids = await seed_registry(tmp, app, extra=("roamer",))
    bootstrap = kafka_broker.bootstrap
    await create_topics(bootstrap, app)
    ca = trustme.CA()
    ca.issue_cert("127.0.0.1").private_key_and_cert_chain_pem.write_to_path(str(tmp / "server.pem"))
    ca.cert_pem.write_to_path(str(tmp / "ca.pem"))
    group = ProcGroup(tmp)
    failed_before = request.session.testsfailed
    try:
        await start_worker(group, "worker", bootstrap, tmp / "worker", f"kedge-worker-{uuid.uuid4().hex[:8]}")
        server = group.start("mqtt", kedge("serve", "mqtt", "--port", "0"), env={
            "KEDGE_KAFKA__BOOTSTRAP_SERVERS": bootstrap, "KEDGE_DATA_DIR": str(tmp),
            "KEDGE_INSTANCE": "kedge-e2e", "KEDGE_TOPOLOGY__DEVICE_PARTITIONS": str(DEVICE_PARTITIONS),
            "KEDGE_MQTT__METRICS_PORT": "0", "KEDGE_MQTT__TLS_PORT": "0", "KEDGE_MQTT__WS_PORT": "0",
            "KEDGE_MQTT__TLS_CERT": str(tmp / "server.pem"), "KEDGE_MQTT__TLS_KEY": str(tmp / "server.pem")})
        await server.wait_for_log("mqtt endpoint listening on mqtt://", 30)
        await server.wait_for_log("metrics endpoint listening", 5)
        ports = dict(re.findall(r"(\w+) endpoint listening on \w+://127\.0\.0\.1:(\d+)", server.log()))
        assert set(ports) == {"mqtt", "mqtts", "ws", "metrics"}, server.log()
        other = group.start("mqtt-2", kedge("serve", "mqtt", "--port", "0"), env={
            "KEDGE_KAFKA__BOOTSTRAP_SERVERS": bootstrap, "KEDGE_DATA_DIR": str(tmp),
            "KEDGE_INSTANCE": "kedge-e2e", "KEDGE_TOPOLOGY__DEVICE_PARTITIONS": str(DEVICE_PARTITIONS)})
        await other.wait_for_log("mqtt endpoint listening on mqtt://", 30)
        other_port = re.search(r"mqtt endpoint listening on mqtt://127\.0\.0\.1:(\d+)", other.log())
        assert other_port, other.log()
        yield Stack(bootstrap, app, uids, int(ports["mqtt"]), names.app_topic(app), int(ports["mqtts"]),
                    int(ports["ws"]), f"http://127.0.0.1:{ports['metrics']}/metrics", tmp / "ca.pem",
                    int(other_port.group(1)))
        assert server.stop() == 0, server.log()  # SIGTERM: a clean stop
        assert "Traceback" not in server.log(), server.log()
    finally:
        group.stop_all()
        if request.session.testsfailed > failed_before:
            print(group.logs())


async def test_paho_v311_and_v5_publish_qos1_after_connected(stack: Stack) -> None:
    def session(protocol: MQTTProtocolVersion, n: int) -> None:
        client = Paho(stack.port, f"dev-1@{stack.app}", "secret", protocol, client_id=f"paho-{n}")
        assert client.connect() == 0
        client.publish("telemetry", orjson.dumps({"temp": n}))
        client.disconnect()

    async with EventReader(stack.bootstrap, stack.topic) as events:
        await asyncio.to_thread(session, paho.MQTTv311, 1)
        await asyncio.to_thread(session, paho.MQTTv5, 2)
        await events.wait(lambda: len(events.unique_of("dev-1")) >= 6, 20, "two sessions of dev-1")
        seen = [(e.subject, orjson.loads(e.data).get("reason") if e.subject == "connection" else None)
                for e in events.unique_of("dev-1")]
        # the agent's `connected` comes before the first publish (CONNACK waits for it)
        assert seen == [("connection", None), ("telemetry", None), ("connection", "normal")] * 2, seen
        telemetry = [e for e in events.unique_of("dev-1") if e.subject == "telemetry"]
        assert [orjson.loads(e.data) for e in telemetry] == [{"temp": 1}, {"temp": 2}]

    records = [r for r in await read_records(stack.bootstrap, stack.topic, 6)
               if dict(r.headers).get("ce_subject") == b"telemetry"]
    ce = from_binary(KafkaMessage(headers=dict(records[0].headers), key=records[0].key, value=records[0].value))
    pct_app = stack.app.replace("-", "%2D")
    assert records[0].key == f"{pct_app}/dev%2D1".encode()
    assert ce.data == {"temp": 1}
    names_ = ("type", "source", "subject", "datacontenttype", "application", "applicationuid", "device",
              "deviceuid", "sender", "senderuid", "instance")
    assert {k: ce[k] for k in names_} == {
        "type": "io.drogue.event.v1", "source": f"drogue://{stack.app}/dev%2D1", "subject": "telemetry",
        "datacontenttype": "application/json", "application": stack.app, "applicationuid": stack.uids["app"],
        "device": "dev-1", "deviceuid": stack.uids["dev-1"], "sender": "dev-1", "senderuid": stack.uids["dev-1"],
        "instance": "kedge-e2e",
    }


async def test_refusals_wrong_password_disabled_and_qos2(stack: Stack) -> None:
    for version, wrong, off in ((4, 4, 5), (5, ReasonCode.BAD_USER_NAME_OR_PASSWORD, ReasonCode.NOT_AUTHORIZED)):
        client, connack = await RawClient.open(
            stack.port, Connect("c", version, username=f"dev-1@{stack.app}", password=b"nope"))
        assert connack.reason_code == wrong
        assert await client.closed()
        client, connack = await RawClient.open(
            stack.port, Connect("c", version, username=f"off@{stack.app}", password=b"secret"))
        assert connack.reason_code == off
        assert await client.closed()
    client, connack = await RawClient.open(
        stack.port, Connect("c", 5, username=f"child@{stack.app}", password=b"secret"))
    assert connack.reason_code == ReasonCode.SUCCESS
    await client.send(Publish("telemetry", b"1", 2, packet_id=1))
    answer = await client.recv()
    assert isinstance(answer, Disconnect) and answer.reason_code == ReasonCode.QOS_NOT_SUPPORTED
    assert await client.closed()


@pytest.mark.parametrize("through", ["same endpoint", "second endpoint process"])
async def test_second_connection_takes_over_with_0x8e(stack: Stack, through: str) -> None:
    second_port, device = (stack.port, "gw") if through == "same endpoint" else (stack.other_port, "roamer")

    def takeover() -> int | None:
        first = Paho(stack.port, f"{device}@{stack.app}", "secret", paho.MQTTv5, client_id="first")
        second = Paho(second_port, f"{device}@{stack.app}", "secret", paho.MQTTv5, client_id="second")
        assert first.connect() == 0
        assert second.connect() == 0
        first.pump(lambda: first.disconnect_reason is not None, "the kick of the first connection")
        second.publish("telemetry", b"2")
        second.disconnect()
        return first.disconnect_reason

    async with EventReader(stack.bootstrap, stack.topic) as events:
        assert await asyncio.to_thread(takeover) == ReasonCode.SESSION_TAKEN_OVER
        await events.wait(lambda: len(events.unique_of(device)) >= 5, 20, f"the takeover events of {device}")
        log = connection_log(events.unique_of(device))
    kinds = [(kind, reason) for kind, _, reason, _ in log if kind != "will"]
    assert kinds == [("connected", None), ("disconnected", "taken_over"), ("connected", None),
                     ("disconnected", "normal")], log
    connections = [cid for kind, cid, _, _ in log if kind != "will"]
    assert connections[0] == connections[1] != connections[2] == connections[3]


async def test_will_on_network_loss_and_commands(stack: Stack) -> None:
    will = Will("last-words", b"gone")
    client, connack = await RawClient.open(
        stack.port, Connect("w", 5, username=f"child@{stack.app}", password=b"secret", will=will))
    assert connack.reason_code == ReasonCode.SUCCESS
    from protocols.mqtt import SubAck, Subscribe, Subscription

    await client.send(Subscribe(1, (Subscription("command/inbox//#"),)))
    suback = await client.recv()
    assert isinstance(suback, SubAck) and list(suback.reason_codes) == [0]
    producer = AIOKafkaProducer(bootstrap_servers=stack.bootstrap)
    await producer.start()
    try:
        command = CommandRequest(stack.app, "child", "blink", b"fast", "text/plain", uuid.uuid4().hex)
        await producer.send_and_wait(names.COMMANDS, command.to_bytes(),
                                     key=device_key(stack.app, "child").encode())
    finally:
        await producer.stop()
    delivered = await client.recv(20)
    assert isinstance(delivered, Publish), delivered
    assert (delivered.topic, delivered.payload) == ("command/inbox//blink", b"fast")

    async with EventReader(stack.bootstrap, stack.topic) as events:
        client.writer.transport.abort()  # network loss: no DISCONNECT
        await events.wait(lambda: any(e.subject == "last-words" for e in events.of("child")), 20, "the Will")
    wills = [e for e in events.of("child") if e.subject == "last-words"]
    assert wills[0].data == b"gone"


async def test_tls_and_websocket_publish_and_metrics(stack: Stack) -> None:
    def session(transport: Literal["tcp", "websockets"], port: int, tls: bool) -> None:
        client = Paho(stack.port, f"dev-1@{stack.app}", "secret", paho.MQTTv5, client_id=transport,
                      transport=transport)
        client.port = port
        if tls:
            client.client.tls_set(ca_certs=str(stack.ca_pem))
        assert client.connect() == 0
        client.publish("tls" if tls else "ws", b"1")
        client.disconnect()

    async with EventReader(stack.bootstrap, stack.topic) as events:
        await asyncio.to_thread(session, "tcp", stack.tls_port, True)
        await asyncio.to_thread(session, "websockets", stack.ws_port, False)
        await events.wait(lambda: {"tls", "ws"} <= {e.subject for e in events.of("dev-1")}, 20,
                          "the TLS and WebSocket publishes")
    async with httpx.AsyncClient() as http:
        metrics = (await http.get(stack.metrics_url)).text
    assert 'kedge_downstream_events_total{endpoint="mqtt",outcome="accepted"}' in metrics
    assert "kedge_mqtt_connections" in metrics
