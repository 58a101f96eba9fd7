"""The management CLI as a subprocess against a real `kedge serve api`: contexts, apps, devices, members, tokens.

JSON/YAML output is parsed, never string-matched; errors must be one line on stderr with exit code 1.
"""

from __future__ import annotations

import asyncio
import json
import stat
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml

from kedge.broker import free_port
from tests.cli.conftest import ApiProc
from tests.cli.support import Cli

pytestmark = [pytest.mark.integration, pytest.mark.slow]


async def _device_auth(api: ApiProc, app: str, device: str, password: str) -> bool:
    async with httpx.AsyncClient(base_url=api.url, timeout=10.0) as client:
        r = await client.post("/api/token", json={"grant_type": "password", "username": "admin",
                                                  "password": api.admin_password})
        r.raise_for_status()
        headers = {"Authorization": f"Bearer {r.json()['access_token']}"}  # a service user (the admin)
        r = await client.post("/api/v1/auth", json={"application": app, "device": device,
                                                    "credential": {"pass": password}}, headers=headers)
        r.raise_for_status()
        return "pass" in r.json()["outcome"]


async def test_login_whoami_and_contexts(cli: Cli, api_proc: ApiProc) -> None:
    no_context, wrong = await asyncio.gather(
        cli("whoami"), cli("login", api_proc.url, "-u", "admin", "-p", "wrong-password"))
    assert no_context.fails() == "error: no context: run `kedge login <url>` first"
    assert wrong.fails() == "error: Invalid username or password (HTTP 403)"
    assert not cli.config_file.exists()

    (await cli("login", api_proc.url, "-u", "admin", "-p", api_proc.admin_password, "-a", "first-app")).ok()
    assert stat.S_IMODE(cli.config_file.stat().st_mode) == 0o600
    # make the JWT about to expire: the next command renews it with the kept password
    config = yaml.safe_load(cli.config_file.read_text())
    old_token = config["contexts"][0]["auth"]["token"]
    config["contexts"][0]["auth"]["exp"] = int(time.time()) + 2  # within the refresh margin
    cli.config_file.write_text(yaml.safe_dump(config))
    who = (await cli("whoami", "-o", "json")).ok().json()
    assert (who["name"], who["via"], who["admin"], who["context"]) == ("admin", "jwt", True, "default")
    auth = yaml.safe_load(cli.config_file.read_text())["contexts"][0]["auth"]
    assert auth["token"] != old_token and auth["exp"] > time.time() + 600
    assert who["exp"] == auth["exp"]  # the server saw the new JWT
    assert stat.S_IMODE(cli.config_file.stat().st_mode) == 0o600

    second, shown_r = await asyncio.gather(
        cli("login", api_proc.url, "-u", "admin", "-p", api_proc.admin_password, "-c", "second",
            "--ws-url", "ws://127.0.0.1:9999"),
        cli("context", "show", "default"))
    second.ok()
    shown = yaml.safe_load(shown_r.ok().out)
    assert shown["api_url"] == api_proc.url and shown["default_app"] == "first-app"
    assert shown["ws_url"] == "ws://127.0.0.1:8082"
    assert shown["auth"]["password"] == "***" and shown["auth"]["token"] == "***"
    listed = (await cli("context", "list", "-o", "json")).ok().json()
    assert [(c["name"], c["active"], c["ws_url"]) for c in listed] == [
        ("default", False, "ws://127.0.0.1:8082"), ("second", True, "ws://127.0.0.1:9999")]
    (await cli("context", "rename", "second", "two")).ok()
    (await cli("context", "default-app", "other-app")).ok()  # of the active context, now "two"
    (await cli("context", "use", "default")).ok()
    listed = (await cli("context", "list", "-o", "json")).ok().json()
    assert [(c["name"], c["active"], c["default_app"]) for c in listed] == [
        ("default", True, "first-app"), ("two", False, "other-app")]
    (await cli("context", "delete", "two")).ok()
    assert (await cli("context", "use", "two")).fails() == "error: no context named 'two' (see `kedge context list`)"


