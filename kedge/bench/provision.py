"""The app and devices of a run, through the API host's registry REST API (and cleanup afterwards).

Authentication: a bearer token, or a user and password exchanged for a JWT at ``POST /api/token`` (by default
the bootstrap admin from ``<data dir>/admin-credentials.json``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from kedge.errors import KedgeError
from kedge.kafka import admin_client
from kedge.settings import KafkaSettings
from topology.names import app_topic

REGISTRY = "/api/registry/v1alpha1"
CONCURRENCY = 16
RETRIES = 4


def admin_credentials(data_dir: Path) -> tuple[str, str]:
    path = data_dir / "admin-credentials.json"
    try:
        data = json.loads(path.read_text())
        return str(data["username"]), str(data["password"])
    except (OSError, ValueError, KeyError) as exc:
        raise KedgeError(f"no admin credentials at {path} ({exc}); pass --username/--password or --token, "
                         "or --data-dir of the API host") from None


@dataclass
class Provisioned:
    app: str
    devices: list[str]
    password: str
    created_app: bool
    created_topic: bool


class Provisioner:
    def __init__(self, api_url: str, kafka: KafkaSettings, *, token: str | None = None,
                 username: str | None = None, password: str | None = None) -> None:
        self.api_url = api_url.rstrip("/")
        self.kafka = kafka
        self.token = token
        self.credentials = (username, password) if username and password else None
        self.client = httpx.AsyncClient(base_url=self.api_url, timeout=30)

    async def __aenter__(self) -> Provisioner:
        if self.token is None:
            if self.credentials is None:
                raise KedgeError("no API credentials")
            self.token = await self._jwt(*self.credentials)
        self.client.headers["Authorization"] = f"Bearer {self.token}"
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.client.aclose()

    async def _jwt(self, username: str, password: str) -> str:
        r = await self._call("POST", "/api/token",
                             data={"grant_type": "password", "username": username, "password": password})
        return str(r.json()["access_token"])

    async def _call(self, method: str, path: str, ok: tuple[int, ...] = (200, 201, 204), **kw: Any) -> httpx.Response:
        """One request; a network failure or timeout is retried (a busy API host), then reported."""
        for attempt in range(RETRIES):
            try:
                r = await self.client.request(method, path, **kw)
                break
            except httpx.HTTPError as exc:
                if attempt == RETRIES - 1:
                    raise KedgeError(f"cannot reach the API host at {self.api_url}: "
                                     f"{str(exc) or type(exc).__name__}") from None
                await asyncio.sleep(0.5 * (attempt + 1))
        if r.status_code == 409 and method == "POST" and attempt > 0:
            return r  # a retried create whose first attempt went through
        if r.status_code not in ok:
            raise KedgeError(f"{method} {path}: HTTP {r.status_code} {r.text[:200]}")
        return r

    async def create(self, app: str, count: int, password: str, *, topic_wait_s: float = 5.0,
                     partitions: int = 3) -> Provisioned:
        """A new app with devices ``d0..d{count-1}`` (one plain password), and its events topic."""
        await self._call("POST", f"{REGISTRY}/apps", json={"metadata": {"name": app}})
        created_topic = await self._ensure_topic(app, topic_wait_s, partitions)
        names = [f"d{i}" for i in range(count)]
        gate = asyncio.Semaphore(CONCURRENCY)
        spec = {"credentials": {"credentials": [{"pass": password}]}}

        async def one(name: str) -> None:
            async with gate:
                await self._call("POST", f"{REGISTRY}/apps/{app}/devices",
                                 json={"metadata": {"name": name, "application": app}, "spec": spec})

        await asyncio.gather(*(one(n) for n in names))
        return Provisioned(app, names, password, True, created_topic)

    async def _ensure_topic(self, app: str, wait_s: float, partitions: int) -> bool:
        """Wait for the topic operator to create ``events-<app>``; create it here if none does in ``wait_s``.
        True if this created it."""
        topic = app_topic(app)
        admin = admin_client(self.kafka)
        await admin.start()
        try:
            deadline = time.monotonic() + wait_s
            while time.monotonic() < deadline:
                if topic in await admin.list_topics():
                    return False
                await asyncio.sleep(0.2)
            from aiokafka.admin import NewTopic
            from aiokafka.errors import TopicAlreadyExistsError

            try:
                await admin.create_topics([NewTopic(topic, partitions, 1)])
            except TopicAlreadyExistsError:
                return False
            return True
        finally:
            await admin.close()

    async def delete(self, provisioned: Provisioned) -> None:
        if provisioned.created_app:
            await self._call("DELETE", f"{REGISTRY}/apps/{provisioned.app}", ok=(200, 204, 404))
        if provisioned.created_topic:
            admin = admin_client(self.kafka)
            await admin.start()
            try:
                with contextlib.suppress(Exception):  # best effort: the app is gone either way
                    await admin.delete_topics([app_topic(provisioned.app)])
            finally:
                await admin.close()
