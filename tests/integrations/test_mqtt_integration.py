"""`kedge serve mqtt-integration` end to end: real paho-mqtt clients (3.1.1 and 5) against the real process, the
real `kedge serve api` (users, tokens, apps) and the session's embedded broker. One server for the module."""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import paho.mqtt.client as paho
import pytest
import trustme
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from kedge.broker import EmbeddedBroker, free_port
from protocols.mqtt import (
    Connect,
    PubAck,
    Publish,
    SubAck,
    Subscribe,
    SubscribeProperties,
    Subscription,
    UnsubAck,
    Unsubscribe,
)
from registry.access.secrets_dir import read_admin_credentials
from schemas.state import CommandRequest, MalformedRecord
from schemas.structured import STRUCTURED_CONTENT_TYPE, from_structured
from schemas.types import CONNECTION_TYPE
from tests.agents.support import create_topics
from tests.ingress.kafka_support import create_app_topic
from tests.ingress.mqtt_support import RawClient
from tests.integrations.conftest import PASSWORD, device_event, produce
from tests.support.api import password_jwt
from tests.support.procs import ProcGroup, eventually, kedge
from topology.names import COMMANDS, app_topic

pytestmark = [pytest.mark.integration, pytest.mark.slow]

V311 = MQTTProtocolVersion.MQTTv311
V5 = MQTTProtocolVersion.MQTTv5
TIMEOUT = 30.0


@dataclass
class MqttStack:
    api_url: str
    port: int
    bootstrap: str
    tls_port: int
    ws_port: int
    ca: Path
    jwts: dict[str, str] = field(default_factory=dict)
    keys: dict[str, str] = field(default_factory=dict)

    def client(self, jwt: str | None = None) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {jwt}"} if jwt else {}
        return httpx.AsyncClient(base_url=self.api_url, timeout=30, headers=headers)

    async def create_app(self, app: str, devices: tuple[str, ...] = ()) -> str:
        async with self.client(self.jwts["alice"]) as client:
            r = await client.post("/api/registry/v1alpha1/apps", json={"metadata": {"name": app}})
            assert r.status_code == 201, r.text
            for name in devices:
                r = await client.post(f"/api/registry/v1alpha1/apps/{app}/devices",
                                      json={"metadata": {"name": name}, "spec": {}})
                assert r.status_code == 201, r.text
        return await create_app_topic(self.bootstrap, app, partitions=3)

    def app_client(self, user: str | None = "alice", *, protocol: MQTTProtocolVersion = V5,
                   client_id: str = "", manual_ack: bool = False, password: str | None = None,
                   transport: str = "tcp") -> AppClient:
        """alice with her access token (username + password) unless told otherwise."""
        if user is not None and password is None:
            password = self.keys[user]
        return AppClient(self.port, user, password, protocol, client_id, manual_ack, transport)


