"""The HTTP endpoint with the real Publisher on the real embedded broker: records exactly as in §2.3."""

from __future__ import annotations

import base64
import re
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from cloudevents.v1.kafka import KafkaMessage, from_binary

from ingress.http import HttpEndpoint, Resources
from ingress.metrics import IngressMetrics
from ingress.publish import Publisher
from kedge.broker import EmbeddedBroker, free_port
from kedge.settings import KafkaSettings
from tests.ingress.fakes import FakeAuthenticator, FakeDevice
from tests.ingress.kafka_support import create_app_topic, read_records

pytestmark = pytest.mark.integration

RFC3339 = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{3}|\.\d{6})?\+00:00")


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


class Stack:
    def __init__(self, bootstrap: str, app: str, **kafka: object) -> None:
        self.metrics = IngressMetrics("http")
        self.publisher = Publisher.from_settings(KafkaSettings(bootstrap_servers=bootstrap, **kafka),  # type: ignore[arg-type]
                                                 on_outcome=self.metrics.outcome)
        self.auth = FakeAuthenticator([FakeDevice(app, "dev-1", "secret"), FakeDevice(app, "gw", "gw-pw"),
                                       FakeDevice(app, "sensor.7", "x", gateways=("gw",))])
        self.app = HttpEndpoint(instance="drogue", max_payload_bytes=65536, max_command_timeout_s=60,
                                metrics=self.metrics, ready=Resources(self.auth, self.publisher))
        self.client = httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app), base_url="http://kedge")


@pytest.fixture
async def app_name(bootstrap: str, unique: str) -> str:
    name = f"my-app-{unique}"
    await create_app_topic(bootstrap, name)
    return name


@pytest.fixture
async def stack(bootstrap: str, app_name: str) -> AsyncIterator[Stack]:
    s = Stack(bootstrap, app_name)
    await s.publisher.start()
    await s.publisher.wait_connected(10)
    async with s.client:
        yield s
    await s.publisher.stop()


def _message(record: object) -> KafkaMessage:
    headers = dict(record.headers)  # type: ignore[attr-defined]
    return KafkaMessage(headers=headers, key=record.key, value=record.value)  # type: ignore[attr-defined]


async def test_telemetry_record_is_exactly_as_drogue_writes_it(
    bootstrap: str, stack: Stack, app_name: str
) -> None:
    before = datetime.now(UTC)
    r = await stack.client.post("/v1/telemetry", content=b'{"temp": 42}',
                                headers={**basic(f"dev-1@{app_name}", "secret"),
                                         "Content-Type": "application/json"})
    assert r.status_code == 202, r.text
    [record] = await read_records(bootstrap, f"events-{app_name}", 1)
    pct_app = app_name.replace("-", "%2D")
    assert record.topic == f"events-{app_name}"
    assert record.key == f"{pct_app}/dev%2D1".encode()
    assert record.value == b'{"temp":42}'
    headers = dict(record.headers)
    assert [name for name, _ in record.headers] == [
        "ce_specversion", "ce_id", "ce_type", "ce_source", "ce_subject", "ce_time", "content-type",
        "ce_application", "ce_applicationuid", "ce_device", "ce_deviceuid", "ce_sender", "ce_senderuid",
        "ce_partitionkey", "ce_instance",
    ]
    assert headers["ce_specversion"] == b"1.0"
    assert uuid.UUID(headers["ce_id"].decode()).version == 4
    assert headers["ce_type"] == b"io.drogue.event.v1"
    assert headers["ce_source"] == f"drogue://{app_name}/dev%2D1".encode()
    assert headers["ce_subject"] == b"telemetry"
    assert RFC3339.fullmatch(headers["ce_time"].decode()), headers["ce_time"]
    assert headers["content-type"] == b"application/json"
    assert headers["ce_application"] == app_name.encode()
    assert headers["ce_applicationuid"] == f"uid-app-{app_name}".encode()
    assert headers["ce_device"] == headers["ce_sender"] == b"dev-1"
    assert headers["ce_deviceuid"] == headers["ce_senderuid"] == b"uid-dev-dev-1"
    assert headers["ce_partitionkey"] == record.key
    assert headers["ce_instance"] == b"drogue"

    ce = from_binary(_message(record))
    assert ce["specversion"] == "1.0"
    assert ce["type"] == "io.drogue.event.v1"
    assert ce["source"] == f"drogue://{app_name}/dev%2D1"
    assert ce["subject"] == "telemetry"
    assert ce["datacontenttype"] == "application/json"
    assert ce["application"] == app_name
    assert ce["device"] == ce["sender"] == "dev-1"
    assert ce["instance"] == "drogue"
    assert ce.data == {"temp": 42}
    sent_at = datetime.fromisoformat(ce["time"])
    assert before - timedelta(seconds=1) <= sent_at <= datetime.now(UTC) + timedelta(seconds=1)
    assert stack.metrics.events("accepted") == 1


