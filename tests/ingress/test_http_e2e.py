"""End to end: devices created in a real registry database publish through `kedge serve http` (a subprocess)
over a real socket; the records are read back from Kafka and parsed with the cloudevents SDK."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from cloudevents.v1.kafka import KafkaMessage, from_binary

from registry.db import create_engine
from tests.ingress.kafka_support import create_app_topic, read_records
from tests.ingress.registry_support import basic, create_registry_topic, disable_and_relay, seed_registry
from tests.support.procs import ProcGroup, eventually, kedge

pytestmark = [pytest.mark.integration, pytest.mark.slow]

FORBIDDEN = {"code": 403, "error": "AuthenticationError", "message": "Authentication failed"}


async def test_registry_device_publishes_through_kedge_serve_http(
    bootstrap: str, procs: ProcGroup, tmp_path: Path, unique: str
) -> None:
    app = f"e2e-{unique}"
    uids = await seed_registry(tmp_path, app)
    topic = await create_app_topic(bootstrap, app)
    await create_registry_topic(bootstrap)
    server = procs.start("http", kedge("serve", "http", "--port", "0"), env={
        "KEDGE_KAFKA__BOOTSTRAP_SERVERS": bootstrap, "KEDGE_DATA_DIR": str(tmp_path),
        "KEDGE_INSTANCE": "kedge-e2e"})
    await server.wait_for_log("http endpoint listening on http://", 30)
    await server.wait_for_log("authentication cache follows the 'registry' topic", 30)
    match = re.search(r"listening on (http://127\.0\.0\.1:\d+)", server.log())
    assert match, server.log()

    async with httpx.AsyncClient(base_url=match.group(1), timeout=10) as client:
        assert (await client.get("/")).json() == {"success": True}
        json_type = {"Content-Type": "application/json"}
        ok = await client.post("/v1/telemetry", content=b'{"temp": 42}',
                               headers={**basic(f"dev-1@{app}", "secret"), **json_type})
        assert ok.status_code == 202, ok.text
        wrong = await client.post("/v1/telemetry", content=b"1", headers=basic(f"dev-1@{app}", "nope"))
        assert (wrong.status_code, wrong.json()) == (403, FORBIDDEN)
        disabled = await client.post("/v1/telemetry", content=b"1", headers=basic(f"off@{app}", "secret"))
        assert (disabled.status_code, disabled.json()) == (403, FORBIDDEN)
        unknown = await client.post("/v1/telemetry", content=b"1",
                                    headers=basic("dev-1@no-such-app", "secret"))
        assert unknown.status_code == 403
        refused = await client.post("/v1/telemetry", params={"as": "child"}, content=b"1",
                                    headers=basic(f"dev-1@{app}", "secret"))
        assert refused.status_code == 403
        proxied = await client.post("/v1/telemetry/sub", params={"as": "child", "ct": "1"}, content=b"2",
                                    headers=basic(f"gw@{app}", "secret"))
        assert proxied.status_code == 202, proxied.text
        too_big = await client.post("/v1/telemetry", content=b"x" * (256 * 1024 + 1),
                                    headers=basic(f"dev-1@{app}", "secret"))
        assert too_big.status_code == 413

        async def chunks() -> AsyncIterator[bytes]:
            for _ in range(64):
                yield b"y" * 8192

        chunked = await client.post("/v1/telemetry", content=chunks(), headers=basic(f"dev-1@{app}", "secret"))
        assert chunked.status_code == 413
        metrics = (await client.get("/metrics")).text
    assert 'kedge_downstream_events_total{endpoint="http",outcome="accepted"} 2.0' in metrics
    assert 'kedge_auth_failures_total{endpoint="http",reason="disabled"} 1.0' in metrics
    assert "kedge_device_auth_total" in metrics  # the registry authenticator's own counter, same page

    records = await read_records(bootstrap, topic, 2)
    by_device = {dict(r.headers)["ce_device"].decode(): r for r in records}
    pct_app = app.replace("-", "%2D")

    direct = by_device["dev-1"]
    assert direct.key == f"{pct_app}/dev%2D1".encode()
    ce = from_binary(KafkaMessage(headers=dict(direct.headers), key=direct.key, value=direct.value))
    assert ce.data == {"temp": 42}
    names = ("type", "source", "subject", "datacontenttype", "application", "applicationuid", "device",
             "deviceuid", "sender", "senderuid", "instance")
    assert {k: ce[k] for k in names} == {
        "type": "io.drogue.event.v1", "source": f"drogue://{app}/dev%2D1", "subject": "telemetry",
        "datacontenttype": "application/json", "application": app, "applicationuid": uids["app"],
        "device": "dev-1", "deviceuid": uids["dev-1"], "sender": "dev-1", "senderuid": uids["dev-1"],
        "instance": "kedge-e2e",
    }

    child = by_device["child"]
    assert child.key == f"{pct_app}/gw".encode()
    headers = dict(child.headers)
    assert headers["ce_sender"] == b"gw"
    assert headers["ce_senderuid"] == uids["gw"].encode()
    assert headers["ce_deviceuid"] == uids["child"].encode()
    assert headers["ce_subject"] == b"telemetry"

    # disabling the (cached) device in the registry reaches the endpoint through the `registry` topic
    await disable_and_relay(bootstrap, tmp_path, app, "dev-1")
    async with httpx.AsyncClient(base_url=match.group(1), timeout=10) as client:
        async def refused_now() -> bool:
            r = await client.post("/v1/telemetry", content=b"1", headers=basic(f"dev-1@{app}", "secret"))
            return r.status_code == 403
        await eventually(refused_now, 10, "the disabled device to be refused (cache invalidated)", 0.1)

    assert server.stop() == 0, server.log()  # SIGTERM: a clean stop
    assert "Traceback" not in server.log()



async def test_registry_database_unavailable_is_503(tmp_path: Path) -> None:
    """The real authenticator on a database without its tables (never migrated): fail closed with 503."""
    from ingress.http import HttpEndpoint, Resources
    from ingress.metrics import IngressMetrics
    from registry.authn.authenticator import RegistryAuthenticator
    from tests.ingress.fakes import RecordingSink

    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}")
    sink = RecordingSink()
    app = HttpEndpoint(instance="i", max_payload_bytes=1024, max_command_timeout_s=1,
                       metrics=IngressMetrics("http"), ready=Resources(RegistryAuthenticator(engine), sink))
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
            r = await client.post("/v1/telemetry", content=b"1", headers=basic("dev-1@app", "secret"))
    finally:
        await engine.dispose()
    assert r.status_code == 503
    assert r.json()["error"] == "ServiceUnavailable"
    assert sink.events == []
