"""The registry database (a throwaway PostgreSQL) stops while `kedge serve api`, `kedge serve http` and
`kedge serve mqtt` run on it, then comes back on the same port.

While it is down: device authentication fails closed (HTTP 503, MQTT CONNECT 0x88 / 3.1.1 return code 3),
even for a wrong password (the endpoint cannot tell, so it never says 403 or "accepted"); a verification cached
within ``registry.auth_cache_ttl_s`` (default 300 s, by design: registry/authn/cache.py keeps only successful
verifications, and "disabled" answers which also need the right secret, keyed by a digest of the presented
secret, dropped on registry changes from the `registry` topic) still passes; the API answers
503 with a JSON body and logs no traceback. Afterwards everything works again without a restart, and the
outbox relay publishes a change committed after the outage to the `registry` topic."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import httpx
import pytest

from kedge.broker import EmbeddedBroker, free_port
from protocols.mqtt import ReasonCode
from tests.agents.support import create_topics, start_worker
from tests.faults.support import connect, endpoint_env, start_http, start_mqtt, wait_for_registry_change
from tests.ingress.registry_support import basic
from tests.registry import pg
from tests.support.procs import Proc, ProcGroup, eventually, kedge

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CREDS = {"credentials": {"credentials": [{"pass": "secret"}]}}


@pytest.fixture(scope="module")
def cluster() -> Iterator[pg.Cluster]:
    reason = pg.missing_reason()
    if reason:
        pytest.skip(reason)
    cluster = pg.Cluster.start()
    yield cluster
    cluster.stop()


@dataclass
class Stack:
    bootstrap: str
    app: str
    api: Proc
    api_url: str
    token: str
    http_url: str
    mqtt_port: int

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.api_url, timeout=30,
                                 headers={"Authorization": f"Bearer {self.token}"})


@pytest.fixture(scope="module")
async def stack(
    cluster: pg.Cluster, kafka_broker: EmbeddedBroker, tmp_path_factory: pytest.TempPathFactory,
    request: pytest.FixtureRequest,
) -> AsyncIterator[Stack]:
    tmp = tmp_path_factory.mktemp("registry-outage")
    app = f"regout-{uuid.uuid4().hex[:8]}"
    bootstrap = kafka_broker.bootstrap
    await create_topics(bootstrap, app)
    env = endpoint_env(bootstrap, tmp, database_url=cluster.url)
    group = ProcGroup(tmp)
    failed_before = request.session.testsfailed
    try:
        api_port = free_port()
        api = group.start("api", kedge("serve", "api", "--port", str(api_port)), env)
        await api.wait_for_log("API host ready", 60)
        api_url = f"http://127.0.0.1:{api_port}"
        admin = json.loads((tmp / "admin-credentials.json").read_text())
        async with httpx.AsyncClient(base_url=api_url, timeout=30) as client:
            r = await client.post("/api/token", json={"grant_type": "password", **admin})
            assert r.status_code == 200, r.text
            token = r.json()["access_token"]
            auth = {"Authorization": f"Bearer {token}"}
            r = await client.post("/api/registry/v1alpha1/apps", json={"metadata": {"name": app}}, headers=auth)
            assert r.status_code == 201, r.text
            for name in ("cached", "fresh"):
                r = await client.post(f"/api/registry/v1alpha1/apps/{app}/devices",
                                      json={"metadata": {"name": name}, "spec": CREDS}, headers=auth)
                assert r.status_code == 201, r.text
        await start_worker(group, "worker", bootstrap, tmp / "worker", f"kedge-worker-{uuid.uuid4().hex[:8]}")
        (_, http_url), (_, mqtt_port) = await asyncio.gather(start_http(group, "http", env),
                                                             start_mqtt(group, "mqtt", env))
        yield Stack(bootstrap, app, api, api_url, token, http_url, mqtt_port)
    finally:
        group.stop_all()
        if request.session.testsfailed > failed_before:
            print(group.logs())


async def test_registry_outage_fails_closed_and_recovers(stack: Stack, cluster: pg.Cluster) -> None:
    app = stack.app
    async with httpx.AsyncClient(base_url=stack.http_url, timeout=30) as http, stack.client() as api:
        async def telemetry(device: str, password: str = "secret") -> httpx.Response:
            return await http.post("/v1/telemetry", content=b"1", headers=basic(f"{device}@{app}", password))

        async def mqtt_code(device: str, version: int) -> int:
            client, code = await connect(stack.mqtt_port, app, device, version)
            client.close()
            return code

        # verified once through each endpoint: now in their verification caches
        assert (await telemetry("cached")).status_code == 202
        assert await mqtt_code("cached", 5) == 0

        cluster.pause()
        log_start = len(stack.api.log())
        fresh, wrong, cached, listing, create, ready = await asyncio.gather(
            telemetry("fresh"), telemetry("cached", "wrong"), telemetry("cached"),
            api.get("/api/registry/v1alpha1/apps"),
            api.post(f"/api/registry/v1alpha1/apps/{app}/devices", json={"metadata": {"name": "late"}, "spec": CREDS}),
            api.get("/ready"),
        )
        fresh_v5, fresh_v3, cached_v5 = await asyncio.gather(
            mqtt_code("fresh", 5), mqtt_code("fresh", 4), mqtt_code("cached", 5))
        assert (fresh.status_code, fresh.json()["error"]) == (503, "ServiceUnavailable"), fresh.text
        assert wrong.status_code == 503, f"a wrong password while the registry is down: {wrong.status_code}"
        assert cached.status_code == 202, f"a cached verification (within its TTL): {cached.status_code}"
        assert fresh_v5 == ReasonCode.SERVER_UNAVAILABLE, f"MQTT 5 CONNECT: {fresh_v5:#x}"
        assert fresh_v3 == 3, f"MQTT 3.1.1 CONNECT: return code {fresh_v3}"
        assert cached_v5 == 0, f"MQTT 5 CONNECT with a cached verification: {cached_v5:#x}"
        for r in (listing, create, ready):
            assert r.status_code == 503, f"{r.request.method} {r.request.url.path}: {r.status_code} {r.text}"
            assert r.headers["content-type"].startswith("application/json"), r.text
        assert "Traceback" not in stack.api.log()[log_start:], stack.api.log()[log_start:]

        cluster.resume()

        async def api_back() -> bool:
            return (await api.get("/api/registry/v1alpha1/apps")).status_code == 200

        await eventually(api_back, 30, "the API to answer again after the database is back", 0.5)
        r = await api.post(f"/api/registry/v1alpha1/apps/{app}/devices",
                           json={"metadata": {"name": "after"}, "spec": CREDS})
        assert r.status_code == 201, r.text
        assert (await telemetry("fresh")).status_code == 202
        assert await mqtt_code("fresh", 5) == 0
        assert (await telemetry("after")).status_code == 202
    # the relay kept running through the outage and publishes what was committed after it
    await wait_for_registry_change(stack.bootstrap, app, "after", 30)
    assert "Traceback" not in stack.api.log(), stack.api.log()
