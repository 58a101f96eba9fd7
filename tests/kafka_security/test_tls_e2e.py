"""Kafka over TLS for real (Tansu behind the TLS proxy, a trustme CA): `kedge topology apply`, a real
`kedge worker` (Faust) answering a device connect, and `kedge serve http` whose publish lands; a wrong CA is one
line and exit 1 from each process; mutual TLS with KEDGE_KAFKA__SSL_CERTFILE/_KEYFILE."""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from aiokafka import TopicPartition
from aiokafka.structs import ConsumerRecord

from ingress.state_client import StateClient
from kedge import kafka
from kedge.broker import EmbeddedBroker
from kedge.settings import KafkaSettings, TopologySettings
from tests.agents.support import DEVICE_PARTITIONS, TEST_LEASE, worker_env
from tests.ingress.registry_support import basic, seed_registry
from tests.kafka_security.conftest import Pki, SecuredKafka
from tests.support.procs import Proc, ProcGroup, kedge
from topology.apply import apply
from topology.declare import app_topic_spec
from topology.names import app_topic

pytestmark = [pytest.mark.integration]


def tls_settings(secured: SecuredKafka, pki: Pki, **extra: Any) -> KafkaSettings:
    return KafkaSettings(bootstrap_servers=secured.bootstrap, security_protocol="SSL", ssl_cafile=pki.ca,
                         linger_ms=0, **extra)


def tls_env(secured: SecuredKafka, ca: Path, data_dir: Path) -> dict[str, str]:
    return {"KEDGE_KAFKA__BOOTSTRAP_SERVERS": secured.bootstrap, "KEDGE_KAFKA__SECURITY_PROTOCOL": "SSL",
            "KEDGE_KAFKA__SSL_CAFILE": str(ca), "KEDGE_DATA_DIR": str(data_dir),
            "KEDGE_TOPOLOGY__DEVICE_PARTITIONS": str(DEVICE_PARTITIONS)}


async def exit_code(proc: Proc, timeout_s: float = 60) -> int:
    assert proc.popen is not None
    return await asyncio.to_thread(proc.popen.wait, timeout_s)


async def read_records(settings: KafkaSettings, topic: str, count: int, timeout_s: float = 15) -> list[ConsumerRecord]:
    consumer = kafka.consumer(settings, enable_auto_commit=False, auto_offset_reset="earliest")
    await consumer.start()
    try:
        await consumer._client.force_metadata_update()
        partitions = consumer.partitions_for_topic(topic) or set()
        assert partitions, f"no topic {topic}"
        consumer.assign([TopicPartition(topic, p) for p in sorted(partitions)])
        await consumer.seek_to_beginning()
        got: list[ConsumerRecord] = []
        deadline = time.monotonic() + timeout_s
        while len(got) < count:
            assert time.monotonic() < deadline, f"only {len(got)} of {count} records in {topic} after {timeout_s}s"
            for records in (await consumer.getmany(timeout_ms=300)).values():
                got.extend(records)
        return got
    finally:
        await consumer.stop()


@pytest.mark.slow
async def test_topology_worker_and_http_endpoint_work_over_tls(
    tls_kafka: SecuredKafka, pki: Pki, procs: ProcGroup, tmp_path: Path, unique: str
) -> None:
    env = tls_env(tls_kafka, pki.ca, tmp_path)
    settings = tls_settings(tls_kafka, pki)
    applied = procs.start("apply", kedge("topology", "apply", "-o", "json"), env)
    assert await exit_code(applied) == 0, applied.log()

    worker = procs.start("worker", kedge("worker"),
                         {**worker_env(tls_kafka.bootstrap, tmp_path / "worker", f"tls-worker-{unique}"), **env,
                          "KEDGE_DATA_DIR": str(tmp_path / "worker")})
    app = f"tls-{unique}"
    await seed_registry(tmp_path, app)
    admin = kafka.admin_client(settings)
    await admin.start()
    try:
        await apply(admin, [app_topic_spec(app, partitions=2, replication=1)])
    finally:
        await admin.close()
    http = procs.start("http", kedge("serve", "http", "--port", "0"), env)
    await worker.wait_for_log("Ready", 60)

    # a device connect through the worker's agents, every hop over TLS
    client = StateClient(settings, TEST_LEASE, topology=TopologySettings(device_partitions=DEVICE_PARTITIONS))
    await client.start()
    try:
        cid = uuid.uuid4().hex
        reply = await client.connect(app, "dev-1", cid, "mqtt", f"{app}-uid", "dev-1-uid")
        assert reply.accepted and reply.connection_id == cid
    finally:
        await client.stop()

    # an HTTP publish lands on events-<app>
    await http.wait_for_log("http endpoint listening on http://", 30)
    match = re.search(r"listening on (http://127\.0\.0\.1:\d+)", http.log())
    assert match, http.log()
    async with httpx.AsyncClient(base_url=match.group(1), timeout=10) as web:
        sent = await web.post("/v1/telemetry", content=b'{"temp": 42}',
                              headers={**basic(f"dev-1@{app}", "secret"), "Content-Type": "application/json"})
        assert sent.status_code == 202, sent.text
    records = await read_records(settings, app_topic(app), 3)  # connected, telemetry, disconnected (any order)
    kinds = sorted(dict(r.headers)["ce_type"].decode() for r in records)
    assert kinds.count("io.drogue.connection.v1") == 2 and kinds.count("io.drogue.event.v1") == 1, kinds
    telemetry = next(r for r in records if dict(r.headers)["ce_type"] == b"io.drogue.event.v1")
    assert orjson.loads(telemetry.value) == {"temp": 42}