@pytest.fixture(scope="module")
async def stack(kafka_broker: EmbeddedBroker, tmp_path_factory: pytest.TempPathFactory,
                request: pytest.FixtureRequest) -> AsyncIterator[MqttStack]:
    tmp = tmp_path_factory.mktemp("mqtt-integration")
    data = tmp / "data"
    bootstrap = kafka_broker.bootstrap
    await create_topics(bootstrap)
    group = ProcGroup(tmp)
    failed_before = request.session.testsfailed
    ca = trustme.CA()
    ca.issue_cert("127.0.0.1").private_key_and_cert_chain_pem.write_to_path(str(tmp / "server.pem"))
    ca.cert_pem.write_to_path(str(tmp / "ca.pem"))
    env = {"KEDGE_DATA_DIR": str(data), "KEDGE_KAFKA__BOOTSTRAP_SERVERS": bootstrap, "KEDGE_INSTANCE": "test",
           "KEDGE_KAFKA__LINGER_MS": "0", "KEDGE_INTEGRATION__MAX_INFLIGHT": "4",
           "KEDGE_INTEGRATION__MQTT_MAX_SUBSCRIPTIONS": "3"}
    tls_env = {"KEDGE_INTEGRATION__MQTT_TLS_PORT": "0", "KEDGE_INTEGRATION__MQTT_TLS_CERT": str(tmp / "server.pem"),
               "KEDGE_INTEGRATION__MQTT_TLS_KEY": str(tmp / "server.pem"), "KEDGE_INTEGRATION__MQTT_WS_PORT": "0"}
    try:
        api_port = free_port()
        api = group.start("api", kedge("serve", "api", "--port", str(api_port)), env=env)
        await api.wait_for_log("API host ready on", 60.0)
        mqtt = group.start("mqtt-integration", kedge("serve", "mqtt-integration", "--port", "0"),
                           env={**env, **tls_env})
        await mqtt.wait_for_log("mqtt integration listening on ws://", 30.0)
        ports = {scheme: int(port) for scheme, port in
                 re.findall(r"listening on (\w+)://127\.0\.0\.1:(\d+)", mqtt.log())}
        assert {"mqtt", "mqtts", "ws"} <= set(ports), mqtt.log()
        api_url = f"http://127.0.0.1:{api_port}"
        s = MqttStack(api_url, ports["mqtt"], bootstrap, tls_port=ports["mqtts"], ws_port=ports["ws"],
                      ca=tmp / "ca.pem")
        admin = read_admin_credentials(data)
        assert admin is not None
        async with s.client(await password_jwt(api_url, *admin)) as client:
            for user in ("alice", "bob"):
                r = await client.post("/api/admin/v1alpha1/users", json={"username": user, "password": PASSWORD})
                assert r.status_code == 201, r.text
        for user in ("alice", "bob"):
            s.jwts[user] = await password_jwt(api_url, user, PASSWORD)
            async with s.client(s.jwts[user]) as client:
                r = await client.post("/api/tokens/v1alpha1")
            assert r.status_code == 201, r.text
            s.keys[user] = r.json()["token"]
        yield s
        assert mqtt.stop() == 0, mqtt.log()  # SIGTERM: a clean stop
        assert "Traceback" not in mqtt.log(), mqtt.log()
    finally:
        group.stop_all()
        if request.session.testsfailed > failed_before:
            print(group.logs())


@pytest.fixture
async def producer(bootstrap: str) -> AsyncIterator[AIOKafkaProducer]:
    p = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=0)
    await p.start()
    yield p
    await p.stop()


class AppClient:
    """A paho-mqtt application client on its network thread; blocking calls go through ``asyncio.to_thread``."""

    def __init__(self, port: int, user: str | None, password: str | None, protocol: MQTTProtocolVersion,
                 client_id: str, manual_ack: bool, transport: str = "tcp") -> None:
        self.port = port
        self.v5 = protocol == V5
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=protocol,
                                  manual_ack=manual_ack, transport=transport)  # type: ignore[arg-type]
        if user is not None or password is not None:
            self.client.username_pw_set(user, password)
        self.lock = threading.Lock()
        self.connack: Any = None
        self.connack_props: Any = None
        self.closed = threading.Event()
        self.messages: list[paho.MQTTMessage] = []
        self.subacks: dict[int, list[int]] = {}
        self.pubacks: dict[int, int] = {}
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = lambda c, u, f, rc, p: self.closed.set()
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe
        self.client.on_publish = self._on_publish

    def _on_connect(self, c: object, u: object, flags: object, rc: Any, props: Any) -> None:
        self.connack, self.connack_props = rc, props

    def _on_message(self, c: object, u: object, msg: paho.MQTTMessage) -> None:
        with self.lock:
            self.messages.append(msg)

    def _on_subscribe(self, c: object, u: object, mid: int, codes: list[Any], props: object) -> None:
        self.subacks[mid] = [code.value for code in codes]

    def _on_publish(self, c: object, u: object, mid: int, rc: Any, props: object) -> None:
        self.pubacks[mid] = rc.value

    async def connect(self, clean_start: bool = True) -> int:
        """The CONNACK reason (MQTT 5 reason code; 3.1.1 return codes as paho maps them)."""
        kwargs: dict[str, Any] = {"keepalive": 30}
        if self.v5:
            kwargs["clean_start"] = clean_start
        else:
            self.client._clean_session = clean_start
        await asyncio.to_thread(self.client.connect, "127.0.0.1", self.port, **kwargs)
        self.client.loop_start()
        await eventually(lambda: self.connack is not None, TIMEOUT, "CONNACK")
        value: int = self.connack.value
        return value

    async def subscribe(self, topic: str, qos: int = 1, user: dict[str, str] | None = None) -> list[int]:
        props = None
        if user:
            props = Properties(PacketTypes.SUBSCRIBE)  # type: ignore[no-untyped-call]
            props.UserProperty = list(user.items())
        _, mid = self.client.subscribe(topic, qos=qos, properties=props)
        assert mid is not None
        await eventually(lambda: mid in self.subacks, TIMEOUT, f"SUBACK of {topic}")
        return self.subacks[mid]

    async def publish(self, topic: str, payload: bytes, qos: int = 1) -> int:
        """The PUBACK reason code (QoS 1)."""
        info = self.client.publish(topic, payload, qos=qos)
        await eventually(lambda: info.mid in self.pubacks, TIMEOUT, f"PUBACK of {topic}")
        return self.pubacks[info.mid]

    def events(self) -> list[dict[str, Any]]:
        with self.lock:
            return [orjson.loads(m.payload) for m in self.messages]

    def ids(self) -> list[str]:
        return [e["id"] for e in self.events()]

    async def received(self, count: int, what: str = "messages") -> list[paho.MQTTMessage]:
        await eventually(lambda: len(self.messages) >= count, TIMEOUT, f"{count} {what}")
        with self.lock:
            return list(self.messages)

    async def close(self) -> None:
        """Drop the connection without DISCONNECT handshake niceties (unacknowledged messages stay so)."""
        self.client.disconnect()
        await asyncio.to_thread(self.closed.wait, TIMEOUT)
        self.client.loop_stop()


