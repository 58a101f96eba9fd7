"""Pure resource rules: names, change paths, JSON rendering, aliases."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from registry import resources as res
from registry.errors import BadRequest


@pytest.mark.parametrize("name", ["a", "my-app", "a.b.c", "A1", "x" * 63, ".".join(["a" * 63] * 3) + ".b"])
def test_valid_app_names(name: str) -> None:
    res.validate_app_name(name)


@pytest.mark.parametrize("name", ["", "-a", "a-", "a_b", "a..b", ".a", "x" * 64, "a b", "é", "a" * 254])
def test_invalid_app_names(name: str) -> None:
    with pytest.raises(BadRequest):
        res.validate_app_name(name)


def test_device_names() -> None:
    res.validate_device_name("a/b c@d")
    res.validate_device_name("x" * 255)
    for bad in ("", "x" * 256, "€" * 86):
        with pytest.raises(BadRequest):
            res.validate_device_name(bad)


def _row(**kw: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"labels": {}, "annotations": {}, "finalizers": [], "spec": {}, "status": {},
                            "deletion_timestamp": None}
    return {**base, **kw}


def test_diff_paths() -> None:
    old = _row(spec={"a": 1, "b": {"x": 1}}, status={"s": 1})
    assert res.diff_paths(old, old) == []
    assert res.diff_paths(old, _row(spec={"a": 1, "b": {"x": 2}}, status={"s": 1})) == [".spec.b"]
    assert res.diff_paths(old, _row(spec={"a": 1, "b": {"x": 1}, "c": 0}, status={})) == [
        ".spec.c", ".status.s"]
    assert res.diff_paths(old, {**old, "labels": {"l": "1"}}) == [".metadata"]
    assert res.diff_paths(old, {**old, "finalizers": ["f"], "spec": {}}) == [".metadata", ".spec.a", ".spec.b"]
    assert res.spec_changed([".metadata", ".spec.a"]) and not res.spec_changed([".status.x"])


def test_render_omits_empty_sections() -> None:
    row = _row(name="d", uid="u", creation_timestamp=datetime(2022, 7, 7, 13, 47, 39, 123456),
               generation=1, resource_version="rv", labels={"a": "b"})
    out = res.render(row, app="app")
    assert out == {"metadata": {"name": "d", "application": "app", "uid": "u",
                                "creationTimestamp": "2022-07-07T13:47:39.123456Z", "generation": 1,
                                "resourceVersion": "rv", "labels": {"a": "b"}}}
    row["deletion_timestamp"] = datetime(2022, 1, 1, tzinfo=UTC)
    assert res.render(row)["metadata"]["deletionTimestamp"] == "2022-01-01T00:00:00Z"


def test_aliases_and_disabled() -> None:
    spec = {"alias": ["x", ""], "credentials": {"credentials": [
        {"user": {"username": "u", "password": "p", "unique": True}},
        {"user": {"username": "v", "password": "p"}}, {"pass": "p"}]}}
    assert res.aliases(spec) == {("alias", "x"), ("username", "u")}
    assert res.disabled({"core": {"disabled": True}}) and not res.disabled({"core": {}})
    assert not res.disabled({})


@pytest.mark.parametrize(("spec", "message"), [
    ({"credentials": {"credentials": [{"pass_word": "x"}]}},
     "spec.credentials.credentials[0]: expected exactly one of pass, user, cert (got pass_word)"),
    ({"credentials": {"credentials": [{"pass": "a", "cert": "b"}]}}, "expected exactly one of pass, user, cert"),
    ({"credentials": {"credentials": [{"pass": {"md5": "x"}}]}},
     'spec.credentials.credentials[0].pass: a password is a string or {"plain"|"bcrypt"|"sha512": "<string>"}'),
    ({"credentials": {"credentials": [{"user": {"username": "u"}}]}},
     "spec.credentials.credentials[0].user.password: missing field"),
    ({"credentials": {"creds": []}}, "spec.credentials.creds: unknown field"),
    ({"alias": "x"}, "spec.alias"),
])
def test_spec_errors_name_the_field(spec: dict[str, Any], message: str) -> None:
    with pytest.raises(BadRequest) as info:
        res.validate_device_spec(spec)
    assert message in info.value.message


def test_drogue_credentials_accepted() -> None:
    res.validate_device_spec({"credentials": {"credentials": [
        {"pass": "p"}, {"pass": {"plain": "p"}}, {"pass": {"bcrypt": "$2a$..."}}, {"pass": {"sha512": "$6$..."}},
        {"user": {"username": "u", "password": {"plain": "p"}, "unique": True}}, {"cert": "CN=x"}]}})
