"""The integration stack for these tests: real `kedge serve api` and `kedge serve ws-integration` processes on the
session's embedded broker, users ``alice`` (owns the apps) and ``bob`` (no access), and helpers to produce events.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from aiokafka import AIOKafkaProducer

from kedge.broker import EmbeddedBroker, free_port
from registry.access.secrets_dir import read_admin_credentials
from schemas.binding import to_kafka
from schemas.events import DeviceEvent, build_device_event
from schemas.types import EVENT_TYPE
from tests.agents.support import create_topics
from tests.ingress.kafka_support import create_app_topic
from tests.support.api import password_jwt
from tests.support.procs import Proc, ProcGroup, kedge

#: how often the WebSocket integration checks token expiry in these tests
TOKEN_CHECK_S = 0.3
PASSWORD = "correct-horse-battery"


@dataclass
class Stack:
    bootstrap: str
    data_dir: Path
    api_url: str
    ws_url: str
    group: ProcGroup
    api: Proc
    ws: Proc
    admin: tuple[str, str]
    _jwts: dict[str, str] = field(default_factory=dict)

    async def jwt(self, user: str, ttl_s: int | None = None) -> str:
        """A JWT of ``user`` (``ttl_s`` None: a long-lived one, cached per user)."""
        if ttl_s is None and user in self._jwts:
            return self._jwts[user]
        token = await password_jwt(self.api_url, user, PASSWORD, ttl_s=ttl_s)
        if ttl_s is None:
            self._jwts[user] = token
        return token

    async def api_key(self, user: str) -> str:
        async with self.client(await self.jwt(user)) as client:
            r = await client.post("/api/tokens/v1alpha1")
        assert r.status_code == 201, r.text
        token: str = r.json()["token"]
        return token

    def client(self, jwt: str | None = None) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {jwt}"} if jwt else {}
        return httpx.AsyncClient(base_url=self.api_url, timeout=30, headers=headers)

    async def create_app(self, owner_jwt: str, app: str, devices: dict[str, dict[str, object]] | None = None) -> None:
        """An app owned by the JWT's user (with its events topic) and its devices (name -> spec)."""
        async with self.client(owner_jwt) as client:
            r = await client.post("/api/registry/v1alpha1/apps", json={"metadata": {"name": app}})
            assert r.status_code == 201, r.text
            for name, spec in (devices or {}).items():
                r = await client.post(f"/api/registry/v1alpha1/apps/{app}/devices",
                                      json={"metadata": {"name": name}, "spec": spec})
                assert r.status_code == 201, r.text
        await create_app_topic(self.bootstrap, app, partitions=3)


@pytest.fixture(scope="session")
async def stack(
    kafka_broker: EmbeddedBroker, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> AsyncIterator[Stack]:
    tmp = tmp_path_factory.mktemp("integrations")
    data = tmp / "data"
    bootstrap = kafka_broker.bootstrap
    await create_topics(bootstrap)
    group = ProcGroup(tmp)
    failed_before = request.session.testsfailed
    env = {"KEDGE_DATA_DIR": str(data), "KEDGE_KAFKA__BOOTSTRAP_SERVERS": bootstrap, "KEDGE_INSTANCE": "test",
           "KEDGE_KAFKA__LINGER_MS": "0"}
    try:
        api_port = free_port()
        api = group.start("api", kedge("serve", "api", "--port", str(api_port)), env=env)
        await api.wait_for_log("API host ready on", 60.0)
        ws = group.start("ws", kedge("serve", "ws-integration", "--port", "0"), env={
            **env, "KEDGE_INTEGRATION__TOKEN_CHECK_INTERVAL_S": str(TOKEN_CHECK_S)})
        await ws.wait_for_log("ws integration listening on ws://", 30.0)
        match = re.search(r"listening on ws://127\.0\.0\.1:(\d+)", ws.log())
        assert match, ws.log()
        admin = read_admin_credentials(data)
        assert admin is not None
        s = Stack(bootstrap, data, f"http://127.0.0.1:{api_port}", f"ws://127.0.0.1:{match.group(1)}", group, api,
                  ws, admin)
        admin_jwt = await password_jwt(s.api_url, *admin)
        async with s.client(admin_jwt) as client:
            for user in ("alice", "bob"):
                r = await client.post("/api/admin/v1alpha1/users", json={"username": user, "password": PASSWORD})
                assert r.status_code == 201, r.text
        yield s
        assert ws.stop() == 0, ws.log()  # SIGTERM: a clean stop
        assert "Traceback" not in ws.log(), ws.log()
    finally:
        group.stop_all()
        if request.session.testsfailed > failed_before:
            print(group.logs())


@pytest.fixture
async def producer(bootstrap: str) -> AsyncIterator[AIOKafkaProducer]:
    p = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=0)
    await p.start()
    yield p
    await p.stop()


def device_event(app: str, *, device: str = "d1", channel: str = "telemetry", type_: str = EVENT_TYPE,
                 id: str | None = None, payload: bytes = b'{"temp":42}') -> DeviceEvent:
    return build_device_event(app=app, app_uid=None, device=device, device_uid=None, sender=device, sender_uid=None,
                              instance="test", channel=channel, payload=payload, content_type="application/json",
                              type_=type_, id=id or str(uuid.uuid4()))


async def produce(producer: AIOKafkaProducer, topic: str, *events: DeviceEvent) -> None:
    for event in events:
        r = to_kafka(event)
        await producer.send_and_wait(topic, r.value, key=r.key, headers=r.headers)