async def test_app_and_device_lifecycle(admin_cli: Cli, api_proc: ApiProc, unique: str, tmp_path: Path) -> None:
    cli, app = admin_cli, f"cli-{unique}"
    assert (await cli("create", "app", app, "-o", "json")).ok().json() == {
        "status": "success", "message": f"app {app} created", "http_status": 201}
    spec = json.dumps({"credentials": {"credentials": [{"pass": "first-secret"}]}})
    (await cli("create", "device", "dev1", "-a", app, "--spec", spec)).ok()
    assert await _device_auth(api_proc, app, "dev1", "first-secret")

    devices_r, table_r = await asyncio.gather(cli("get", "devices", "-a", app, "-o", "json"),
                                              cli("get", "devices", "-a", app))
    devices = devices_r.ok().json()
    assert [d["metadata"]["name"] for d in devices] == ["dev1"]
    assert devices[0]["spec"]["credentials"]["credentials"] == [{"pass": "first-secret"}]
    table = table_r.ok().out.splitlines()
    assert table[0].split() == ["NAME", "AGE"] and table[1].split()[0] == "dev1"

    for result in await asyncio.gather(cli("label", "device", "dev1", "-a", app, "floor=2", "room=a"),
                                       cli("label", "app", app, "env=test")):
        result.ok()
    (await cli("label", "device", "dev1", "-a", app, "room-")).ok()
    device_r, selected_r = await asyncio.gather(cli("get", "device", "dev1", "-a", app, "-o", "yaml"),
                                                cli("get", "apps", "-l", "env=test", "-o", "json"))
    device = yaml.safe_load(device_r.ok().out)
    assert device["metadata"]["labels"] == {"floor": "2"}
    assert [a["metadata"]["name"] for a in selected_r.ok().json()] == [app]

    # edit -f: the file is the resource as read, with a change
    device["metadata"]["labels"]["edited"] = "yes"
    (tmp_path / "dev1.json").write_text(json.dumps(device))
    (await cli("edit", "device", "dev1", "-a", app, "-f", str(tmp_path / "dev1.json"))).ok()
    # the same file again is stale now: its resourceVersion is the one before the edit
    line = (await cli("edit", "device", "dev1", "-a", app, "-f", str(tmp_path / "dev1.json"))).fails()
    assert line.startswith("error: device 'dev1' was changed by someone else since it was read")
    assert line.endswith("(HTTP 409)")

    # edit in $EDITOR: a script that changes the YAML it is given
    editor = tmp_path / "editor.py"
    editor.write_text("import sys, yaml\np = sys.argv[1]\nd = yaml.safe_load(open(p))\n"
                      "d['metadata']['labels']['via'] = 'editor'\nopen(p, 'w').write(yaml.safe_dump(d))\n")
    (await cli("edit", "device", "dev1", "-a", app, env={"EDITOR": f"{sys.executable} {editor}"})).ok()
    device = (await cli("get", "device", "dev1", "-a", app, "-o", "json")).ok().json()
    assert device["metadata"]["labels"] == {"floor": "2", "edited": "yes", "via": "editor"}

    # concurrent read-modify-writes of one device: each retries on a lost optimistic lock
    for result in await asyncio.gather(cli("set", "password", "dev1", "second-secret", "-a", app),
                                       cli("set", "gateway", "dev1", "gw1", "-a", app),
                                       cli("set", "alias", "dev1", "serial-42", "-a", app)):
        result.ok()
    assert await _device_auth(api_proc, app, "dev1", "second-secret")
    assert not await _device_auth(api_proc, app, "dev1", "first-secret")
    wide = (await cli("get", "devices", "-a", app, "-o", "wide")).ok().out.splitlines()
    assert wide[0].split()[:4] == ["NAME", "ALIASES", "GATEWAYS", "LABELS"]
    assert wide[1].split()[:3] == ["dev1", "serial-42", "gw1"]

    assert (await cli("delete", "device", "dev1", "-a", app, "-o", "json")).ok().json()["status"] == "success"
    again, ignored_r = await asyncio.gather(
        cli("delete", "device", "dev1", "-a", app),
        cli("delete", "device", "dev1", "-a", app, "--ignore-missing", "-o", "json"))
    (await cli("delete", "app", app)).ok()
    assert again.fails() == "error: Device dev1 not found (HTTP 404)"
    ignored = ignored_r.ok().json()
    assert (ignored["status"], ignored["http_status"]) == ("success", 404)
    assert app not in [a["metadata"]["name"] for a in (await cli("get", "apps", "-o", "json")).ok().json()]