def mprops(message: paho.MQTTMessage) -> Any:
    """The MQTT 5 properties of a received message."""
    assert message.properties is not None
    return message.properties


@pytest.fixture
def clients() -> Iterator[list[AppClient]]:
    made: list[AppClient] = []
    yield made
    for c in made:
        c.client.disconnect()
        c.client.loop_stop()


async def _connected(stack: MqttStack, clients: list[AppClient], **kwargs: Any) -> AppClient:
    c = stack.app_client(**kwargs)
    clients.append(c)
    assert await c.connect() == 0
    return c


async def test_structured_events_over_311_and_5(stack: MqttStack, clients: list[AppClient],
                                                producer: AIOKafkaProducer, unique: str) -> None:
    app = f"mi-{unique}"
    topic = await stack.create_app(app)
    old = stack.app_client(protocol=V311, client_id=f"c311-{unique}")  # username + access token
    clients.append(old)
    assert await old.connect() == 0
    new = stack.app_client(None, password=None)  # JWT as the user name
    new.client.username_pw_set(stack.jwts["alice"])
    clients.append(new)
    assert await new.connect() == 0
    props = new.connack_props
    assert props.WildcardSubscriptionAvailable == 1 and props.SharedSubscriptionAvailable == 1
    assert props.RetainAvailable == 0
    assert await old.subscribe(f"app/{app}", qos=1) == [1]
    assert await new.subscribe(f"a/{app}", qos=2) == [1]  # QoS 2 granted as 1

    events = [device_event(app, device=f"d{i}") for i in range(3)]
    await produce(producer, topic, *events)
    for c, topic_name in ((old, f"app/{app}"), (new, f"a/{app}")):
        msgs = await c.received(3)
        assert sorted(m.topic for m in msgs) == [topic_name] * 3
        assert all(m.qos == 1 for m in msgs)
        assert sorted(from_structured(bytes(m.payload)).id for m in msgs) == sorted(e.id for e in events)
        assert {orjson.loads(m.payload)["data"]["temp"] for m in msgs} == {42}
    m = new.messages[0]
    assert mprops(m).ContentType == STRUCTURED_CONTENT_TYPE
    assert mprops(m).PayloadFormatIndicator == 1


async def test_binary_mode_and_qos0(stack: MqttStack, clients: list[AppClient], producer: AIOKafkaProducer,
                                    unique: str) -> None:
    app = f"mi-{unique}"
    topic = await stack.create_app(app)
    c = await _connected(stack, clients)
    assert await c.subscribe(f"app/{app}", qos=0, user={"content-mode": "binary"}) == [0]
    event = device_event(app, device="dev-1", payload=b'{"temp":7}')
    await produce(producer, topic, event)
    (m,) = await c.received(1)
    assert m.qos == 0
    assert m.payload == b'{"temp":7}'
    assert mprops(m).ContentType == "application/json"
    user = dict(mprops(m).UserProperty)
    assert user["id"] == event.id and user["type"] == event.type and user["source"] == event.source
    assert user["subject"] == "telemetry" and user["application"] == app and user["device"] == "dev-1"
    assert user["specversion"] == "1.0" and user["partitionkey"] == event.partitionkey


