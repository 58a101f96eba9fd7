"""`kedge serve mqtt-integration`: the MQTT integration (``integrations.mqtt``) wired to the registry database.

The registry adapters are the WebSocket integration's and the command API's (:mod:`kedge.integration_wiring`):
one way to authenticate users, check app permissions and find a command's targets.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from integrations.auth import UserAccess
from integrations.commands.model import DeviceDirectory
from kedge.integration_wiring import AccessAdapter, RegistryDirectory, access_config
from kedge.settings import Settings


def run_mqtt_integration(settings: Settings,
                         on_ready: Callable[[list[tuple[str, str, int]]], None] | None = None) -> None:
    """Serve until SIGTERM/SIGINT on the registry database of ``settings``."""
    from integrations.mqtt.server import run
    from registry.access import Access
    from registry.db import create_engine
    from registry.store import Registry

    @asynccontextmanager
    async def resources() -> AsyncIterator[tuple[UserAccess, DeviceDirectory]]:
        engine = create_engine(settings.registry_database_url)
        try:
            access = Access.create(engine, access_config(settings))
            yield AccessAdapter(access), RegistryDirectory(Registry(engine))
        finally:
            await engine.dispose()

    run(resources, settings.integration, settings.kafka, on_ready)
