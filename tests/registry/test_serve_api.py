"""`kedge serve api` as a real process, over a real socket."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from kedge.broker import free_port
from tests.registry.conftest import PARTITIONS, ensure_registry_topic
from tests.registry.kafka_read import read_changes
from tests.support.procs import ProcGroup, eventually, kedge

pytestmark = [pytest.mark.integration, pytest.mark.slow]


async def test_serve_api_process(procs: ProcGroup, tmp_path: Path, bootstrap: str, unique: str) -> None:
    await ensure_registry_topic(bootstrap)
    port = free_port()
    proc = procs.start("api", kedge("serve", "api"), env={
        "KEDGE_DATA_DIR": str(tmp_path / "data"),
        "KEDGE_API__PORT": str(port),
        "KEDGE_KAFKA__BOOTSTRAP_SERVERS": bootstrap,
        "KEDGE_REGISTRY__ANONYMOUS_WRITE": "true",
        "KEDGE_REGISTRY__DEVICE_AUTH_ANONYMOUS": "true",  # the setting reaches `kedge serve api`
    })
    await proc.wait_for_log("API host ready on", 60.0)
    base = f"http://127.0.0.1:{port}"
    async with httpx.AsyncClient(base_url=base, timeout=10.0) as client:
        assert (await client.get("/health")).json() == {"status": "ok"}
        ready = await client.get("/ready")
        assert ready.status_code == 200 and ready.json()["ready"] is True
        assert "/api/registry/v1alpha1/apps" in (await client.get("/openapi.json")).json()["paths"]
        assert (await client.get("/docs")).status_code == 200
        app = f"proc-{unique}"
        r = await client.post("/api/registry/v1alpha1/apps", json={"metadata": {"name": app}})
        assert r.status_code == 201, r.text
        r = await client.post(f"/api/registry/v1alpha1/apps/{app}/devices",
                              json={"metadata": {"name": "d"}, "spec": {"credentials": {"credentials": [
                                  {"pass": "pw"}]}}})
        assert r.status_code == 201, r.text
        r = await client.post("/api/v1/auth", json={"application": app, "device": "d",
                                                    "credential": {"pass": "pw"}})
        assert "pass" in r.json()["outcome"]
        seen = await read_changes(bootstrap, PARTITIONS + 1, 20.0, lambda c: c.app == app)
        assert [s.change.device for s in seen if s.change.device] == ["d"]

        async def metrics_counted() -> bool:
            text = (await client.get("/metrics")).text
            return "kedge_registry_outbox_sent_total" in text and "kedge_device_auth_total" in text

        await eventually(metrics_counted, 10.0, "registry metrics on /metrics")
    assert (tmp_path / "data" / "registry.db").exists()
    # graceful stop on SIGTERM (uvicorn re-raises the signal after its shutdown completed)
    assert proc.stop() in (0, -15), proc.log()
    assert "Application shutdown complete" in proc.log()


async def test_ready_reports_an_unreachable_database(tmp_path: Path) -> None:
    from kedge.apihost import build
    from kedge.settings import Settings

    settings = Settings(data_dir=tmp_path, registry={
        "database_url": f"postgresql://nobody@127.0.0.1:{free_port()}/none"})
    host = build(settings)
    try:
        transport = httpx.ASGITransport(app=host.app)  # no lifespan: nothing is migrated or started
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
            assert (await client.get("/health")).status_code == 200
            r = await client.get("/ready")
            assert r.status_code == 503 and r.json()["ready"] is False
            r = await client.get("/api/registry/v1alpha1/apps")
            assert r.status_code == 503 and r.json()["error"] in ("DatabaseError", "ServiceUnavailable")
    finally:
        await host.engine.dispose()
