"""Pure unit tests: the §7.1 login forms and the query parameters of the HTTP endpoint."""

from __future__ import annotations

import base64

import pytest

from ingress.http.login import Login, http_login, parse_basic
from ingress.http.params import BadRequest, PublishParams, parse_publish_params
from schemas.auth import CertCredential, PassCredential, UserCredential


def basic(raw: str) -> str:
    return "Basic " + base64.b64encode(raw.encode()).decode()


@pytest.mark.parametrize(
    ("authorization", "application", "device", "expected"),
    [
        (basic("d@a:pw"), None, None, Login("a", "d", PassCredential("pw"))),
        (basic("d%2Fx@a:pw"), None, None, Login("a", "d/x", PassCredential("pw"))),
        (basic("d@a@b:pw"), None, None, Login("a@b", "d", PassCredential("pw"))),  # split at the first @
        (basic("d:pw"), "a", None, Login("a", "d", PassCredential("pw"))),
        (basic("d@x:pw"), "a", None, Login("a", "d@x", PassCredential("pw"))),  # §17 fix of 14.5
        (basic("u@a:pw"), None, "d", Login("a", "d", UserCredential("u", "pw"))),
        (basic("u:pw"), "a", "d", Login("a", "d", UserCredential("u", "pw"))),
        (basic("d@a:"), None, None, Login("a", "d", PassCredential(""))),  # empty password: the registry decides
        (basic("d@a:p:w"), None, None, Login("a", "d", PassCredential("p:w"))),
        ("basic " + base64.b64encode(b"d@a:pw").decode(), None, None, Login("a", "d", PassCredential("pw"))),
    ],
)
def test_accepted_forms(authorization: str, application: str | None, device: str | None,
                        expected: Login) -> None:
    assert http_login(authorization, application, device) == expected


@pytest.mark.parametrize(
    ("authorization", "application", "device"),
    [
        (None, None, None),
        (None, "a", "d"),
        (basic("d@a"), None, None),  # no password
        (basic("d:pw"), None, None),  # unscoped, no application
        (basic("u:pw"), None, "d"),  # unscoped user, no application
        ("Bearer x", None, None),
        ("Basic", None, None),
        ("Basic %%%", None, None),
        (basic("d%ff@a:pw"), None, None),  # percent-decodes to invalid UTF-8
    ],
)
def test_refused_forms(authorization: str | None, application: str | None, device: str | None) -> None:
    assert http_login(authorization, application, device) is None


def test_client_certificate_alone_is_a_cert_login() -> None:
    assert http_login(None, None, None, [b"leaf", b"ca"]) == Login("", "", CertCredential((b"leaf", b"ca")))


def test_client_certificate_with_basic_credentials_fails() -> None:
    """§17 row 14.6 kept: certificate + password is refused."""
    assert http_login(basic("d@a:pw"), None, None, [b"leaf"]) is None
    assert http_login(None, "a", None, [b"leaf"]) is None


def test_parse_basic() -> None:
    assert parse_basic(basic("user:pass")) == ("user", "pass")
    assert parse_basic(basic("user")) == ("user", None)
    assert parse_basic("Digest abc") is None


def test_params() -> None:
    assert parse_publish_params(b"", 60) == PublishParams()
    assert parse_publish_params(b"application=a&device=d&as=x%20y&data_schema=urn%3Ax&ct=30&other=1", 60) == \
        PublishParams("a", "d", "x y", "urn:x", 30)
    assert parse_publish_params(b"commandTimeout=0", 60).command_timeout_s == 0
    assert parse_publish_params(b"application=", 60).application == ""


@pytest.mark.parametrize("query", [b"ct=x", b"ct=-1", b"ct=61", b"ct=%EF%BC%91", b"ct=1&ct=2",
                                   b"ct=1&commandTimeout=1", b"as=a&as=b", b"device=%ff"])
def test_bad_params(query: bytes) -> None:
    with pytest.raises(BadRequest):
        parse_publish_params(query, 60)