async def test_bad_inputs_fail_in_one_line(admin_cli: Cli, api_proc: ApiProc, unique: str) -> None:
    cli, app = admin_cli, f"bad-{unique}"
    (await cli("create", "app", app)).ok()
    dead = f"http://127.0.0.1:{free_port()}"
    (missing_app, bad_json, not_object, conflict, bad_name, no_app, bad_label, usage,
     unreachable) = await asyncio.gather(
        cli("get", "devices", "-a", "no-such-app"),
        cli("create", "device", "d", "-a", app, "--spec", "{not json"),
        cli("create", "device", "d", "-a", app, "--spec", "[1]", "-o", "json"),
        cli("create", "app", app, "-o", "json"),
        cli("create", "app", "Not_A_Hostname"),
        cli("get", "devices"),  # no -a and no default app
        cli("label", "app", app, "novalue"),
        cli("get", "apps", "-o", "xml"),
        cli("login", dead, "-u", "admin", "-p", "x", "-c", "dead"),
    )
    assert missing_app.fails() == "error: Application no-such-app not found (HTTP 404)"
    assert bad_json.fails().startswith("error: --spec is not valid JSON")
    assert not_object.fails() == "error: --spec must be a JSON object, not list"
    assert not_object.json()["status"] == "failure"
    assert conflict.fails().endswith("(HTTP 409)")
    assert conflict.json() == {"status": "failure", "message": "Unique key violation", "http_status": 409}
    assert "hostname" in bad_name.fails() and bad_name.err.strip().endswith("(HTTP 400)")
    assert no_app.fails().startswith("error: no application: give -a/--app")
    assert bad_label.fails().startswith("error: invalid label 'novalue'")
    assert usage.code == 2  # a usage error
    assert unreachable.fails().startswith(f"error: cannot reach {dead}/api/token")
    assert (await cli("get", "devices", "-a", app, "-o", "json")).ok().json() == []  # nothing was created
    (await cli("delete", "app", app)).ok()


async def test_tokens_and_members(admin_cli: Cli, api_proc: ApiProc, unique: str, tmp_path: Path) -> None:
    cli, app = admin_cli, f"members-{unique}"
    created = (await cli("create", "token", "--description", "ci", "-o", "json")).ok().json()
    prefix, token = created["prefix"], created["token"]
    assert token.startswith(prefix + "_")
    key_cli = Cli(tmp_path / "key-xdg")
    listed_r, login_r, bad_key = await asyncio.gather(
        cli("get", "tokens", "-o", "json"), key_cli("login", api_proc.url, "--token", f"admin:{token}", "-o", "json"),
        Cli(tmp_path / "bad-xdg")("login", api_proc.url, "--token", "admin:drg_nonsense"))
    listed = listed_r.ok().json()
    assert {"prefix": prefix, "description": "ci"}.items() <= next(t for t in listed if t["prefix"] == prefix).items()
    assert login_r.ok().json()["status"] == "success"
    assert bad_key.fails() == "error: Malformed access token (HTTP 403)"
    who_r, printed = await asyncio.gather(key_cli("whoami", "-o", "json"), key_cli("whoami", "-t"))
    assert who_r.ok().json()["via"] == "api_key"
    assert printed.ok().out.strip() == token
    (await cli("delete", "token", prefix)).ok()
    assert (await key_cli("whoami")).fails() == "error: Unknown user or access token (HTTP 403)"

    # a second local user (the admin API), then membership through the CLI
    config = yaml.safe_load(cli.config_file.read_text())
    jwt = config["contexts"][0]["auth"]["token"]
    user = f"user-{unique}"
    async with httpx.AsyncClient(base_url=api_proc.url, headers={"Authorization": f"Bearer {jwt}"}) as http:
        r = await http.post("/api/admin/v1alpha1/users", json={"username": user, "password": "user-password"})
        assert r.status_code == 201, r.text
        user_id = r.json()["id"]
    user_cli = Cli(tmp_path / "user-xdg")
    for result in await asyncio.gather(cli("create", "app", app),
                                       user_cli("login", api_proc.url, "-u", user, "-p", "user-password")):
        result.ok()
    (await cli("create", "device", "d1", "-a", app)).ok()

    (await cli("create", "member", user, "--role", "reader", "-a", app)).ok()
    members_r, table_r, devices_r, write_r = await asyncio.gather(
        cli("get", "members", "-a", app, "-o", "json"), cli("get", "members", "-a", app),
        user_cli("get", "devices", "-a", app, "-o", "json"), user_cli("create", "device", "d2", "-a", app))
    assert members_r.ok().json()["members"] == {user_id: {"role": "reader"}}
    assert table_r.ok().out.splitlines()[1].split() == [user_id, user, "reader"]
    assert [d["metadata"]["name"] for d in devices_r.ok().json()] == ["d1"]
    assert write_r.fails().endswith("(HTTP 404)")  # a reader may not write
    (await cli("create", "member", user, "--role", "manager", "-a", app)).ok()
    (await user_cli("create", "device", "d2", "-a", app)).ok()
    (await cli("delete", "member", user, "-a", app)).ok()
    members_r, again, denied = await asyncio.gather(
        cli("get", "members", "-a", app, "-o", "json"), cli("delete", "member", user, "-a", app),
        user_cli("get", "devices", "-a", app))
    assert members_r.ok().json()["members"] == {}
    assert again.fails() == f"error: {user} is not a member of app {app}"
    assert denied.fails().endswith("(HTTP 404)")
    (await cli("delete", "app", app)).ok()
