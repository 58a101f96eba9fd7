"""Schemathesis against Kedge's own OpenAPI spec, over a real socket to a real `kedge serve api` process (its
own data dir, so generated deletes cannot touch the shared stack), authenticated as the admin.

Stateless: for every operation a bounded number of valid and of invalid (negative) requests; every response
must not be a server error, and a response to a valid request must conform to the schema. Afterwards the
process still runs and its log holds no traceback."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from kedge.broker import free_port
from registry.access.secrets_dir import read_admin_credentials
from tests.security.conftest import Stack
from tests.support.api import password_jwt
from tests.support.procs import ProcGroup, kedge

pytestmark = [pytest.mark.integration, pytest.mark.slow]

async def _create_database(url: str, name: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


#: examples per operation (about 35 operations; the whole run stays well under a minute)
EXAMPLES = 8


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
async def test_api_spec_fuzzing_finds_no_server_error(stack: Stack, procs: ProcGroup, backend: str,
                                                      request: pytest.FixtureRequest) -> None:
    data = procs.tmp / "fuzz-data"
    port = free_port()
    env = {"KEDGE_DATA_DIR": str(data), "KEDGE_KAFKA__BOOTSTRAP_SERVERS": stack.bootstrap}
    if backend == "postgresql":  # NUL in text and JSON, encodings: what SQLite forgives and PostgreSQL does not
        url = request.getfixturevalue("pg_url")
        database = f"fuzz_{uuid.uuid4().hex[:8]}"
        await _create_database(url, database)
        env["KEDGE_REGISTRY__DATABASE_URL"] = url.rsplit("/", 1)[0] + "/" + database
    api = procs.start("api-fuzz", kedge("serve", "api", "--port", str(port)), env=env)
    await api.wait_for_log("API host ready on", 60.0)
    base = f"http://127.0.0.1:{port}"
    admin = read_admin_credentials(data)
    assert admin is not None
    async with httpx.AsyncClient(base_url=base, timeout=10) as client:
        jwt = await password_jwt(base, *admin)
        spec = (await client.get("/openapi.json")).json()
        # something for the generated requests to find
        r = await client.post("/api/registry/v1alpha1/apps", json={"metadata": {"name": "fuzz"}},
                              headers={"Authorization": f"Bearer {jwt}"})
        assert r.status_code == 201, r.text
        # NUL and lone surrogates where free text goes (labels, annotations, spec): stored or refused, never 500
        for where in ("labels", "annotations"):
            for body in (f'{{"metadata": {{"name": "nul", "{where}": {{"k": "v\\u0000"}}}}}}',
                         f'{{"metadata": {{"name": "nul", "{where}": {{"k\\u0000": "v"}}}}}}',
                         f'{{"metadata": {{"name": "nul", "{where}": {{"k": "\\ud800"}}}}}}'):
                for url in ("/api/registry/v1alpha1/apps", "/api/registry/v1alpha1/apps/fuzz/devices"):
                    r = await client.post(url, content=body, headers={"Authorization": f"Bearer {jwt}",
                                                                      "Content-Type": "application/json"})
                    assert r.status_code in (201, 400), (backend, url, body, r.status_code, r.text)
                    if r.status_code == 201:
                        assert (await client.delete(f"{url}/nul", headers={
                            "Authorization": f"Bearer {jwt}"})).status_code == 204
        for body in ('{"metadata": {"name": "nul"}, "spec": {"x": "\\u0000"}}',
                     '{"metadata": {"name": "nul"}, "spec": {"x\\u0000": 1}}'):
            r = await client.post("/api/registry/v1alpha1/apps/fuzz/devices", content=body,
                                  headers={"Authorization": f"Bearer {jwt}", "Content-Type": "application/json"})
            assert r.status_code in (201, 400), (backend, body, r.status_code, r.text)
            if r.status_code == 201:
                assert (await client.delete("/api/registry/v1alpha1/apps/fuzz/devices/nul", headers={
                    "Authorization": f"Bearer {jwt}"})).status_code == 204
    schema = schemathesis.openapi.from_dict(spec)
    operations = [result.ok() for result in schema.get_all_operations()]  # type: ignore[union-attr]
    assert len(operations) >= 20, [op.label for op in operations]
    failures: list[str] = []
    headers = {"Authorization": f"Bearer {jwt}"}

    def fuzz_one(operation: Any) -> None:
        negative = operation.as_strategy(generation_mode=schemathesis.GenerationMode.NEGATIVE)
        strategy = st.one_of(operation.as_strategy().map(lambda c: (c, True)), negative.map(lambda c: (c, False)))

        @given(strategy)
        @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
                  suppress_health_check=list(HealthCheck), phases=[Phase.explicit, Phase.generate])
        def one(generated: tuple[Any, bool]) -> None:
            case, valid = generated
            response = case.call(base_url=base, headers=headers, timeout=15)
            checks: list[Any] = [not_a_server_error, response_schema_conformance] if valid else [not_a_server_error]
            try:
                case.validate_response(response, checks=checks)
            except Exception as exc:  # a schemathesis Failure, or a FailureGroup of several
                failures.append(f"{operation.label} {response.status_code}: {str(exc)[:400]}")

        one()

    def fuzz() -> None:
        for operation in operations:
            fuzz_one(operation)

    await asyncio.to_thread(fuzz)
    assert not failures, "\n".join(failures[:20])
    assert api.running, api.log()[-3000:]
    async with httpx.AsyncClient(base_url=base, timeout=10) as client:
        assert (await client.get("/health")).json() == {"status": "ok"}
    assert "Traceback" not in api.log(), api.log()[-5000:]
