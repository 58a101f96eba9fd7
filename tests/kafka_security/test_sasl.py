"""SASL to Kafka for real (through the SASL-terminating proxy over TLS): PLAIN, SCRAM-SHA-256, SCRAM-SHA-512
with Kedge's own clients, a refused login as one line, and `kedge topology apply` over SASL_SSL."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import pytest
from aiokafka import TopicPartition
from aiokafka.admin import NewTopic
from pydantic import SecretStr

from ingress.state_client import StateClient
from kedge import kafka
from kedge.settings import KafkaSettings
from tests.agents.support import DEVICE_PARTITIONS, TEST_LEASE, worker_env
from tests.kafka_security.conftest import USERS, Pki, SecuredKafka
from tests.support.procs import ProcGroup, kedge
from topology.apply import apply
from topology.declare import app_topic_spec, declared_topics

pytestmark = [pytest.mark.integration]


def sasl_settings(secured: SecuredKafka, pki: Pki, mechanism: Any, user: str = "alice",
                  password: str | None = None) -> KafkaSettings:
    return KafkaSettings(bootstrap_servers=secured.bootstrap, security_protocol="SASL_SSL",
                         sasl_mechanism=mechanism,
                         sasl_username=user, sasl_password=SecretStr(password or USERS[user]),
                         ssl_cafile=pki.ca, linger_ms=0)


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
async def test_kedge_clients_log_in_and_exchange_records(sasl_kafka: SecuredKafka, pki: Pki, mechanism: str) -> None:
    settings = sasl_settings(sasl_kafka, pki, mechanism, user="bob")
    await kafka.check_security(settings)
    topic = f"sasl-{uuid.uuid4().hex[:8]}"
    admin = kafka.admin_client(settings)
    producer = kafka.producer(settings)
    consumer = kafka.consumer(settings, enable_auto_commit=False, auto_offset_reset="earliest")
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, 1, 1)])
        await producer.start()
        await (await producer.send(topic, b"over " + mechanism.encode(), key=b"k"))
        await consumer.start()
        consumer.assign([TopicPartition(topic, 0)])
        await consumer.seek_to_beginning()
        record = await asyncio.wait_for(consumer.getone(), 15)
        assert record.value == b"over " + mechanism.encode()
    finally:
        await consumer.stop()
        await producer.stop()
        await admin.close()
    assert (mechanism, "bob") in sasl_kafka.proxy.logins


async def test_sasl_plaintext_without_tls(sasl_plaintext_kafka: SecuredKafka) -> None:
    settings = KafkaSettings(bootstrap_servers=sasl_plaintext_kafka.bootstrap, security_protocol="SASL_PLAINTEXT",
                             sasl_mechanism="SCRAM-SHA-512", sasl_username="bob", sasl_password=SecretStr("bob-secret"))
    await kafka.check_security(settings)
    admin = kafka.admin_client(settings)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(f"plain-{uuid.uuid4().hex[:6]}", 1, 1)])
    finally:
        await admin.close()
    assert ("SCRAM-SHA-512", "bob") in sasl_plaintext_kafka.proxy.logins
    wrong = settings.model_copy(update={"sasl_password": SecretStr("nope")})
    with pytest.raises(kafka.KafkaSecurityError, match="SASL SCRAM-SHA-512 login of 'bob'"):
        await kafka.check_security(wrong, timeout_s=5)


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
async def test_a_wrong_password_is_one_line_naming_the_settings(
    sasl_kafka: SecuredKafka, pki: Pki, mechanism: str
) -> None:
    settings = sasl_settings(sasl_kafka, pki, mechanism, password="wrong")
    with pytest.raises(kafka.KafkaSecurityError) as failure:
        await kafka.check_security(settings, timeout_s=5)
    message = str(failure.value)
    assert "\n" not in message
    assert f"SASL {mechanism} login of 'alice' to Kafka at {sasl_kafka.bootstrap} refused" in message
    assert "KEDGE_KAFKA__SASL_MECHANISM, _SASL_USERNAME and _SASL_PASSWORD" in message


async def test_topology_apply_over_sasl_ssl_and_a_refused_login(
    sasl_kafka: SecuredKafka, pki: Pki, procs: ProcGroup, tmp_path: Path
) -> None:
    env = {"KEDGE_KAFKA__BOOTSTRAP_SERVERS": sasl_kafka.bootstrap, "KEDGE_KAFKA__SECURITY_PROTOCOL": "SASL_SSL",
           "KEDGE_KAFKA__SASL_MECHANISM": "SCRAM-SHA-512", "KEDGE_KAFKA__SASL_USERNAME": "alice",
           "KEDGE_KAFKA__SASL_PASSWORD": USERS["alice"], "KEDGE_KAFKA__SSL_CAFILE": str(pki.ca),
           "KEDGE_DATA_DIR": str(tmp_path)}
    ok = procs.start("apply", kedge("topology", "apply", "-o", "json"), env)
    assert await asyncio.to_thread(ok.popen.wait, 60) == 0, ok.log()  # type: ignore[union-attr]
    assert '"device-state"' in ok.log()
    refused = procs.start("apply-refused", kedge("topology", "apply"),
                          {**env, "KEDGE_KAFKA__SASL_PASSWORD": "wrong"})
    assert await asyncio.to_thread(refused.popen.wait, 60) == 1, refused.log()  # type: ignore[union-attr]
    lines = refused.log().strip().splitlines()
    assert len(lines) == 1 and "SASL SCRAM-SHA-512 login of 'alice'" in lines[0] and "refused" in lines[0], lines


@pytest.mark.slow
async def test_a_faust_worker_logs_in_with_scram_and_answers_a_connect(
    sasl_kafka: SecuredKafka, pki: Pki, procs: ProcGroup, tmp_path: Path, unique: str
) -> None:
    settings = sasl_settings(sasl_kafka, pki, "SCRAM-SHA-256")
    await create_topics(settings, f"sasl-{unique}")
    env = {**worker_env(sasl_kafka.bootstrap, tmp_path, f"sasl-worker-{unique}"),
           "KEDGE_KAFKA__SECURITY_PROTOCOL": "SASL_SSL", "KEDGE_KAFKA__SASL_MECHANISM": "SCRAM-SHA-256",
           "KEDGE_KAFKA__SASL_USERNAME": "carol", "KEDGE_KAFKA__SASL_PASSWORD": USERS["carol"],
           "KEDGE_KAFKA__SSL_CAFILE": str(pki.ca)}
    worker = procs.start("worker", kedge("worker"), env)
    await worker.wait_for_log("Ready", 60)
    client = StateClient(settings, TEST_LEASE)
    await client.start()
    try:
        cid = uuid.uuid4().hex
        reply = await client.connect(f"sasl-{unique}", "dev-1", cid, "mqtt", "app-uid", "dev-uid")
        assert reply.accepted and reply.connection_id == cid
    finally:
        await client.stop()
    assert ("SCRAM-SHA-256", "carol") in sasl_kafka.proxy.logins  # the worker's own clients


async def create_topics(settings: KafkaSettings, app: str) -> None:
    admin = kafka.admin_client(settings)
    await admin.start()
    try:
        specs = declared_topics(device_partitions=DEVICE_PARTITIONS, endpoint_partitions=1, replication=1)
        await apply(admin, [*specs, app_topic_spec(app, partitions=1, replication=1)])
    finally:
        await admin.close()
