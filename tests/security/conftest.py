"""The security test stack: real `kedge serve api`, `kedge worker`, `kedge serve mqtt`, `kedge serve http` and
`kedge serve ws-integration` processes on the session's embedded broker, sharing one SQLite registry.

Users ``alice`` (owns app ``a``) and ``bob`` (owns app ``b``); both apps have a device ``dev`` (with a
different password each), app ``a`` a gateway ``gw`` and a device ``child`` that only ``gw`` may publish as,
and ``lone`` that has no gateway. Every secret the tests use is known here so that the logs can be searched
for it (:func:`Stack.secrets`).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from kedge.broker import EmbeddedBroker, free_port
from protocols.mqtt import Connect, ReasonCode
from registry.access.secrets_dir import read_admin_credentials
from tests.agents.support import DEVICE_PARTITIONS, create_topics, start_worker
from tests.ingress.kafka_support import create_app_topic
from tests.ingress.mqtt_support import RawClient
from tests.registry.conftest import pg_url  # noqa: F401  (the PostgreSQL cluster fixture, for the API fuzzing)
from tests.support.api import listening, password_jwt
from tests.support.procs import Proc, ProcGroup, kedge

USER_PASSWORD = f"user-pw-{uuid.uuid4().hex}"
#: the MQTT endpoint of the stack refuses packets above this (and closes idle connections after CONNECT_S)
MAX_PACKET = 4096
CONNECT_S = 1.0
#: the HTTP endpoint of the stack refuses bodies above this
MAX_PAYLOAD = 2048
REGISTRY = "/api/registry/v1alpha1"


@dataclass
class Stack:
    bootstrap: str
    data_dir: Path
    group: ProcGroup
    api_url: str
    http_url: str
    ws_url: str
    mqtt_port: int
    api: Proc
    http: Proc
    mqtt: Proc
    ws: Proc
    worker: Proc
    admin: tuple[str, str]
    apps: dict[str, str]
    device_passwords: dict[str, str]
    jwts: dict[str, str] = field(default_factory=dict)
    api_keys: dict[str, str] = field(default_factory=dict)

    def client(self, user: str | None = "admin", base: str | None = None) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {self.jwts[user]}"} if user else {}
        return httpx.AsyncClient(base_url=base or self.api_url, timeout=30, headers=headers)

    def device_login(self, app_key: str, device: str = "dev") -> tuple[str, str]:
        """``(device@app, password)`` of a device of app ``a`` or ``b``."""
        return f"{device}@{self.apps[app_key]}", self.device_passwords[app_key]

    def secrets(self) -> list[str]:
        return [USER_PASSWORD, self.admin[1], *self.device_passwords.values(), *self.jwts.values(),
                *self.api_keys.values()]

    def endpoints(self) -> list[Proc]:
        return [self.api, self.http, self.mqtt, self.ws, self.worker]

    async def assert_alive(self) -> None:
        """Every process still runs, and the MQTT and HTTP endpoints serve a good device."""
        for proc in self.endpoints():
            assert proc.running, f"{proc.name} died:\n{proc.log()[-3000:]}"
        user, password = self.device_login("a")
        async with httpx.AsyncClient(base_url=self.http_url, timeout=10) as http:
            r = await http.post("/v1/telemetry", content=b"{}", auth=(user, password),
                                headers={"Content-Type": "application/json"})
        assert r.status_code == 202, r.text
        client, connack = await RawClient.open(self.mqtt_port, Connect("alive", 5, username=user,
                                                                        password=password.encode()))
        assert connack.reason_code == ReasonCode.SUCCESS
        client.close()


@pytest.fixture(scope="session")
async def stack(
    kafka_broker: EmbeddedBroker, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> AsyncIterator[Stack]:
    tmp = tmp_path_factory.mktemp("security")
    data = tmp / "data"
    bootstrap = kafka_broker.bootstrap
    await create_topics(bootstrap)
    group = ProcGroup(tmp)
    failed_before = request.session.testsfailed
    env = {"KEDGE_DATA_DIR": str(data), "KEDGE_KAFKA__BOOTSTRAP_SERVERS": bootstrap, "KEDGE_INSTANCE": "sec",
           "KEDGE_KAFKA__LINGER_MS": "0", "KEDGE_TOPOLOGY__DEVICE_PARTITIONS": str(DEVICE_PARTITIONS)}
    try:
        api_port = free_port()
        api = group.start("api", kedge("serve", "api", "--port", str(api_port)), env=env)
        worker = await start_worker(group, "worker", bootstrap, tmp / "worker", f"sec-worker-{uuid.uuid4().hex[:8]}")
        await api.wait_for_log("API host ready on", 60.0)
        api_url = f"http://127.0.0.1:{api_port}"
        admin = read_admin_credentials(data)
        assert admin is not None
        jwts = {"admin": await password_jwt(api_url, *admin)}
        async with httpx.AsyncClient(base_url=api_url, timeout=30,
                                     headers={"Authorization": f"Bearer {jwts['admin']}"}) as client:
            for user in ("alice", "bob"):
                r = await client.post("/api/admin/v1alpha1/users", json={"username": user, "password": USER_PASSWORD})
                assert r.status_code == 201, r.text
        for user in ("alice", "bob"):
            jwts[user] = await password_jwt(api_url, user, USER_PASSWORD)
        suffix = uuid.uuid4().hex[:6]
        apps = {"a": f"sec-a-{suffix}", "b": f"sec-b-{suffix}"}
        passwords = {"a": f"dev-pw-a-{uuid.uuid4().hex}", "b": f"dev-pw-b-{uuid.uuid4().hex}"}
        api_keys: dict[str, str] = {}
        for key, owner in (("a", "alice"), ("b", "bob")):
            creds: dict[str, object] = {"credentials": {"credentials": [{"pass": passwords[key]}]}}
            devices: dict[str, dict[str, object]] = {"dev": creds, "lone": creds}
            if key == "a":
                devices |= {"gw": creds, "child": {**creds, "gatewaySelector": {"matchNames": ["gw"]}}}
            async with httpx.AsyncClient(base_url=api_url, timeout=30,
                                         headers={"Authorization": f"Bearer {jwts[owner]}"}) as client:
                r = await client.post(f"{REGISTRY}/apps", json={"metadata": {"name": apps[key]}})
                assert r.status_code == 201, r.text
                for name, spec in devices.items():
                    r = await client.post(f"{REGISTRY}/apps/{apps[key]}/devices",
                                          json={"metadata": {"name": name}, "spec": spec})
                    assert r.status_code == 201, r.text
                r = await client.post("/api/tokens/v1alpha1")
                assert r.status_code == 201, r.text
                api_keys[owner] = r.json()["token"]
            await create_app_topic(bootstrap, apps[key], partitions=3)

        mqtt = group.start("mqtt", kedge("serve", "mqtt", "--port", "0"), env={
            **env, "KEDGE_MQTT__MAX_PACKET_BYTES": str(MAX_PACKET), "KEDGE_MQTT__CONNECT_TIMEOUT_S": str(CONNECT_S)})
        http = group.start("http", kedge("serve", "http", "--port", "0"), env={
            **env, "KEDGE_HTTP__MAX_PAYLOAD_BYTES": str(MAX_PAYLOAD)})
        ws = group.start("ws", kedge("serve", "ws-integration", "--port", "0"), env=env)
        await mqtt.wait_for_log("mqtt endpoint listening on mqtt://", 30)
        await http.wait_for_log("http endpoint listening on http://", 30)
        await ws.wait_for_log("ws integration listening on ws://", 30)
        s = Stack(bootstrap, data, group, api_url, listening(http, "http"), listening(ws, "ws"),
                  int(listening(mqtt, "mqtt").rsplit(":", 1)[1]), api, http, mqtt, ws, worker, admin, apps,
                  passwords, jwts, api_keys)
        yield s
        for proc in s.endpoints():
            assert "Traceback" not in proc.log(), proc.log()[-5000:]
            for secret in s.secrets():
                assert secret not in proc.log(), f"a secret ({secret[:6]}…) is in the log of {proc.name}"
    finally:
        group.stop_all()
        if request.session.testsfailed > failed_before:
            print(group.logs())
