"""Secrets: user passwords and access tokens are stored only as hashes (a device password only as the owner gave
it: a plain string stays plain for Drogue compatibility, a bcrypt/sha512 form stays a hash); an access token is
returned once, at creation; no secret appears in any process log."""

from __future__ import annotations

import hashlib
import sqlite3
from typing import Any

import bcrypt
import httpx
import pytest
from websockets.asyncio.client import connect as ws_connect

from protocols.mqtt import Connect, ReasonCode
from tests.ingress.mqtt_support import RawClient
from tests.security.conftest import REGISTRY, USER_PASSWORD, Stack

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _rows(stack: Stack, table: str) -> list[dict[str, Any]]:
    with sqlite3.connect(stack.data_dir / "registry.db") as db:
        db.row_factory = sqlite3.Row
        return [dict(r) for r in db.execute(f"SELECT * FROM {table}")]


async def test_passwords_and_tokens_are_stored_only_as_hashes(stack: Stack) -> None:
    users = _rows(stack, "users")
    assert {u["username"] for u in users} >= {"admin", "alice", "bob"}
    for user in users:
        assert user["password_hash"].startswith("$2"), user["username"]  # bcrypt
        password = USER_PASSWORD if user["username"] != "admin" else stack.admin[1]
        assert bcrypt.checkpw(password.encode(), user["password_hash"].encode())
    tokens = {t["username"]: t for t in _rows(stack, "access_tokens")}
    for owner, token in stack.api_keys.items():
        row = tokens[owner]
        assert row["hashed_token"] == hashlib.sha3_512(token.encode()).hexdigest()
        assert token.startswith(row["prefix"]) and len(row["prefix"]) < len(token) / 2
    dump = repr([_rows(stack, t) for t in ("users", "access_tokens", "apps", "outbox")])
    for secret in [USER_PASSWORD, stack.admin[1], *stack.api_keys.values(), *stack.jwts.values()]:
        assert secret not in dump

    # a device password given as a hash is kept as that hash, and works
    app = stack.apps["a"]
    hashed = bcrypt.hashpw(b"hashed-device-pw", bcrypt.gensalt(4)).decode()
    async with stack.client("alice") as api:
        r = await api.post(f"{REGISTRY}/apps/{app}/devices", json={"metadata": {"name": "hashed"}, "spec": {
            "credentials": {"credentials": [{"pass": {"bcrypt": hashed}}]}}})
        assert r.status_code == 201, r.text
    spec = next(d["spec"] for d in _rows(stack, "devices") if d["name"] == "hashed")
    assert "hashed-device-pw" not in spec and hashed in spec
    client, connack = await RawClient.open(stack.mqtt_port, Connect("h", 5, username=f"hashed@{app}",
                                                                    password=b"hashed-device-pw"))
    assert connack.reason_code == ReasonCode.SUCCESS
    client.close()


async def test_secrets_are_not_returned(stack: Stack) -> None:
    async with stack.client("alice") as api:
        r = await api.post("/api/tokens/v1alpha1", params={"description": "once"})
        assert r.status_code == 201, r.text
        token = r.json()["token"]
        stack.api_keys["alice-2"] = token
        listed = await api.get("/api/tokens/v1alpha1")
        assert listed.status_code == 200 and token not in listed.text
        assert stack.api_keys["alice"] not in listed.text
        assert USER_PASSWORD not in (await api.get("/api/user/v1alpha1/whoami")).text
    async with stack.client("admin") as admin:
        users = await admin.get("/api/admin/v1alpha1/users")
        assert users.status_code == 200
        assert "$2" not in users.text and "password" not in users.text.lower().replace("password_set", "")
        assert stack.admin[1] not in users.text
        # the device authentication service strips credentials from the device it returns (reference §8)
        r = await admin.post("/api/v1/auth", json={"application": stack.apps["a"], "device": "dev",
                                                   "credential": {"pass": stack.device_passwords["a"]}})
        assert r.status_code == 200 and "pass" in r.json()["outcome"], r.text
        assert stack.device_passwords["a"] not in r.text and "credentials" not in r.text


async def test_no_secret_in_any_log(stack: Stack) -> None:
    """Use every way a secret travels (Basic, Bearer, ``?token=``, ``?username=&api_key=``, MQTT password, wrong
    passwords too) and then search every process log for every secret."""
    app = stack.apps["a"]
    user, password = stack.device_login("a")
    wrong = "wrong-pw-7f3a9c1e"
    async with httpx.AsyncClient(base_url=stack.api_url, timeout=10) as api:
        assert (await api.get(f"{REGISTRY}/apps", params={"token": stack.jwts["alice"]})).status_code == 200
        assert (await api.get(f"{REGISTRY}/apps", params={"username": "alice",
                                                          "api_key": stack.api_keys["alice"]})).status_code == 200
        assert (await api.get(f"{REGISTRY}/apps", auth=("alice", stack.api_keys["alice"]))).status_code == 200
        assert (await api.post("/api/token", json={"grant_type": "password", "username": "alice",
                                                   "password": wrong})).status_code == 403
        assert (await api.post("/api/token", data={"grant_type": "password", "username": "alice",
                                                   "password": USER_PASSWORD})).status_code == 200
    async with httpx.AsyncClient(base_url=stack.http_url, timeout=10) as http:
        assert (await http.post("/v1/t", content=b"1", auth=(user, password))).status_code == 202
        assert (await http.post("/v1/t", content=b"1", auth=(user, wrong))).status_code == 403
        assert (await http.post("/v1/t", content=b"1", auth=(f"{user}x", password))).status_code == 403
    for pw in (password, wrong):
        client, _ = await RawClient.open(stack.mqtt_port, Connect("log", 5, username=user, password=pw.encode()))
        client.close()
    async with ws_connect(f"{stack.ws_url}/{app}?token={stack.jwts['alice']}", open_timeout=10):
        pass
    async with ws_connect(f"{stack.ws_url}/{app}?username=alice&api_key={stack.api_keys['alice']}",
                          open_timeout=10):
        pass
    await stack.assert_alive()
    logs = {p.name: p.log() for p in stack.group.procs}
    assert set(logs) >= {"api", "http", "mqtt", "ws", "worker"}
    for secret in [*stack.secrets(), wrong]:
        for name, text in logs.items():
            assert secret not in text, f"a secret ({secret[:6]}…) is in the log of {name}"