async def test_filter_delivers_only_connection_events(stack: MqttStack, clients: list[AppClient],
                                                      producer: AIOKafkaProducer, unique: str) -> None:
    app = f"mi-{unique}"
    topic = await stack.create_app(app)
    c = await _connected(stack, clients, client_id=f"f-{unique}")
    flt = f"app/{app}/type/{CONNECTION_TYPE}"
    assert await c.subscribe(flt) == [1]
    telemetry = [device_event(app, device="d1") for _ in range(5)]
    connection = device_event(app, device="d1", channel="connection", type_=CONNECTION_TYPE,
                              payload=b'{"connected":true}')
    marker = device_event(app, device="d1", channel="connection", type_=CONNECTION_TYPE,
                          payload=b'{"connected":false}')
    await produce(producer, topic, *telemetry, connection, *telemetry[:2], marker)
    msgs = await c.received(2)
    assert [m.topic for m in msgs] == [flt, flt]
    assert [from_structured(bytes(m.payload)).id for m in msgs] == [connection.id, marker.id]  # one device: in order


async def test_shared_subscription_splits_the_load(stack: MqttStack, clients: list[AppClient],
                                                   producer: AIOKafkaProducer, unique: str) -> None:
    app = f"mi-{unique}"
    topic = await stack.create_app(app)
    members = [await _connected(stack, clients, client_id=f"m{i}-{unique}") for i in range(2)]
    for m in members:
        assert await m.subscribe(f"$share/g-{unique}/app/{app}") == [1]
    events = [device_event(app, device=f"dev{i}") for i in range(24)]
    await produce(producer, topic, *events)
    want = {e.id for e in events}

    def union() -> bool:
        return want <= set(members[0].ids()) | set(members[1].ids())

    await eventually(union, TIMEOUT, "every event at one member of the group")
    assert members[0].ids() and members[1].ids(), "both members get a share"
    assert all(m.topic == f"app/{app}" for c in members for m in c.messages)  # without the $share prefix


async def test_unacknowledged_messages_come_again(stack: MqttStack, clients: list[AppClient],
                                                  producer: AIOKafkaProducer, unique: str) -> None:
    app = f"mi-{unique}"
    topic = await stack.create_app(app)
    shared = f"$share/r-{unique}/app/{app}"
    first = await _connected(stack, clients, protocol=V311, client_id=f"r1-{unique}", manual_ack=True)
    assert await first.subscribe(shared) == [1]
    events = [device_event(app, device=f"dev{i}") for i in range(6)]
    await produce(producer, topic, *events)
    # max_inflight is 4 per subscription: no more than that arrive without PUBACKs
    await first.received(4)
    await asyncio.sleep(0.5)  # give a (wrong) fifth message the chance to arrive
    assert len(first.messages) == 4
    await first.close()

    second = await _connected(stack, clients, protocol=V311, client_id=f"r2-{unique}")  # acks automatically
    assert await second.subscribe(shared) == [1]
    await eventually(lambda: {e.id for e in events} <= set(second.ids()), TIMEOUT, "all six again")
    await second.close()

    third = await _connected(stack, clients, client_id=f"r3-{unique}")
    assert await third.subscribe(shared) == [1]
    fresh = device_event(app, device="dev0")
    await produce(producer, topic, fresh)
    await eventually(lambda: fresh.id in third.ids(), TIMEOUT, "the new event")
    assert set(third.ids()) == {fresh.id}, "acknowledged events are committed and not delivered again"


def _command_or_none(record: ConsumerRecord[bytes, bytes]) -> CommandRequest | None:
    """The topic is shared by the session's tests, some of which write bad records on purpose."""
    try:
        return CommandRequest.from_bytes(record.value or b"")
    except MalformedRecord:
        return None


