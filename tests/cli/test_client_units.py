"""The pure parts of the management client: label and spec edits, ages, contexts, the config file."""

from __future__ import annotations

import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest
import typer.main

from kedge.cli import app
from kedge.client.api import token_due
from kedge.client.config import Auth, Config, ConfigStore, Context, NoContext, config_path, derive_ws_url
from kedge.client.edits import (
    add_alias,
    add_gateway,
    age,
    apply_labels,
    parse_json_object,
    parse_label_args,
    parse_resource_text,
    set_password,
)
from kedge.errors import KedgeError


def test_label_args_set_and_remove() -> None:
    assert parse_label_args(["a=1", "b=", "c-", "d=x=y"]) == [("a", "1"), ("b", ""), ("c", None), ("d", "x=y")]
    for bad in ["nolabel", "=v", "-"]:
        with pytest.raises(KedgeError, match="invalid label"):
            parse_label_args([bad])
    resource = {"metadata": {"name": "x", "labels": {"c": "old", "keep": "1"}}}
    out = apply_labels(resource, [("a", "1"), ("c", None)])
    assert out["metadata"]["labels"] == {"keep": "1", "a": "1"}
    assert resource["metadata"]["labels"] == {"c": "old", "keep": "1"}  # the input is not changed


def test_json_and_resource_inputs() -> None:
    assert parse_json_object('{"a": 1}', "--spec") == {"a": 1}
    with pytest.raises(KedgeError, match="--spec is not valid JSON"):
        parse_json_object("{bad", "--spec")
    with pytest.raises(KedgeError, match="must be a JSON object"):
        parse_json_object("[1]", "--spec")
    assert parse_resource_text("metadata:\n  name: x\n", "f") == {"metadata": {"name": "x"}}
    assert parse_resource_text('{"metadata": {"name": "x"}}', "f") == {"metadata": {"name": "x"}}
    with pytest.raises(KedgeError, match="f must hold one object"):
        parse_resource_text("- 1\n", "f")
    with pytest.raises(KedgeError, match="neither valid JSON nor YAML"):
        parse_resource_text("{a: [", "f")


def test_device_spec_edits() -> None:
    device = {"metadata": {"name": "d"}, "spec": {"credentials": {"credentials": [
        {"pass": "old"}, {"user": {"username": "u", "password": "old"}}]}}}
    out = set_password(device, "new", None)
    assert out["spec"]["credentials"]["credentials"] == [{"user": {"username": "u", "password": "old"}},
                                                         {"pass": "new"}]
    out = set_password(out, "new2", "u")
    assert out["spec"]["credentials"]["credentials"] == [{"pass": "new"},
                                                         {"user": {"username": "u", "password": "new2"}}]
    bare = {"metadata": {"name": "d"}}
    assert add_gateway(add_gateway(bare, "gw"), "gw")["spec"]["gatewaySelector"] == {"matchNames": ["gw"]}
    assert add_alias(add_alias(bare, "a1"), "a2")["spec"]["alias"] == ["a1", "a2"]
    assert "spec" not in bare


def test_age() -> None:
    now = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert age("2026-01-02T03:04:00Z", now) == "5s"
    assert age("2026-01-02T02:00:00.123456Z", now) == "1h"
    assert age("2025-12-20T03:04:05+00:00", now) == "13d"
    assert age(None, now) == "" and age("garbage", now) == ""


def test_config_paths_and_ws_default() -> None:
    assert config_path({"XDG_CONFIG_HOME": "/x"}) == Path("/x/kedge/config.yaml")
    assert config_path({"HOME": "/home/u"}) == Path("/home/u/.config/kedge/config.yaml")
    assert derive_ws_url("http://127.0.0.1:8011") == "ws://127.0.0.1:8082"
    assert derive_ws_url("https://kedge.example.com/") == "wss://kedge.example.com:8082"
    assert derive_ws_url("http://[::1]:8011") == "ws://[::1]:8082"


def _ctx(name: str) -> Context:
    return Context(name=name, api_url="http://h:1", ws_url="ws://h:2",
                   auth=Auth(kind="password", username="u", password="pw", token="jwt", exp=100, ttl=50))


def test_config_store_is_private_and_round_trips(tmp_path: Path) -> None:
    store = ConfigStore(tmp_path / "cfg" / "kedge" / "config.yaml")
    assert store.load() == Config()
    config = Config(active="a", contexts=[_ctx("a"), _ctx("b")])
    store.save(config)
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(store.path.parent.stat().st_mode) == 0o700
    assert store.load() == config
    assert "pw" not in str(config.get("a").redacted())
    store.path.write_text("contexts: [{name: 1}]\n")
    with pytest.raises(KedgeError, match="not a valid kedge config"):
        store.load()


def test_context_selection() -> None:
    with pytest.raises(NoContext, match=r"no context: run `kedge login <url>` first"):
        Config().get()
    config = Config(active="a", contexts=[_ctx("a"), _ctx("b")])
    assert config.get().name == "a" and config.get("b").name == "b"
    with pytest.raises(NoContext, match="no context named 'c'"):
        config.get("c")
    config.remove("a")
    assert config.active == "b"


def test_jwt_refresh_is_due_before_expiry() -> None:
    auth = Auth(kind="password", username="u", password="p", token="t", exp=1000, ttl=300)
    assert not token_due(auth, 900)  # margin: a third of 300 s, at most 60 s
    assert token_due(auth, 941)
    assert token_due(auth.model_copy(update={"token": None}), 0)
    assert not token_due(Auth(kind="api_key", username="u", token="drg_x"), 10**12)
    short = auth.model_copy(update={"ttl": 3})
    assert token_due(short, 998) and not token_due(short, 997.9)  # at least 2 s ahead


def test_every_command_has_help_with_an_example() -> None:
    """`--help` of every visible management command shows at least one example."""
    root = typer.main.get_command(app)
    management = ["login", "whoami", "context", "create", "get", "edit", "delete", "label", "set", "cmd", "stream"]
    missing = []
    for name in management:
        command = root.commands[name]  # type: ignore[attr-defined]
        leaves = [c for c in getattr(command, "commands", {}).values() if not c.hidden] or [command]
        for leaf in leaves:
            if "Example:" not in (leaf.help or ""):
                missing.append(f"{name} {leaf.name}")
    assert not missing, f"commands without an example in --help: {missing}"
