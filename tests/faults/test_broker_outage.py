"""The Kafka broker goes away (a PRIVATE embedded broker, memory only: stopping it loses every topic) and
comes back empty on the same port with the topology re-applied. While it is down the endpoints never
acknowledge into the void: MQTT 5 PUBACKs fail (0x80), MQTT 3.1.1 connections close without a PUBACK, HTTP
answers 503 and a new CONNECT gets "server unavailable". Once it is back, the running endpoints reconnect by
themselves and publishing works again; the worker has to be restarted as a fresh installation (see the test)."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from aiokafka.admin import AIOKafkaAdminClient

from ingress.state_client import StateClient
from kedge.broker import EmbeddedBroker, free_port
from kedge.settings import KafkaSettings
from protocols.mqtt import PubAck, Publish, ReasonCode
from schemas.state import DisconnectRequest, Reason, decode_state_request
from tests.agents.support import DEVICE_PARTITIONS, TEST_LEASE, EventReader, create_topics, start_worker
from tests.faults.support import (
    CONNECT_TIMEOUT_S,
    PUBLISH_TIMEOUT_S,
    connect,
    endpoint_env,
    payload,
    published_seqs,
    start_http,
    start_mqtt,
)
from tests.ingress.kafka_support import read_records
from tests.ingress.mqtt_support import RawClient
from tests.ingress.registry_support import basic, seed_registry
from tests.support.procs import Proc, ProcGroup, eventually
from topology import names
from topology.apply import apply
from topology.declare import declared_topics

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@dataclass
class Stack:
    broker: EmbeddedBroker
    tmp: Path
    app: str
    mqtt: Proc
    port: int
    http: Proc
    url: str
    worker: Proc
    group: ProcGroup
    group_id: str


@pytest.fixture(scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> AsyncIterator[Stack]:
    tmp = tmp_path_factory.mktemp("broker-outage")
    broker = EmbeddedBroker(port=free_port(), log_path=tmp / "tansu.log")
    await broker.start()
    app = f"outage-{uuid.uuid4().hex[:8]}"
    await seed_registry(tmp, app)
    await create_topics(broker.bootstrap, app)
    group = ProcGroup(tmp)
    stack: Stack | None = None
    failed_before = request.session.testsfailed
    try:
        group_id = f"kedge-worker-{uuid.uuid4().hex[:8]}"
        worker = await start_worker(group, "worker", broker.bootstrap, tmp / "worker", group_id)
        env = endpoint_env(broker.bootstrap, tmp)
        (mqtt, port), (http, url) = await asyncio.gather(start_mqtt(group, "mqtt", env),
                                                         start_http(group, "http", env))
        stack = Stack(broker, tmp, app, mqtt, port, http, url, worker, group, group_id)
        yield stack
    finally:
        try:
            group.stop_all()
        finally:
            broker.stop()
            if stack is not None:
                stack.broker.stop()  # the replacement broker
        if request.session.testsfailed > failed_before:
            print(group.logs())


def freeze(proc: Proc, sig: signal.Signals) -> None:
    """SIGSTOP / SIGCONT a process group started by :class:`ProcGroup`."""
    assert proc.popen is not None
    os.killpg(proc.popen.pid, sig)


async def qos1(client: RawClient, packet_id: int, seq: int, timeout_s: float) -> object:
    """Publish QoS 1 and return the answer: a PubAck, None (connection closed) or "withheld" (no answer)."""
    await client.send(Publish("telemetry", payload("dev-1", seq), 1, packet_id=packet_id))
    try:
        return await client.recv(timeout_s)
    except TimeoutError:
        return "withheld"
    except (ConnectionError, OSError):
        return None


async def test_no_ack_into_the_void_while_the_broker_is_down_and_recovery(stack: Stack) -> None:
    v5, code = await connect(stack.port, stack.app, "dev-1", 5)
    assert code == 0, f"CONNACK {code:#x} before the outage"
    v3, code = await connect(stack.port, stack.app, "gw", 4)
    assert code == 0, f"CONNACK {code} before the outage"
    assert await qos1(v5, 1, 0, 10) == PubAck(1), "QoS 1 publish before the outage"
    async with httpx.AsyncClient(base_url=stack.url, timeout=30) as http:
        r = await http.post("/v1/telemetry", content=b"0", headers=basic(f"dev-1@{stack.app}", "secret"))
        assert r.status_code == 202, r.text

        stack.broker.stop()
        answer_timeout = PUBLISH_TIMEOUT_S + 10
        v5_answer, v3_answer, r, new_v5, new_v3 = await asyncio.gather(
            qos1(v5, 2, 1, answer_timeout),
            qos1(v3, 1, 1, answer_timeout),
            http.post("/v1/telemetry", content=b"1", headers=basic(f"dev-1@{stack.app}", "secret")),
            connect(stack.port, stack.app, "child", 5),
            connect(stack.port, stack.app, "dev-1", 4),
        )
        # MQTT 5: a failed PUBACK (0x80 after kafka.publish_timeout_s), never a success for a message Kafka
        # did not take
        assert isinstance(v5_answer, PubAck) and (v5_answer.packet_id, v5_answer.reason_code) == (
            2, ReasonCode.UNSPECIFIED_ERROR), f"MQTT 5 answer while Kafka is down: {v5_answer!r}"
        # MQTT 3.1.1 has no negative PUBACK: the endpoint closes the connection instead
        assert v3_answer is None, f"MQTT 3.1.1 answer while Kafka is down: {v3_answer!r}"
        assert r.status_code == 503, f"HTTP while Kafka is down: {r.status_code} {r.text}"
        assert r.json()["error"] == "ServiceUnavailable", r.text
        assert new_v5[1] == ReasonCode.SERVER_UNAVAILABLE, f"new MQTT 5 CONNECT: {new_v5[1]:#x}"
        assert new_v3[1] == 3, f"new MQTT 3.1.1 CONNECT: return code {new_v3[1]}"
        for client in (v5, v3, new_v5[0], new_v3[0]):
            client.close()

        # The broker comes back empty on the same port; the operator re-applies the topology. The running
        # clients are frozen meanwhile: Tansu auto-creates any topic a client asks about (4 partitions), and
        # an internal topic made that way before `topology apply` has the wrong partition count (a known
        # hazard of restarting an empty broker under running processes: apply the topology first).
        running = [p for p in (stack.mqtt, stack.http, stack.worker) if p.running]
        for proc in running:
            freeze(proc, signal.SIGSTOP)
        try:
            broker = EmbeddedBroker(port=stack.broker.port, log_path=stack.tmp / "tansu-2.log")
            await broker.start()
            stack.broker = broker
            await create_topics(broker.bootstrap, stack.app)
        finally:
            for proc in running:
                freeze(proc, signal.SIGCONT)

        # Known limit: the worker's RocksDB tables remember changelog offsets the new, empty broker does not
        # have. Faust then either stops the worker with ConsistencyError or hangs in table recovery (both seen).
        # The remedy is to restart it as a fresh installation: table directory wiped and a new worker app id
        # (a restart under the old id can hang in recovery on the changelog the old worker re-created).
        stack.worker.stop()
        stack.worker = await start_worker(stack.group, "worker-2", broker.bootstrap, stack.tmp / "worker-fresh",
                                          f"{stack.group_id}-fresh")

        async with EventReader(broker.bootstrap, names.app_topic(stack.app)) as events:
            async def http_works() -> bool:
                r = await http.post("/v1/telemetry", content=b'{"seq": 1000}',
                                    headers={**basic(f"dev-1@{stack.app}", "secret"),
                                             "Content-Type": "application/json"})
                return r.status_code == 202

            await eventually(http_works, 60, "HTTP publishing to work again after the broker is back", 0.5)

            async def mqtt_works() -> bool:
                client, code = await connect(stack.port, stack.app, "dev-1", 5)
                try:
                    return code == 0 and await qos1(client, 1, 1001, 10) == PubAck(1)
                finally:
                    client.close()

            await eventually(mqtt_works, 90, "an MQTT CONNECT + QoS 1 publish to work again", 0.5)
            await events.wait(lambda: {1000, 1001} <= set(published_seqs(events.of("dev-1"), "dev-1")), 20,
                              "the messages published after the recovery")
    assert stack.mqtt.running and stack.http.running and stack.worker.running
    for proc in (stack.mqtt, stack.http):
        assert "exception was never retrieved" not in proc.log(), f"{proc.name}: an unhandled Kafka failure"


async def test_a_disconnect_during_the_outage_is_retried_until_kafka_takes_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A connection that ends while Kafka is down: its disconnect request must not be dropped (the endpoint
    keeps its lease, so nothing else would ever end the device's connection); it lands once Kafka is back."""
    broker = EmbeddedBroker(port=free_port(), log_path=tmp_path / "tansu.log")
    await broker.start()
    client: StateClient | None = None
    try:
        await create_topics(broker.bootstrap)
        lease = TEST_LEASE.model_copy(update={"connect_timeout_s": CONNECT_TIMEOUT_S})
        # a long retry interval: the topic is back before the retry (Tansu would auto-create it otherwise)
        kafka = KafkaSettings(bootstrap_servers=broker.bootstrap, linger_ms=0, request_timeout_ms=1500,
                              connect_retry_s=4.0)
        client = StateClient(kafka, lease)
        await client.start()
        broker.stop()
        caplog.set_level(logging.WARNING, logger="ingress.state_client")
        pending = asyncio.create_task(client.disconnect("app", "dev", "cid-1", Reason.NORMAL))
        await eventually(lambda: pending.done() or "not taken by Kafka" in caplog.text, 15,
                         "the first failed attempt of the disconnect")
        assert not pending.done(), f"the disconnect gave up while Kafka was down: {pending.exception()!r}"

        broker = EmbeddedBroker(port=broker.port, log_path=tmp_path / "tansu-2.log")
        await broker.start()
        # only the topic the retried request needs: the client's heartbeats may have auto-created the endpoint
        # topics on the empty broker already (see above), which is beside the point here
        await create_device_state_topic(broker.bootstrap)
        await asyncio.wait_for(pending, 30)
        records = await read_records(broker.bootstrap, names.DEVICE_STATE, 1, timeout_s=15)
        requests = [decode_state_request(r.value) for r in records]
        assert any(isinstance(r, DisconnectRequest) and r.connection_id == "cid-1" for r in requests), requests
    finally:
        try:
            if client is not None:
                await client.stop(release=False)
        finally:
            broker.stop()


async def create_device_state_topic(bootstrap: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        specs = declared_topics(device_partitions=DEVICE_PARTITIONS, endpoint_partitions=1, replication=1)
        await apply(admin, [spec for spec in specs if spec.name == names.DEVICE_STATE])
    finally:
        await admin.close()
