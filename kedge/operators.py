"""Wiring of the registry follower (topic operator + registry events) into the API host.

The follower (``agents.registry_follower``) is stateless, so it runs as a task of the process that has the
registry at hand: the API host. It writes ``KafkaReady`` through :class:`RegistryConditions`, which uses the
registry's own update path (optimistic locking, outbox), so the condition change is itself a registry change.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from datetime import UTC, datetime
from typing import Any

from agents.registry_follower import GROUP, FollowerConfig, run_follower
from kedge.kafka import common_options
from kedge.settings import Settings
from registry.errors import Conflict, NotFound
from registry.store import Registry
from schemas.registry import ApplicationIn

log = logging.getLogger(__name__)

KAFKA_READY = "KafkaReady"
_ATTEMPTS = 10


class RegistryConditions:
    """:class:`agents.registry_follower.ConditionWriter` on top of :class:`registry.store.Registry`."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry

    async def set_kafka_ready(self, app: str, app_uid: str, ready: bool, message: str) -> None:
        status = "True" if ready else "False"
        for _ in range(_ATTEMPTS):
            try:
                row = await self.registry.get_app(app)
            except NotFound:
                return
            if row["uid"] != app_uid or row["deletion_timestamp"] is not None:
                return  # a different incarnation of the name, or on its way out
            conditions: list[Any] = list(row["status"].get("conditions") or [])
            current = next((c for c in conditions if isinstance(c, dict) and c.get("type") == KAFKA_READY), None)
            if current is not None and current.get("status") == status:
                return
            conditions = [c for c in conditions if c is not current]
            conditions.append({"type": KAFKA_READY, "status": status,
                               "lastTransitionTime": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
                               "reason": "TopicReady" if ready else "TopicNotReady", "message": message})
            body = ApplicationIn.model_validate({
                "metadata": {"name": app, "uid": app_uid, "resourceVersion": row["resource_version"],
                             "labels": row["labels"], "annotations": row["annotations"],
                             "finalizers": row["finalizers"]},
                "spec": row["spec"],
                "status": {**row["status"], "conditions": conditions},
            })
            try:
                await self.registry.update_app(app, body)
                return
            except Conflict:
                continue  # someone wrote in between: read again
        log.error("could not set %s on application %r after %d attempts", KAFKA_READY, app, _ATTEMPTS)


def follower_group(settings: Settings) -> str:
    """One follower group per registry database: API hosts sharing a database share the work; installations
    that share a Kafka cluster (or a test run's broker) do not steal each other's partitions."""
    digest = hashlib.blake2b(settings.registry_database_url.encode(), digest_size=6).hexdigest()
    return f"{GROUP}-{digest}"


class FollowerTask:
    """Runs the follower for the life of the API host (``start``/``stop`` from its lifespan)."""

    def __init__(self, settings: Settings, registry: Registry) -> None:
        self.settings = settings
        self.registry = registry
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        s = self.settings
        config = FollowerConfig(bootstrap_servers=s.kafka.bootstrap_servers, instance=s.instance,
                                app_partitions=s.topology.app_partitions, replication=s.topology.replication_factor,
                                group_id=follower_group(s))
        self._task = asyncio.create_task(run_follower(config, RegistryConditions(self.registry),
                                                      client_options=common_options(s.kafka), stop=self._stop))

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(self._task, 10)
