"""Production mode (JWTs from an external OIDC issuer) and the API host as an issuer for other processes."""

from __future__ import annotations

import asyncio
import base64
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy.ext.asyncio import AsyncEngine

from registry.access import Access, AccessConfig
from registry.access.jwts import OidcVerifier
from tests.registry.access.conftest import build_app
from tests.registry.access.fake_oidc import FakeIssuer
from tests.support.procs import eventually


@pytest.fixture
async def oidc_client(
    engine: AsyncEngine, tmp_path: Path, oidc: FakeIssuer, rsa_key: rsa.RSAPrivateKey
) -> AsyncIterator[httpx.AsyncClient]:
    oidc.publish(rsa_key)
    config = AccessConfig(data_dir=tmp_path / "d", oidc_issuer=oidc.url, oidc_audience="drogue", bcrypt_rounds=4)
    access = Access.create(engine, config)
    transport = httpx.ASGITransport(app=build_app(access))
    async with httpx.AsyncClient(transport=transport, base_url="http://kedge.test") as client:
        yield client


async def test_oidc_bearer_and_tokens_for_oidc_users(
    oidc_client: httpx.AsyncClient, oidc: FakeIssuer, rsa_key: rsa.RSAPrivateKey, other_rsa_key: rsa.RSAPrivateKey
) -> None:
    jwt_ = oidc.sign(rsa_key, realm_access={"roles": ["drogue-admin"]})
    me = (await oidc_client.get("/probe", headers={"Authorization": f"Bearer {jwt_}"})).json()
    assert me["id"] == "kc-user-1" and me["name"] == "alice" and me["admin"] is True
    # an OIDC user can mint an access token and use it with its preferred_username
    created = (await oidc_client.post("/api/tokens/v1alpha1", headers={"Authorization": f"Bearer {jwt_}"})).json()
    basic = base64.b64encode(f"alice:{created['token']}".encode()).decode()
    me2 = (await oidc_client.get("/probe", headers={"Authorization": f"Basic {basic}"})).json()
    assert me2["id"] == "kc-user-1" and me2["via"] == "api_key" and me2["roles"] == []
    # refusals: wrong audience, foreign key; Kedge issues no tokens itself in this mode
    for bad in (oidc.sign(rsa_key, aud="account"), oidc.sign(other_rsa_key)):
        r = await oidc_client.get("/probe", headers={"Authorization": f"Bearer {bad}"})
        assert r.status_code == 403 and r.json()["error"] == "AuthenticationError"
    assert (await oidc_client.post("/api/token", data={"username": "a", "password": "b"})).status_code == 404
    assert (await oidc_client.get("/.well-known/jwks.json")).status_code == 404


async def test_oidc_issuer_down_is_503(
    oidc_client: httpx.AsyncClient, oidc: FakeIssuer, rsa_key: rsa.RSAPrivateKey
) -> None:
    token = oidc.sign(rsa_key)
    oidc.server.shutdown()
    oidc.server.server_close()
    r = await oidc_client.get("/probe", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 503 and r.json()["error"] == "ServiceUnavailable"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.integration
async def test_api_host_is_an_oidc_issuer_for_other_processes(engine: AsyncEngine, data_dir: Path) -> None:
    """A real uvicorn server with Kedge's own issuer; a verifier elsewhere uses it through discovery + JWKS."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    access = Access.create(engine, AccessConfig(data_dir=data_dir, local_issuer=url, bcrypt_rounds=4))
    username, password, _ = await access.ensure_admin()
    server = uvicorn.Server(
        uvicorn.Config(build_app(access), host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    task = asyncio.create_task(server.serve())
    try:
        await eventually(lambda: server.started or task.done(), 10, "uvicorn to start")
        assert not task.done(), "uvicorn exited at start"
        async with httpx.AsyncClient(base_url=url) as client:
            r = await client.post("/api/token", data={"username": username, "password": password or ""})
            assert r.status_code == 200, r.text
        claims = await OidcVerifier(url, audience="kedge").verify(r.json()["access_token"])
        assert claims["preferred_username"] == "admin" and claims["realm_access"]["roles"] == ["drogue-admin"]
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)
