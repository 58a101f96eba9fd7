"""Fixtures: a migrated registry database per test (SQLite and PostgreSQL), an Access on it, and a small
FastAPI app with the access routes."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine

from registry.access import Access, AccessConfig, CurrentIdentity, install, routers
from registry.access.secrets_dir import SIGNING_KEY_FILE
from registry.api import errors
from registry.db import create_engine, migrate
from registry.tables import apps
from tests.registry.access.fake_oidc import FakeIssuer


@pytest.fixture(scope="session")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="session")
def other_rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


PG_DATABASE = "kedge_access_tests"
_pg_ready: dict[str, str] = {}


def _pg_access_url(pg_url: str) -> str:
    """A database of its own on the session's PostgreSQL cluster, migrated once (the registry suite's
    session API host uses the default database, which these tests must not truncate)."""
    if "url" not in _pg_ready:
        server = pg_url.split("://", 1)[1].rsplit("/", 1)[0]
        url = f"postgresql+asyncpg://{server}/{PG_DATABASE}"

        async def setup() -> None:
            conn = await asyncpg.connect(pg_url)
            try:
                await conn.execute(f"CREATE DATABASE {PG_DATABASE}")
            except asyncpg.DuplicateDatabaseError:
                pass
            finally:
                await conn.close()
            engine = create_engine(url)
            await migrate(engine)
            await engine.dispose()

        # on a thread with its own loop: fixtures run inside the session loop
        with ThreadPoolExecutor(1) as pool:
            pool.submit(asyncio.run, setup()).result(timeout=60)
        _pg_ready["url"] = url
    return _pg_ready["url"]


@pytest.fixture(params=["sqlite", "postgresql"])
async def engine(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    """A migrated, empty registry database: a SQLite file per test, or the PostgreSQL test database."""
    if request.param == "sqlite":
        engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'registry.db'}")
        await migrate(engine)
    else:
        engine = create_engine(_pg_access_url(request.getfixturevalue("pg_url")))
        async with engine.begin() as conn:
            await conn.execute(sa.text("TRUNCATE users, access_tokens, apps CASCADE"))
    yield engine
    await engine.dispose()


@pytest.fixture
def data_dir(tmp_path: Path, rsa_key: rsa.RSAPrivateKey) -> Path:
    """A data dir that already holds a signing key (generating one per test would be slow)."""
    path = tmp_path / "data"
    path.mkdir()
    pem = rsa_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    (path / SIGNING_KEY_FILE).write_bytes(pem)
    (path / SIGNING_KEY_FILE).chmod(0o600)
    return path


@pytest.fixture
def config(data_dir: Path) -> AccessConfig:
    return AccessConfig(data_dir=data_dir, jwt_ttl_s=600, bcrypt_rounds=4)


@pytest.fixture
async def access(engine: AsyncEngine, config: AccessConfig) -> Access:
    return Access.create(engine, config)


def build_app(access: Access) -> FastAPI:
    """What the API host does, in small: install, include the routers, Drogue error bodies."""
    app = FastAPI()
    install(app, access)
    for router in routers():
        app.include_router(router)
    errors.install(app)  # the API host's error bodies (RegistryError, 422 -> 400, framework errors)

    @app.get("/probe")
    async def probe(identity: CurrentIdentity) -> dict[str, Any]:
        return identity.to_json()

    return app


@pytest.fixture
async def client(access: Access) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=build_app(access))
    async with httpx.AsyncClient(transport=transport, base_url="http://kedge.test") as client:
        yield client


@pytest.fixture
async def admin(access: Access) -> tuple[str, str]:
    username, password, _ = await access.ensure_admin()
    assert password is not None
    return username, password


async def insert_app(
    engine: AsyncEngine, name: str, *, owner: str | None, members: dict[str, Any] | None = None
) -> None:
    """An application row as the registry writes it (only the access columns matter here)."""
    now = datetime.now(UTC)
    values: dict[str, Any] = {
        "name": name,
        "uid": str(uuid.uuid4()),
        "creation_timestamp": now,
        "deletion_timestamp": None,
        "generation": 1,
        "resource_version": str(uuid.uuid4()),
        "revision": 1,
        "labels": {},
        "annotations": {},
        "finalizers": [],
        "spec": {},
        "status": {},
        "owner": owner,
        "transfer_owner": None,
        "members": members or {},
    }
    async with engine.begin() as conn:
        await conn.execute(apps.insert().values(**{k: v for k, v in values.items() if k in apps.c}))


@pytest.fixture
def oidc() -> Iterator[FakeIssuer]:
    fake = FakeIssuer()
    fake.thread.start()
    yield fake
    fake.server.shutdown()
    fake.server.server_close()