async def _commands_for(bootstrap: str, app: str, count: int) -> list[CommandRequest]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    found: list[CommandRequest] = []
    try:
        partitions = consumer.partitions_for_topic(COMMANDS) or set()
        if not partitions:
            await consumer._client.force_metadata_update()
            partitions = consumer.partitions_for_topic(COMMANDS) or set()
        consumer.assign([TopicPartition(COMMANDS, p) for p in sorted(partitions)])
        await consumer.seek_to_beginning()
        async with asyncio.timeout(TIMEOUT):
            while len(found) < count:
                for records in (await consumer.getmany(timeout_ms=500)).values():
                    found += [c for c in map(_command_or_none, records) if c is not None and c.app == app]
    finally:
        await consumer.stop()
    return found


async def test_commands(stack: MqttStack, clients: list[AppClient], unique: str) -> None:
    app = f"mi-{unique}"
    await stack.create_app(app, devices=("d1",))
    alice = await _connected(stack, clients)
    assert await alice.publish(f"command/{app}/d1/reboot", b'{"delay": 1}') == 0
    assert await alice.publish(f"command/{app}/nobody/reboot", b"") == 0x87
    assert await alice.publish(f"command/{app}/d1", b"") == 0x83
    assert await alice.publish(f"command/{app}//reboot", b"") == 0x90
    bob = await _connected(stack, clients, user="bob")
    assert await bob.publish(f"command/{app}/d1/reboot", b"") == 0x87
    old = await _connected(stack, clients, protocol=V311)
    assert await old.publish(f"command/{app}/d1/blink", b"raw") == 0  # 3.1.1 has no negative PUBACK
    found = await _commands_for(stack.bootstrap, app, 2)
    by_command = {c.command: c for c in found}
    assert set(by_command) == {"reboot", "blink"}
    assert by_command["reboot"].device == "d1"
    assert by_command["reboot"].payload == b'{"delay":1}'
    assert by_command["reboot"].content_type == "application/json"
    assert by_command["blink"].content_type == "application/octet-stream"


async def test_bad_subscriptions_are_refused(stack: MqttStack, clients: list[AppClient], unique: str) -> None:
    app = f"mi-{unique}"
    await stack.create_app(app)
    c = await _connected(stack, clients)
    assert await c.subscribe(f"app/{app}/+") == [0xA2]
    assert await c.subscribe("#") == [0xA2]
    assert await c.subscribe(f"foo/{app}") == [0x8F]
    assert await c.subscribe(f"app/{app}/colour/red") == [0x8F]
    assert await c.subscribe(f"app/{app}", user={"content-mode": "json"}) == [0x83]
    assert await c.subscribe(f"app/no-such-app-{unique}") == [0x80]
    bob = await _connected(stack, clients, user="bob")
    assert await bob.subscribe(f"app/{app}") == [0x87]
    anonymous = await _connected(stack, clients, user=None)
    assert await anonymous.subscribe(f"app/{app}") == [0x87]
    old = await _connected(stack, clients, user="bob", protocol=V311)
    assert await old.subscribe(f"app/{app}") == [0x80]  # 3.1.1: every refusal is 0x80
    raw, _ = await RawClient.open(stack.port, Connect("many", protocol_level=5, username=stack.jwts["alice"]))
    try:  # at most 3 subscriptions per connection here (KEDGE_INTEGRATION__MQTT_MAX_SUBSCRIPTIONS)
        filters = (f"app/{app}", f"a/{app}", f"application/{app}", f"app/{app}/channel/telemetry")
        await raw.send(Subscribe(1, tuple(Subscription(f, 1) for f in filters)))
        suback = await raw.recv()
        assert isinstance(suback, SubAck) and suback.reason_codes == (1, 1, 1, 0x97)
    finally:
        raw.close()


async def test_bad_authentication_is_refused(stack: MqttStack, clients: list[AppClient]) -> None:
    wrong_key = stack.app_client(password="drg_abcdef_" + "x" * 36)
    clients.append(wrong_key)
    assert await wrong_key.connect() == 0x86
    wrong_user = stack.app_client(user="bob", password=stack.keys["alice"])
    clients.append(wrong_user)
    assert await wrong_user.connect() == 0x86
    bad_jwt = stack.app_client(None)
    bad_jwt.client.username_pw_set("not-a-jwt")
    clients.append(bad_jwt)
    assert await bad_jwt.connect() == 0x86
    old = stack.app_client(protocol=V311, password="wrong")
    clients.append(old)
    assert await old.connect() == 0x86  # paho reports 3.1.1 return code 4 as "bad user name or password"
    persistent = stack.app_client(client_id="keeper")
    clients.append(persistent)
    assert await persistent.connect(clean_start=False) == 0x83  # clean session required


