"""Registry test fixtures: the API host on SQLite and on PostgreSQL, with users to call it as."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError
from fastapi import FastAPI

from kedge.apihost import ApiHost, build
from kedge.broker import EmbeddedBroker
from kedge.settings import Settings
from tests.registry import pg
from topology.names import REGISTRY

PARTITIONS = 4


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    reason = pg.missing_reason()
    if reason:
        pytest.skip(f"PostgreSQL run skipped: {reason}")
    cluster = pg.Cluster.start()
    yield cluster.url
    cluster.stop()


async def ensure_registry_topic(bootstrap: str, partitions: int = PARTITIONS) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        with contextlib.suppress(TopicAlreadyExistsError):
            response = await admin.create_topics([NewTopic(REGISTRY, partitions, 1)])
            del response
    finally:
        await admin.close()


@dataclass
class Api:
    """The running API host and clients: ``admin`` (global admin), ``alice``/``bob`` (plain users), ``anon``."""

    host: ApiHost
    admin: httpx.AsyncClient
    alice: httpx.AsyncClient
    bob: httpx.AsyncClient
    anon: httpx.AsyncClient
    ids: dict[str, str]

    @property
    def backend(self) -> str:
        return self.host.engine.dialect.name


async def _client(app: FastAPI, token: str | None) -> httpx.AsyncClient:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api", headers=headers)


@contextlib.asynccontextmanager
async def running_api(settings: Settings) -> AsyncIterator[Api]:
    host = build(settings)
    async with host.app.router.lifespan_context(host.app):
        access = host.access
        name, password, _ = await access.ensure_admin()
        assert password is not None
        ids: dict[str, str] = {}
        tokens = {"admin": (await access.issue_jwt(name, password)).token}
        for user in ("alice", "bob"):
            found = await access.store.user_by_name(user)
            if found is None:
                found = await access.store.create_user(user, f"{user}-password", frozenset())
            ids[user] = found.id
            tokens[user] = (await access.issue_jwt(user, f"{user}-password")).token
        admin, alice, bob = [await _client(host.app, tokens[u]) for u in ("admin", "alice", "bob")]
        anon = await _client(host.app, None)
        clients = [admin, alice, bob]
        try:
            yield Api(host, admin, alice, bob, anon, ids)
        finally:
            for c in [*clients, anon]:
                await c.aclose()


def settings_for(data_dir: Path, database_url: str | None, bootstrap: str) -> Settings:
    registry: dict[str, object] = {"outbox_retry_s": 0.2}
    if database_url:
        registry["database_url"] = database_url
    return Settings(data_dir=data_dir, registry=registry,
                    kafka={"bootstrap_servers": bootstrap, "request_timeout_ms": 3000})


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
async def api(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
              kafka_broker: EmbeddedBroker) -> AsyncIterator[Api]:
    """The API host on one backend for the whole session (tests use unique app names)."""
    url = None if request.param == "sqlite" else request.getfixturevalue("pg_url")
    await ensure_registry_topic(kafka_broker.bootstrap)
    data_dir = tmp_path_factory.mktemp(f"api-{request.param}")
    async with running_api(settings_for(data_dir, url, kafka_broker.bootstrap)) as running:
        yield running
