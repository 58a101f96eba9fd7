"""Which credentials a request presents: exactly one of four forms (§9, §10)."""

from __future__ import annotations

import base64
from collections.abc import Callable, Sequence

import pytest

from registry.access.credentials import ApiKeyCredential, JwtCredential, parse_http_credentials
from registry.access.errors import AuthenticationFailed, BadRequest


def q(**params: str | list[str]) -> Callable[[str], Sequence[str]]:
    def get(name: str) -> Sequence[str]:
        value = params.get(name, [])
        return [value] if isinstance(value, str) else value

    return get


def basic(user: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{secret}".encode()).decode()


def test_none_is_anonymous() -> None:
    assert parse_http_credentials([], q()) is None


def test_each_single_form() -> None:
    assert parse_http_credentials([basic("alice", "drg_x:y")], q()) == ApiKeyCredential("alice", "drg_x:y")
    assert parse_http_credentials(["Bearer abc.def.ghi"], q()) == JwtCredential("abc.def.ghi")
    assert parse_http_credentials(["bearer   abc"], q()) == JwtCredential("abc")
    assert parse_http_credentials([], q(token="abc")) == JwtCredential("abc")
    assert parse_http_credentials([], q(username="alice", api_key="k")) == ApiKeyCredential("alice", "k")


@pytest.mark.parametrize(
    ("headers", "query"),
    [
        (["Bearer a"], q(token="b")),
        ([basic("u", "t")], q(token="b")),
        (["Bearer a", "Bearer b"], q()),
        (["Bearer a"], q(username="u", api_key="k")),
        ([], q(token="a", username="u", api_key="k")),
        ([], q(token=["a", "b"])),
        ([], q(username=["u", "v"], api_key="k")),
    ],
)
def test_more_than_one_way_is_400(headers: list[str], query: Callable[[str], Sequence[str]]) -> None:
    with pytest.raises(BadRequest, match="More than one way of authentication provided"):
        parse_http_credentials(headers, query)


@pytest.mark.parametrize("query", [q(username="u"), q(api_key="k")])
def test_half_an_api_key_is_400(query: Callable[[str], Sequence[str]]) -> None:
    with pytest.raises(BadRequest, match="together"):
        parse_http_credentials([], query)


@pytest.mark.parametrize(
    "header",
    [
        "Basic !!!notbase64",
        "Basic " + base64.b64encode(b"no-colon").decode(),
        "Basic " + base64.b64encode(b":t").decode(),
        "Digest abc",
        "Bearer",
        "Basic",
        "Token abc",
    ],
)
def test_malformed_header_is_403(header: str) -> None:
    with pytest.raises(AuthenticationFailed):
        parse_http_credentials([header], q())


def test_secrets_are_not_in_repr() -> None:
    assert "s3cret" not in repr(ApiKeyCredential("u", "s3cret"))
    assert "s3cret" not in repr(JwtCredential("s3cret"))