async def test_jwt_as_password_subscription_ids_and_unsubscribe(stack: MqttStack, producer: AIOKafkaProducer,
                                                                unique: str) -> None:
    """MQTT 5 password-only login (a JWT), exact packets through our own codec."""
    app = f"mi-{unique}"
    topic = await stack.create_app(app)
    connect = Connect("", protocol_level=5, password=stack.jwts["alice"].encode())
    client, connack = await RawClient.open(stack.port, connect)
    try:
        assert connack.reason_code == 0
        assert connack.properties.assigned_client_identifier  # an empty client id gets one
        assert connack.properties.retain_available == 0 and connack.properties.maximum_qos == 1
        await client.send(Subscribe(1, (Subscription(f"application/{app}", 1),), SubscribeProperties(5)))
        suback = await client.recv()
        assert isinstance(suback, SubAck) and suback.reason_codes == (1,)
        event = device_event(app)
        await produce(producer, topic, event)
        publish = await client.recv()
        assert isinstance(publish, Publish) and publish.topic == f"application/{app}"
        assert publish.properties.subscription_identifiers == (5,)
        assert from_structured(publish.payload).id == event.id
        assert publish.packet_id is not None
        await client.send(PubAck(publish.packet_id))
        await client.send(Unsubscribe(2, (f"application/{app}",)))
        unsuback = await client.recv()
        assert isinstance(unsuback, UnsubAck) and unsuback.reason_codes == (0,)
        await client.send(Unsubscribe(3, (f"application/{app}",)))
        unsuback = await client.recv()
        assert isinstance(unsuback, UnsubAck) and unsuback.reason_codes == (0x11,)  # no subscription existed
        # SUBSCRIBE and UNSUBSCRIBE back to back are applied in order
        await client.send(Subscribe(4, (Subscription(f"app/{app}", 0),)))
        await client.send(Unsubscribe(5, (f"app/{app}",)))
        answers = [await client.recv(), await client.recv()]
        assert sorted((type(a).__name__, getattr(a, "reason_codes", None)) for a in answers) == [
            ("SubAck", (0,)), ("UnsubAck", (0,))]
    finally:
        client.close()
    refused, connack = await RawClient.open(stack.port, Connect("x", protocol_level=4, username="alice",
                                                                  password=b"wrong"))
    refused.close()
    assert connack.reason_code == 4  # 3.1.1: bad user name or password


async def test_tls_listener(stack: MqttStack, clients: list[AppClient], producer: AIOKafkaProducer,
                            unique: str) -> None:
    app = f"mi-{unique}"
    topic = await stack.create_app(app)
    c = stack.app_client(protocol=V311)
    c.port = stack.tls_port
    c.client.tls_set(ca_certs=str(stack.ca))
    clients.append(c)
    assert await c.connect() == 0
    assert await c.subscribe(f"app/{app}") == [1]
    event = device_event(app)
    await produce(producer, topic, event)
    await c.received(1)
    assert c.ids() == [event.id]


async def test_websocket_listener(stack: MqttStack, clients: list[AppClient], producer: AIOKafkaProducer,
                                  unique: str) -> None:
    app = f"mi-{unique}"
    topic = await stack.create_app(app)
    c = stack.app_client(transport="websockets")
    c.port = stack.ws_port
    clients.append(c)
    assert await c.connect() == 0
    assert await c.subscribe(f"app/{app}") == [1]
    events = [device_event(app, device=f"d{i}") for i in range(20)]
    await produce(producer, topic, *events)
    await c.received(20)
    assert sorted(c.ids()) == sorted(e.id for e in events)
    assert await c.publish(f"command/{app}/nobody/x", b"") == 0x87
    async with httpx.AsyncClient() as http:
        r = await http.get(f"http://127.0.0.1:{stack.ws_port}/")
    assert r.status_code == 404 and "MQTT Web Socket protocol only" in r.text


def test_procfile_lists_the_integration() -> None:
    procfile = Path(__file__).resolve().parents[2] / "Procfile"
    assert "mqtt-integration: kedge serve mqtt-integration" in procfile.read_text().splitlines()
    assert app_topic("x") == "events-x"