async def test_gateway_record_is_keyed_by_the_sender(bootstrap: str, stack: Stack, app_name: str) -> None:
    params = {"as": "sensor.7", "data_schema": "urn:x:1"}
    r = await stack.client.post("/v1/state/ignored/suffix", params=params,
                                content=b"raw \x00 bytes", headers=basic(f"gw@{app_name}", "gw-pw"))
    assert r.status_code == 202, r.text
    [record] = await read_records(bootstrap, f"events-{app_name}", 1)
    pct_app = app_name.replace("-", "%2D")
    assert record.key == f"{pct_app}/gw".encode()
    assert record.value == b"raw \x00 bytes"
    ce = from_binary(_message(record), data_unmarshaller=lambda b: b)
    assert ce["source"] == f"drogue://{app_name}/sensor%2E7"
    assert ce["subject"] == "state"
    assert ce["dataschema"] == "urn:x:1"
    assert ce["datacontenttype"] == "application/octet-stream"
    assert (ce["device"], ce["deviceuid"], ce["sender"], ce["senderuid"]) == (
        "sensor.7", "uid-dev-sensor.7", "gw", "uid-dev-gw")
    assert ce["partitionkey"] == record.key  # the SDK maps the record key to `partitionkey`
    assert ce.data == b"raw \x00 bytes"


async def test_many_concurrent_publishes_all_arrive(bootstrap: str, stack: Stack, app_name: str) -> None:
    import asyncio

    auth = basic(f"dev-1@{app_name}", "secret")
    responses = await asyncio.gather(*(
        stack.client.post("/v1/telemetry", content=f'{{"n":{i}}}'.encode(), headers=auth)
        for i in range(200)))
    assert {r.status_code for r in responses} == {202}
    records = await read_records(bootstrap, f"events-{app_name}", 200)
    assert sorted(int(r.value[5:-1]) for r in records) == list(range(200))
    assert {r.partition for r in records} == {records[0].partition}, "one device -> one partition"


async def test_kafka_unreachable_is_503(app_name: str) -> None:
    s = Stack(f"127.0.0.1:{free_port()}", app_name, request_timeout_ms=500, connect_retry_s=0.1)
    await s.publisher.start()
    async with s.client:
        r = await s.client.post("/v1/telemetry", content=b"1", headers=basic(f"dev-1@{app_name}", "secret"))
    await s.publisher.stop()
    assert r.status_code == 503
    assert r.json()["error"] == "ServiceUnavailable"
    assert s.metrics.events("unavailable") == 1


@pytest.mark.slow
async def test_broker_dying_turns_publishes_into_503_not_hangs(tmp_path: Path) -> None:
    broker = EmbeddedBroker(port=free_port(), log_path=tmp_path / "tansu.log")
    await broker.start()
    try:
        await create_app_topic(broker.bootstrap, "dying")
        s = Stack(broker.bootstrap, "dying", request_timeout_ms=1000, publish_timeout_s=2.0)
        await s.publisher.start()
        await s.publisher.wait_connected(10)
        async with s.client:
            auth = basic("dev-1@dying", "secret")
            ok = await s.client.post("/v1/t", content=b"1", headers=auth)
            broker.stop()
            down = await s.client.post("/v1/t", content=b"2", headers=auth, timeout=15)
        await s.publisher.stop()
    finally:
        broker.stop()
    assert ok.status_code == 202
    assert down.status_code == 503


async def test_missing_topic_is_503_and_is_not_auto_created(bootstrap: str, unique: str) -> None:
    """Tansu auto-creates topics on a metadata request; the publisher must never make events-<app> itself."""
    from kedge import kafka

    app = f"no-topic-{unique}"
    s = Stack(bootstrap, app)
    await s.publisher.start()
    await s.publisher.wait_connected(10)
    async with s.client:
        r = await s.client.post("/v1/telemetry", content=b"1", headers=basic(f"dev-1@{app}", "secret"))
    await s.publisher.stop()
    assert r.status_code == 503
    assert "does not exist" in r.json()["message"]
    admin = kafka.admin_client(KafkaSettings(bootstrap_servers=bootstrap))
    await admin.start()
    try:
        assert f"events-{app}" not in await admin.list_topics()
    finally:
        await admin.close()
