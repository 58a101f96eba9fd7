"""The transactional outbox: what a plain consumer of the ``registry`` topic sees (reference §3.3)."""

from __future__ import annotations

import pytest

from kedge.apihost import build
from kedge.broker import EmbeddedBroker, free_port
from registry.db import create_engine, migrate
from registry.outbox import OutboxRelay
from registry.store import Preconditions, Registry
from schemas.keys import app_key, device_key
from schemas.registry import ApplicationIn, DeviceIn
from tests.registry.conftest import PARTITIONS, Api, ensure_registry_topic, running_api, settings_for
from tests.registry.kafka_read import by_partition, read_changes
from tests.support.procs import eventually

BASE = "/api/registry/v1alpha1"

pytestmark = pytest.mark.integration


async def test_exactly_the_changes_in_order(api: Api, unique: str, bootstrap: str) -> None:
    app = f"ob-{unique}"
    url = f"{BASE}/apps/{app}/devices"
    assert (await api.alice.post(f"{BASE}/apps", json={"metadata": {"name": app}})).status_code == 201
    assert (await api.alice.post(url, json={"metadata": {"name": "d1"}})).status_code == 201
    d1 = (await api.alice.get(f"{url}/d1")).json()
    d1["spec"] = {"foo": {"x": 1}, "core": {"disabled": True}}
    d1["metadata"]["labels"] = {"l": "1"}
    assert (await api.alice.put(f"{url}/d1", json=d1)).status_code == 204
    assert (await api.alice.put(f"{url}/d1", json=(await api.alice.get(f"{url}/d1")).json())).status_code == 204
    assert (await api.alice.delete(f"{url}/d1")).status_code == 204
    assert (await api.alice.post(url, json={"metadata": {"name": "d2"}})).status_code == 201
    assert (await api.alice.delete(f"{BASE}/apps/{app}")).status_code == 204

    # app records: one copy per partition; device records: once, on the device key's partition
    expected = 2 * PARTITIONS + 5
    seen = await read_changes(bootstrap, expected, 20.0, lambda c: c.app == app)
    assert len(seen) == expected
    # order is defined per key (partition), so compare each device's records in arrival order
    device_records = sorted((s for s in seen if s.change.device is not None), key=lambda s: s.change.device or "")
    assert [(s.change.device, s.change.operation, s.change.paths) for s in device_records] == [
        ("d1", "created", ["."]),
        ("d1", "updated", [".metadata", ".spec.core", ".spec.foo"]),
        ("d1", "deleted", ["."]),
        ("d2", "created", ["."]),
        ("d2", "deleted", ["."]),
    ]
    updated = device_records[1].change
    assert updated.disabled is True and updated.generation == 2 and updated.revision == 2
    assert device_records[2].change.revision == 3 and device_records[2].change.uid == d1["metadata"]["uid"]
    assert device_records[4].change.cascade is True
    assert all(s.key == device_key(app, s.change.device or "") for s in device_records)
    app_uid = device_records[0].change.app_uid
    assert all(s.change.app_uid == app_uid for s in seen)

    parts = by_partition(seen)
    app_records = [s for s in seen if s.change.device is None]
    assert sorted(s.partition for s in app_records if s.change.operation == "created") == list(range(PARTITIONS))
    assert sorted(s.partition for s in app_records if s.change.operation == "deleted") == list(range(PARTITIONS))
    assert all(s.key == app_key(app) and s.change.paths == ["."] for s in app_records)
    for records in parts.values():  # per partition: app created first, app deleted before its cascade
        assert records[0].change.device is None and records[0].change.operation == "created"
    on_d2 = [(s.change.device, s.change.operation) for s in parts[device_records[3].partition]
             if s.change.device in (None, "d2")]
    assert on_d2 == [(None, "created"), ("d2", "created"), (None, "deleted"), ("d2", "deleted")]


