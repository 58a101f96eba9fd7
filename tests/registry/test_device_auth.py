"""Who may ask the device authentication service (``POST /api/v1/auth``, ``/api/v1/authorize_as``): service
users only (global admin or role ``kedge-device-auth``), unless ``registry.device_auth_anonymous`` opens it."""

from __future__ import annotations

import base64
from pathlib import Path

import httpx
import pytest

from kedge.broker import EmbeddedBroker
from registry.api.device_auth import SERVICE_ROLE
from tests.registry.conftest import Api, running_api, settings_for

pytestmark = pytest.mark.integration

BASE = "/api/registry/v1alpha1"
AUTH = {"credential": {"pass": "dev-pw"}}


async def _app(api: Api, unique: str) -> str:
    app = f"svc-{unique}"
    r = await api.alice.post(f"{BASE}/apps", json={"metadata": {"name": app}})
    assert r.status_code == 201, r.text
    for name, spec in (("d1", {"credentials": {"credentials": [{"pass": "dev-pw"}]}}),
                       ("behind", {"gatewaySelector": {"matchNames": ["d1"]}})):
        r = await api.alice.post(f"{BASE}/apps/{app}/devices", json={"metadata": {"name": name}, "spec": spec})
        assert r.status_code == 201, r.text
    return app


async def _ask(client: httpx.AsyncClient, app: str, **headers: str) -> tuple[httpx.Response, httpx.Response]:
    auth = await client.post("/api/v1/auth", json={"application": app, "device": "d1", **AUTH}, headers=headers)
    as_ = await client.post("/api/v1/authorize_as", json={"application": app, "device": "d1", "as": "behind"},
                            headers=headers)
    return auth, as_


async def test_a_credential_is_required(api: Api, unique: str) -> None:
    app = await _app(api, unique)
    for r in await _ask(api.anon, app):
        assert r.status_code == 401, r.text
        assert r.json()["error"] == "AuthenticationError" and "service user" in r.json()["message"]
        assert "Bearer" in r.headers["www-authenticate"] and "Basic" in r.headers["www-authenticate"]
    # a body that is not even valid still gets the 401 first: nothing is learned without a credential
    r = await api.anon.post("/api/v1/auth", json={"application": app})
    assert r.status_code == 401
    # wrong credentials: 403, as everywhere in the API
    for r in await _ask(api.anon, app, Authorization="Bearer not-a-jwt"):
        assert r.status_code == 403 and r.json()["error"] == "AuthenticationError", r.text
    basic = "Basic " + base64.b64encode(b"alice:drg_000000_wrong").decode()
    for r in await _ask(api.anon, app, Authorization=basic):
        assert r.status_code == 403, r.text


async def test_plain_users_are_refused_even_for_their_own_app(api: Api, unique: str) -> None:
    app = await _app(api, unique)  # alice owns it
    for client in (api.alice, api.bob):
        for r in await _ask(client, app):
            assert r.status_code == 403, r.text
            assert SERVICE_ROLE in r.json()["message"]


async def test_admin_and_service_users_are_answered(api: Api, unique: str) -> None:
    app = await _app(api, unique)
    auth, as_ = await _ask(api.admin, app)
    assert auth.status_code == 200 and "pass" in auth.json()["outcome"], auth.text
    assert as_.status_code == 200 and as_.json()["outcome"]["pass"]["as"]["metadata"]["name"] == "behind"
    # a service user with the role, by JWT and by access token (Basic)
    name = f"svc-{unique}"
    r = await api.admin.post("/api/admin/v1alpha1/users",
                             json={"username": name, "password": "service-password", "roles": [SERVICE_ROLE]})
    assert r.status_code == 201, r.text
    r = await api.anon.post("/api/token", json={"grant_type": "password", "username": name,
                                                "password": "service-password"})
    assert r.status_code == 200, r.text
    bearer = {"Authorization": f"Bearer {r.json()['access_token']}"}
    for r in await _ask(api.anon, app, **bearer):
        assert r.status_code == 200 and "pass" in r.json()["outcome"], r.text
    r = await api.anon.post("/api/tokens/v1alpha1", headers=bearer)
    assert r.status_code == 201, r.text
    basic = "Basic " + base64.b64encode(f"{name}:{r.json()['token']}".encode()).decode()
    for r in await _ask(api.anon, app, Authorization=basic):
        assert r.status_code == 200 and "pass" in r.json()["outcome"], r.text
    # a wrong device password is still just "fail" for a service user
    r = await api.admin.post("/api/v1/auth", json={"application": app, "device": "d1",
                                                   "credential": {"pass": "wrong"}})
    assert r.status_code == 200 and r.json() == {"outcome": "fail"}


async def test_the_setting_opens_it_to_anyone(tmp_path: Path, kafka_broker: EmbeddedBroker, unique: str) -> None:
    settings = settings_for(tmp_path / "data", None, kafka_broker.bootstrap)
    settings = settings.model_copy(update={"registry": settings.registry.model_copy(
        update={"device_auth_anonymous": True})})
    async with running_api(settings) as api:
        app = await _app(api, unique)
        auth, as_ = await _ask(api.anon, app)
        assert auth.status_code == 200 and "pass" in auth.json()["outcome"], auth.text
        assert as_.status_code == 200 and "pass" in as_.json()["outcome"], as_.text
        assert (await _ask(api.bob, app))[0].status_code == 200
