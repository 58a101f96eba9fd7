"""The access REST API and the authentication dependency, over httpx + ASGITransport."""

from __future__ import annotations

import base64
import time
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from registry.access import Access
from tests.registry.access.conftest import insert_app

AUTH_ERROR = "AuthenticationError"


def basic(user: str, secret: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{secret}".encode()).decode()}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def login(client: httpx.AsyncClient, username: str, password: str, **extra: Any) -> str:
    r = await client.post("/api/token", data={"username": username, "password": password, **extra})
    assert r.status_code == 200, r.text
    return str(r.json()["access_token"])


@pytest.fixture
async def admin_jwt(client: httpx.AsyncClient, admin: tuple[str, str]) -> str:
    return await login(client, *admin)


async def new_user(client: httpx.AsyncClient, admin_jwt: str, name: str, **body: Any) -> dict[str, Any]:
    r = await client.post("/api/admin/v1alpha1/users", json={"username": name, **body}, headers=bearer(admin_jwt))
    assert r.status_code == 201, r.text
    return dict(r.json())


# --------------------------------------------------------------------------------- token exchange


async def test_token_exchange_form_and_json(client: httpx.AsyncClient, admin: tuple[str, str]) -> None:
    r = await client.post(
        "/api/token",
        data={"grant_type": "password", "username": admin[0], "password": admin[1], "expires_in": "5"},
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == 5
    assert r.headers["cache-control"] == "no-store"
    r = await client.post("/api/token", json={"username": admin[0], "password": admin[1]})
    assert r.status_code == 200 and r.json()["expires_in"] == 600
    who = await client.get("/api/user/v1alpha1/whoami", headers=bearer(r.json()["access_token"]))
    assert who.json()["name"] == "admin" and who.json()["admin"] is True and who.json()["exp"] == r.json()["exp"]


@pytest.mark.parametrize(
    ("kwargs", "status", "error"),
    [
        ({"data": {"username": "admin", "password": "wrong"}}, 403, AUTH_ERROR),
        ({"data": {"username": "nobody", "password": "wrong"}}, 403, AUTH_ERROR),
        ({"data": {"username": "admin"}}, 400, "BadRequest"),
        (
            {"data": {"username": "admin", "password": "x", "grant_type": "client_credentials"}},
            400,
            "BadRequest",
        ),
        ({"data": {"username": "admin", "password": "x", "expires_in": "0"}}, 400, "BadRequest"),
        ({"json": {"username": "admin", "password": "x", "colour": "red"}}, 400, "BadRequest"),
        ({"content": b"{not json", "headers": {"content-type": "application/json"}}, 400, "BadRequest"),
        ({"content": b"x", "headers": {"content-type": "text/plain"}}, 400, "BadRequest"),
    ],
)
async def test_token_exchange_refusals(
    client: httpx.AsyncClient, admin: tuple[str, str], kwargs: dict[str, Any], status: int, error: str
) -> None:
    r = await client.post("/api/token", **kwargs)
    assert r.status_code == status, r.text
    assert r.json()["error"] == error and r.json()["message"]


async def test_unknown_field_is_named(client: httpx.AsyncClient) -> None:
    r = await client.post("/api/token", json={"username": "a", "password": "b", "colour": "red"})
    assert "colour: unknown field" in r.json()["message"]


async def test_jwks_and_discovery(client: httpx.AsyncClient, access: Access) -> None:
    assert access.issuer is not None
    conf = (await client.get("/.well-known/openid-configuration")).json()
    assert conf["issuer"] == "kedge" and conf["jwks_uri"].endswith("/.well-known/jwks.json")
    keys = (await client.get("/.well-known/jwks.json")).json()["keys"]
    assert [k["kid"] for k in keys] == [access.issuer.kid] and "d" not in keys[0]


# ------------------------------------------------------------------------------------- auth forms


async def test_every_auth_form(client: httpx.AsyncClient, admin_jwt: str) -> None:
    alice = await new_user(client, admin_jwt, "alice", password="alice-password")
    jwt_ = await login(client, "alice", "alice-password")
    token = (await client.post("/api/tokens/v1alpha1", headers=bearer(jwt_))).json()["token"]
    forms: list[dict[str, Any]] = [
        {"headers": basic("alice", token)},
        {"headers": bearer(jwt_)},
        {"params": {"token": jwt_}},
        {"params": {"username": "alice", "api_key": token}},
    ]
    for form in forms:
        r = await client.get("/probe", **form)
        assert r.status_code == 200, (form, r.text)
        assert r.json()["id"] == alice["id"] and r.json()["name"] == "alice" and not r.json()["admin"]
    assert (await client.get("/probe")).json()["anonymous"] is True


@pytest.mark.parametrize(
    "form",
    [
        {"headers": {"Authorization": "Bearer x.y.z"}, "params": {"token": "x.y.z"}},
        {"headers": {"Authorization": "Bearer x.y.z"}, "params": {"username": "a", "api_key": "k"}},
        {"params": {"token": "x.y.z", "username": "a", "api_key": "k"}},
    ],
)
async def test_two_methods_at_once(client: httpx.AsyncClient, form: dict[str, Any]) -> None:
    r = await client.get("/probe", **form)
    assert r.status_code == 400
    assert r.json() == {"error": "BadRequest", "message": "More than one way of authentication provided"}


async def test_bad_credentials_are_403(
    client: httpx.AsyncClient, access: Access, admin_jwt: str, rsa_key: Any, other_rsa_key: Any
) -> None:
    await new_user(client, admin_jwt, "alice", password="alice-password")
    token = (await client.post("/api/tokens/v1alpha1", headers=bearer(admin_jwt))).json()["token"]
    assert access.issuer is not None
    expired, _ = access.issuer.issue(user_id="u", username="a", roles=[], ttl_s=5, now=time.time() - 100)
    from registry.access.jwts import LocalIssuer

    forged, _ = LocalIssuer(other_rsa_key, issuer="kedge", audience="kedge").issue(
        user_id="u", username="a", roles=["drogue-admin"], ttl_s=60
    )
    wrong_aud, _ = LocalIssuer(rsa_key, issuer="kedge", audience="other").issue(
        user_id="u", username="a", roles=[], ttl_s=60
    )
    cases = {
        "bad token": basic("admin", "drg_definitely_not_a_token"),
        "tampered token": basic("admin", token[:-1] + ("A" if token[-1] != "A" else "B")),
        "wrong user for token": basic("alice", token),
        "expired JWT": bearer(expired),
        "bad signature": bearer(forged),
        "wrong audience": bearer(wrong_aud),
        "garbage JWT": bearer("garbage"),
        "bad scheme": {"Authorization": "Digest abc"},
    }
    for case, headers in cases.items():
        r = await client.get("/probe", headers=headers)
        assert r.status_code == 403, (case, r.text)
        assert r.json()["error"] == AUTH_ERROR, case
    r = await client.get("/probe", headers=bearer(expired))
    assert "expired" in r.json()["message"]


# ----------------------------------------------------------------------------------- access tokens


async def test_token_routes(client: httpx.AsyncClient, admin_jwt: str) -> None:
    auth = bearer(admin_jwt)
    r = await client.post("/api/tokens/v1alpha1", params={"description": "for ci"}, headers=auth)
    assert r.status_code == 201
    created = r.json()
    assert set(created) == {"prefix", "token"} and created["token"].startswith(created["prefix"] + "_")
    await client.post("/api/tokens/v1alpha1", headers=auth)
    listed = (await client.get("/api/tokens/v1alpha1", headers=auth)).json()
    assert listed[0]["prefix"] == created["prefix"]
    assert listed[0]["description"] == "for ci" and "description" not in listed[1]
    assert all("token" not in t and "hashed_token" not in t and t["created"].endswith("Z") for t in listed)
    # the new token authenticates, until deleted; deleting again (or an unknown prefix) is still 204
    assert (await client.get("/probe", headers=basic("admin", created["token"]))).status_code == 200
    assert (await client.delete(f"/api/tokens/v1alpha1/{created['prefix']}", headers=auth)).status_code == 204
    assert (await client.delete(f"/api/tokens/v1alpha1/{created['prefix']}", headers=auth)).status_code == 204
    assert (await client.delete("/api/tokens/v1alpha1/drg_zzzzzz", headers=auth)).status_code == 204
    assert (await client.get("/probe", headers=basic("admin", created["token"]))).status_code == 403
    assert len((await client.get("/api/tokens/v1alpha1", headers=auth)).json()) == 1
    r = await client.post("/api/tokens/v1alpha1", params={"description": "x" * 2000}, headers=auth)
    assert r.status_code == 400 and r.json()["error"] == "BadRequest"


async def test_tokens_are_per_user(client: httpx.AsyncClient, admin_jwt: str) -> None:
    await new_user(client, admin_jwt, "alice", password="alice-password")
    alice = bearer(await login(client, "alice", "alice-password"))
    mine = (await client.post("/api/tokens/v1alpha1", headers=bearer(admin_jwt))).json()
    assert (await client.get("/api/tokens/v1alpha1", headers=alice)).json() == []
    await client.delete(f"/api/tokens/v1alpha1/{mine['prefix']}", headers=alice)  # not hers: no effect
    assert (await client.get("/probe", headers=basic("admin", mine["token"]))).status_code == 200


async def test_token_routes_refuse_anonymous(client: httpx.AsyncClient) -> None:
    for method in ("GET", "POST"):
        r = await client.request(method, "/api/tokens/v1alpha1")
        assert r.status_code == 403 and r.json()["error"] == AUTH_ERROR
    assert (await client.delete("/api/tokens/v1alpha1/drg_abcdef")).status_code == 403


# -------------------------------------------------------------------------------------------- users


async def test_user_admin(client: httpx.AsyncClient, admin_jwt: str) -> None:
    created = await new_user(client, admin_jwt, "bob")
    assert created["roles"] == [] and len(created["password"]) >= 16
    bob = bearer(await login(client, "bob", created["password"]))
    r = await client.post("/api/admin/v1alpha1/users", json={"username": "eve"}, headers=bob)
    assert r.status_code == 403 and r.json()["error"] == AUTH_ERROR
    assert (await client.get("/api/admin/v1alpha1/users", headers=bob)).status_code == 403
    r = await client.post("/api/admin/v1alpha1/users", json={"username": "bob"}, headers=bearer(admin_jwt))
    assert r.status_code == 409
    for bad in (
        {"username": "a:b"},
        {"username": ""},
        {"username": "x", "password": "short"},
        {"username": "x", "nope": 1},
        {"username": "x", "password": "p" * 73},
    ):
        r = await client.post("/api/admin/v1alpha1/users", json=bad, headers=bearer(admin_jwt))
        assert r.status_code == 400, bad
    names = [u["username"] for u in (await client.get("/api/admin/v1alpha1/users", headers=bearer(admin_jwt))).json()]
    assert names == ["admin", "bob"]
    assert (await client.get("/api/admin/v1alpha1/users/bob", headers=bearer(admin_jwt))).json()["id"] == created["id"]
    assert (await client.delete("/api/admin/v1alpha1/users/bob", headers=bearer(admin_jwt))).status_code == 204
    assert (await client.delete("/api/admin/v1alpha1/users/bob", headers=bearer(admin_jwt))).status_code == 404


# ------------------------------------------------------------------------------------------ members


async def test_members(client: httpx.AsyncClient, engine: AsyncEngine, admin_jwt: str) -> None:
    owner = await new_user(client, admin_jwt, "olga", password="olga-password")
    alice = await new_user(client, admin_jwt, "alice", password="alice-password")
    olga_h = bearer(await login(client, "olga", "olga-password"))
    alice_h = bearer(await login(client, "alice", "alice-password"))
    await insert_app(engine, "app1", owner=owner["id"])
    url = "/api/admin/v1alpha1/apps/app1/members"

    got = (await client.get(url, headers=olga_h)).json()
    assert got["members"] == {} and got["resourceVersion"]
    assert (await client.get(url, headers=alice_h)).status_code == 403
    assert (await client.get(url)).status_code == 403

    body = {"resourceVersion": got["resourceVersion"], "members": {alice["id"]: {"role": "manager"}}}
    assert (await client.put(url, json=body, headers=olga_h)).status_code == 204
    # the old resourceVersion is stale now
    r = await client.put(url, json=body, headers=olga_h)
    assert r.status_code == 409 and r.json()["error"] == "Conflict"
    got2 = (await client.get(url, headers=olga_h)).json()
    assert got2["members"] == {alice["id"]: {"role": "manager"}} and got2["resourceVersion"] != got["resourceVersion"]
    # a manager is not an Admin of the app
    assert (await client.get(url, headers=alice_h)).status_code == 403
    assert (
        await client.put(url, json={"members": {alice["id"]: {"role": "admin"}}}, headers=olga_h)
    ).status_code == 204
    assert (await client.get(url, headers=alice_h)).status_code == 200
    # bad bodies, missing app; the global admin may do it all
    bads: list[Any] = [{"members": {"x": {"role": "boss"}}}, {"members": {"x": {}}}, {"member": {}}, [1]]
    for bad in bads:
        r = await client.put(url, json=bad, headers=olga_h)
        assert r.status_code == 400, bad
    assert (await client.get("/api/admin/v1alpha1/apps/nope/members", headers=olga_h)).status_code == 404
    assert (await client.get(url, headers=bearer(admin_jwt))).status_code == 200


async def test_access_decisions_via_may(access: Access, engine: AsyncEngine) -> None:
    from registry.access import ANONYMOUS, Identity, Permission

    await insert_app(engine, "owned", owner="u-o", members={"u-r": {"role": "reader"}})
    await insert_app(engine, "open", owner=None)
    reader = Identity(user_id="u-r", username="r", via="jwt")
    assert await access.may("owned", reader, Permission.READ) is True
    assert await access.may("owned", reader, Permission.WRITE) is False
    assert await access.may("open", ANONYMOUS, Permission.READ) is True
    assert await access.may("open", ANONYMOUS, Permission.WRITE) is False
    assert await access.may("missing", reader, Permission.READ) is None
    assert await access.may("owned", reader, "Read") is True and await access.may("owned", reader, "Write") is False


async def test_identify_outside_fastapi(access: Access, admin: tuple[str, str]) -> None:
    """What the WebSocket integration calls with the upgrade request's headers and query."""
    from registry.access import ANONYMOUS, identify
    from registry.access.errors import AuthenticationFailed

    issued = await access.issue_jwt(*admin, ttl_s=60)
    none: dict[str, list[str]] = {}
    found = await identify(access, [], lambda name: {"token": [issued.token]}.get(name, []))
    assert found.username == "admin" and found.exp == issued.exp
    assert await identify(access, [], lambda name: none.get(name, [])) == ANONYMOUS
    with pytest.raises(AuthenticationFailed):
        await identify(access, ["Bearer nope"], lambda name: none.get(name, []))


async def test_transfer_ownership(client: httpx.AsyncClient, engine: AsyncEngine, admin_jwt: str) -> None:
    olga = await new_user(client, admin_jwt, "olga", password="olga-password")
    await new_user(client, admin_jwt, "alice", password="alice-password")
    olga_h = bearer(await login(client, "olga", "olga-password"))
    alice_h = bearer(await login(client, "alice", "alice-password"))
    await insert_app(engine, "app2", owner=olga["id"])
    base = "/api/admin/v1alpha1/apps/app2"

    assert (await client.get(base + "/transfer-ownership", headers=olga_h)).status_code == 204
    assert (await client.put(base + "/accept-ownership", headers=alice_h)).status_code == 403
    assert (
        await client.put(base + "/transfer-ownership", json={"newUser": "alice"}, headers=alice_h)
    ).status_code == 403
    assert (
        await client.put(base + "/transfer-ownership", json={"newUser": "alice"}, headers=olga_h)
    ).status_code == 204
    pending = (await client.get(base + "/transfer-ownership", headers=olga_h)).json()
    assert pending["newUser"]
    assert (await client.put(base + "/accept-ownership", headers=alice_h)).status_code == 204
    # alice owns it now; olga is nobody to it
    assert (await client.get(base + "/members", headers=alice_h)).status_code == 200
    assert (await client.get(base + "/members", headers=olga_h)).status_code == 403
    assert (await client.get(base + "/transfer-ownership", headers=alice_h)).status_code == 204
    # cancel
    assert (
        await client.put(base + "/transfer-ownership", json={"newUser": olga["id"]}, headers=alice_h)
    ).status_code == 204
    assert (await client.delete(base + "/transfer-ownership", headers=alice_h)).status_code == 204
    assert (await client.put(base + "/accept-ownership", headers=olga_h)).status_code == 403


async def test_whoami_paths(client: httpx.AsyncClient, admin_jwt: str) -> None:
    for path in ("/api/user/v1alpha1/whoami", "/api/admin/v1alpha1/user/whoami"):
        anon = (await client.get(path)).json()
        assert anon["anonymous"] is True and anon["id"] is None
        me = (await client.get(path, headers=bearer(admin_jwt))).json()
        assert me["roles"] == ["drogue-admin"] and me["via"] == "jwt"
