"""A device event produced through our binding, read back from the real broker and parsed by the SDK."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from cloudevents.core.bindings import kafka as sdk_kafka
from cloudevents.core.formats.json import JSONFormat

from schemas.binding import from_kafka, to_kafka
from schemas.events import build_device_event
from topology.apply import apply
from topology.declare import app_topic_spec

pytestmark = pytest.mark.integration

T0 = datetime(2022, 7, 7, 13, 47, 39, 123456, tzinfo=UTC)


async def test_round_trip_through_the_broker(bootstrap: str, unique: str) -> None:
    app = f"my-app-{unique}"
    spec = app_topic_spec(app, partitions=3, replication=1)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await apply(admin, [spec])
    finally:
        await admin.close()

    event = build_device_event(
        app=app, app_uid="a-uid", device="dev-1", device_uid="d-uid", sender="gw-1", sender_uid="g-uid",
        instance="drogue", channel="telemetry", payload=b'{"temp": 42, "unit": "C"}', content_type=None,
        data_schema="urn:kedge:temp", time=T0,
    )
    record = to_kafka(event)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(spec.name, record.value, key=record.key, headers=record.headers)
    finally:
        await producer.stop()

    consumer = AIOKafkaConsumer(spec.name, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    try:
        msg = await consumer.getone()
    finally:
        await consumer.stop()

    assert msg.key == f"{app.replace('-', '%2D')}/gw%2D1".encode()
    assert msg.value == b'{"temp":42,"unit":"C"}'
    assert ("content-type", b"application/json") in msg.headers
    ce = sdk_kafka.from_binary(sdk_kafka.KafkaMessage(dict(msg.headers), msg.key, msg.value), JSONFormat())
    attrs = ce.get_attributes()
    assert attrs == {
        "specversion": "1.0", "id": event.id, "type": "io.drogue.event.v1",
        "source": f"drogue://{app}/dev%2D1", "subject": "telemetry", "time": T0,
        "datacontenttype": "application/json", "dataschema": "urn:kedge:temp", "application": app,
        "applicationuid": "a-uid", "device": "dev-1", "deviceuid": "d-uid", "sender": "gw-1", "senderuid": "g-uid",
        "partitionkey": msg.key.decode(), "instance": "drogue",
    }
    assert ce.get_data() == {"temp": 42, "unit": "C"}
    assert from_kafka(msg.key, msg.value, msg.headers) == event