async def test_soft_delete_records(api: Api, unique: str, bootstrap: str) -> None:
    app = f"obs-{unique}"
    await api.alice.post(f"{BASE}/apps", json={"metadata": {"name": app}})
    await api.alice.post(f"{BASE}/apps/{app}/devices", json={"metadata": {"name": "d", "finalizers": ["f"]}})
    assert (await api.alice.delete(f"{BASE}/apps/{app}")).status_code == 204
    seen = await read_changes(bootstrap, 2 * PARTITIONS + 2, 20.0, lambda c: c.app == app)
    device = [s.change for s in seen if s.change.device == "d"]
    assert [(c.operation, c.paths, c.deleting, c.cascade) for c in device] == [
        ("created", ["."], False, False), ("deleted", [".metadata"], True, True)]
    soft_app = [s.change for s in seen if s.change.device is None and s.change.operation == "deleted"]
    assert len(soft_app) == PARTITIONS and all(c.paths == [".metadata"] and c.deleting for c in soft_app)


async def test_left_over_rows_are_sent_at_start(tmp_path, unique: str, bootstrap: str) -> None:  # type: ignore[no-untyped-def]
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'r.db'}")
    await migrate(engine)
    registry = Registry(engine)  # no relay running: rows stay in the outbox
    app = f"left-{unique}"
    await registry.create_app(ApplicationIn.model_validate({"metadata": {"name": app}}), owner=None)
    await registry.create_device(app, DeviceIn.model_validate({"metadata": {"name": "d"}}))
    await registry.delete_device(app, "d", Preconditions())
    from kedge.kafka import producer
    from kedge.settings import KafkaSettings

    relay = OutboxRelay(engine, lambda: producer(KafkaSettings(bootstrap_servers=bootstrap)), retry_s=0.2)
    relay.start()
    try:
        seen = await read_changes(bootstrap, PARTITIONS + 2, 20.0, lambda c: c.app == app)
    finally:
        await relay.stop()
        await engine.dispose()
    assert [(s.change.device, s.change.operation) for s in seen if s.change.device] == [
        ("d", "created"), ("d", "deleted")]


@pytest.mark.slow
async def test_delivery_across_a_broker_outage(tmp_path, unique: str) -> None:  # type: ignore[no-untyped-def]
    port = free_port()
    broker = EmbeddedBroker(port=port, log_path=tmp_path / "private-broker.log")
    await broker.start()
    try:
        await ensure_registry_topic(broker.bootstrap)
        settings = settings_for(tmp_path / "data", None, broker.bootstrap)
        settings = settings.model_copy(update={"registry": settings.registry.model_copy(
            update={"outbox_max_backoff_s": 0.5})})
        async with running_api(settings) as api:
            app = f"outage-{unique}"
            url = f"{BASE}/apps/{app}/devices"
            assert (await api.alice.post(f"{BASE}/apps", json={"metadata": {"name": app}})).status_code == 201
            assert (await api.alice.post(url, json={"metadata": {"name": "before"}})).status_code == 201
            seen = await read_changes(broker.bootstrap, PARTITIONS + 1, 20.0, lambda c: c.app == app)
            assert [s.change.device for s in seen if s.change.device] == ["before"]

            broker.stop()
            # writes succeed while Kafka is down
            for name in ("during-1", "during-2"):
                assert (await api.alice.post(url, json={"metadata": {"name": name}})).status_code == 201
            assert (await api.alice.delete(f"{url}/before")).status_code == 204
            for value in ("1", "2"):  # per-key order must survive the outage
                body = {"metadata": {"name": "during-1", "labels": {"v": value}}}
                assert (await api.alice.put(f"{url}/during-1", json=body)).status_code == 204
            # let the relay's own retry path run (producer timeouts, backoff, a new producer)
            await eventually(lambda: api.host.relay.failures >= 1, 30.0, "the relay to notice the outage")

            broker = EmbeddedBroker(port=port, log_path=tmp_path / "private-broker-2.log")
            await broker.start()
            await ensure_registry_topic(broker.bootstrap)  # memory-only broker: the topic is gone
            seen = await read_changes(broker.bootstrap, 5, 30.0, lambda c: c.app == app)
            per_device = sorted(seen, key=lambda s: s.change.device or "")
            assert [(s.change.device, s.change.operation, s.change.revision) for s in per_device] == [
                ("before", "deleted", 2), ("during-1", "created", 1), ("during-1", "updated", 2),
                ("during-1", "updated", 3), ("during-2", "created", 1)]
            assert api.host.relay.failures >= 1
    finally:
        broker.stop()


def test_build_is_importable_without_running() -> None:
    assert callable(build)
