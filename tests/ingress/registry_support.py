"""Registry helpers for end-to-end tests: devices created in a real registry database (SQLite under a data
dir) with the registry's own storage functions, and registry changes relayed to the `registry` topic."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

from kedge import kafka
from kedge.settings import KafkaSettings, TopologySettings
from registry.db import create_engine, migrate
from registry.outbox import OutboxRelay
from registry.store import Registry
from schemas.registry import ApplicationIn, DeviceIn
from topology.apply import apply
from topology.declare import TopicSpec
from topology.names import REGISTRY


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def device(app: str, name: str, spec: dict[str, Any]) -> DeviceIn:
    return DeviceIn.model_validate({"metadata": {"application": app, "name": name}, "spec": spec})


async def seed_registry(data_dir: Path, app: str, extra: tuple[str, ...] = ()) -> dict[str, str]:
    """Create the app and its devices (``dev-1``, ``gw``, ``child`` of ``gw``, disabled ``off``, and each of
    ``extra``; password ``secret``) with the registry's own storage functions; return their uids."""
    engine = create_engine(f"sqlite+aiosqlite:///{data_dir / 'registry.db'}")
    try:
        await migrate(engine)
        registry = Registry(engine)
        app_in = ApplicationIn.model_validate({"metadata": {"name": app}})
        app_row = await registry.create_app(app_in, owner=None)
        uids = {"app": app_row["uid"]}
        creds: dict[str, Any] = {"credentials": {"credentials": [{"pass": "secret"}]}}
        specs: list[tuple[str, dict[str, Any]]] = [
            ("dev-1", creds),
            ("gw", creds),
            ("child", {**creds, "gatewaySelector": {"matchNames": ["gw"]}}),
            ("off", {**creds, "core": {"disabled": True}}),
            *((name, creds) for name in extra),
        ]
        for name, spec in specs:
            uids[name] = (await registry.create_device(app, device(app, name, spec)))["uid"]
        return uids
    finally:
        await engine.dispose()


async def create_registry_topic(bootstrap: str) -> None:
    admin = kafka.admin_client(KafkaSettings(bootstrap_servers=bootstrap))
    await admin.start()
    try:
        await apply(admin, [TopicSpec(REGISTRY, TopologySettings().device_partitions, 1, {}, "registry")])
    finally:
        await admin.close()


async def disable_and_relay(bootstrap: str, data_dir: Path, app: str, name: str) -> None:
    """Disable a device through the registry and relay its outbox row to the `registry` topic."""
    engine = create_engine(f"sqlite+aiosqlite:///{data_dir / 'registry.db'}")
    producer = kafka.producer(KafkaSettings(bootstrap_servers=bootstrap))
    await producer.start()
    try:
        spec = {"credentials": {"credentials": [{"pass": "secret"}]}, "core": {"disabled": True}}
        await Registry(engine).update_device(app, name, device(app, name, spec))
        assert await OutboxRelay(engine, lambda: producer).drain_once(producer) >= 1
    finally:
        await producer.stop()
        await engine.dispose()