@pytest.mark.slow
async def test_a_wrong_ca_is_one_line_and_exit_1_from_every_process(
    tls_kafka: SecuredKafka, pki: Pki, procs: ProcGroup, tmp_path: Path
) -> None:
    env = tls_env(tls_kafka, pki.wrong_ca, tmp_path)
    started = {name: procs.start(name, kedge(*argv), env) for name, argv in {
        "apply": ("topology", "apply"), "worker": ("worker",), "http": ("serve", "http", "--port", "0"),
        "mqtt": ("serve", "mqtt", "--port", "0"), "api": ("serve", "api", "--port", "0"),
        "ws-integration": ("serve", "ws-integration", "--port", "0"),
        "mqtt-integration": ("serve", "mqtt-integration", "--port", "0")}.items()}
    for name, proc in started.items():
        assert await exit_code(proc, 30) == 1, f"{name}: {proc.log()}"
        lines = proc.log().strip().splitlines()
        assert len(lines) == 1, f"{name}: {lines}"
        assert lines[0].startswith(f"error: TLS to Kafka at {tls_kafka.bootstrap}: broker certificate not trusted"), \
            f"{name}: {lines[0]}"
        assert f"check KEDGE_KAFKA__SSL_CAFILE={pki.wrong_ca}" in lines[0], lines[0]


async def test_mutual_tls_with_a_client_certificate(mtls_kafka: SecuredKafka, pki: Pki) -> None:
    with_cert = tls_settings(mtls_kafka, pki, ssl_certfile=pki.client_cert, ssl_keyfile=pki.client_key)
    await kafka.check_security(with_cert)
    admin = kafka.admin_client(with_cert)
    await admin.start()
    try:
        assert isinstance(await admin.list_topics(), list)
    finally:
        await admin.close()
    with pytest.raises(kafka.KafkaSecurityError, match=f"TLS to Kafka at {mtls_kafka.bootstrap} failed: .*; does it "
                       r"want a client certificate\? \(KEDGE_KAFKA__SSL_CERTFILE, _SSL_KEYFILE\)"):
        await kafka.check_security(tls_settings(mtls_kafka, pki), timeout_s=5)


def test_unreadable_certificate_files_are_one_line_naming_the_setting(tmp_path: Path, pki: Pki) -> None:
    missing = tmp_path / "nope.pem"
    with pytest.raises(kafka.KafkaSecurityError, match=r"^KEDGE_KAFKA__SSL_CAFILE=.*nope\.pem: not a readable"):
        kafka.ssl_context(KafkaSettings(security_protocol="SSL", ssl_cafile=missing))
    with pytest.raises(kafka.KafkaSecurityError, match=r"^KEDGE_KAFKA__SSL_CERTFILE=.*client\.pem / "
                                                       r"KEDGE_KAFKA__SSL_KEYFILE=.*nope\.pem: not a readable"):
        kafka.ssl_context(KafkaSettings(security_protocol="SSL", ssl_certfile=pki.client_cert, ssl_keyfile=missing))


async def test_tls_against_a_plaintext_listener_fails_within_the_timeout(kafka_broker: EmbeddedBroker) -> None:
    settings = KafkaSettings(bootstrap_servers=kafka_broker.bootstrap, security_protocol="SSL")
    with pytest.raises(kafka.KafkaSecurityError, match="did not complete the SSL handshake within 1s"):
        await kafka.check_security(settings, timeout_s=1)


async def test_an_unreachable_broker_is_not_a_security_error() -> None:
    from kedge.broker import free_port

    await kafka.check_security(KafkaSettings(bootstrap_servers=f"127.0.0.1:{free_port()}", security_protocol="SSL"))
