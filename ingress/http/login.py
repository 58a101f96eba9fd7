"""Which device an HTTP request logs in as (reference §7.1, ``authenticate_http``). Pure; no I/O.

| Authorization | query | login |
|---|---|---|
| Basic ``<device>@<app>:<pw>`` | — | ``pass`` for ``<device>`` (percent-decoded) of ``<app>`` |
| Basic ``<device>:<pw>`` | ``application`` | ``pass`` for ``<device>`` (as given) of ``application`` |
| Basic ``<user>@<app>:<pw>`` | ``device`` | ``user`` ``<user>`` (percent-decoded), ``device`` of ``<app>`` |
| Basic ``<username>:<pw>`` | ``application`` + ``device`` | ``user`` ``<username>`` (as given) |
| none, verified TLS client certificate | — | ``cert``, app and device ``""``: taken from the certificate |

(The authenticator reads the app from the issuer DN and the device from the subject DN; TLS is a later issue.)

Anything else (no credentials, no password, unscoped user without ``application``, a certificate together with
Basic credentials — §17 row 14.6) is refused: ``None``. Drogue rendered a scoped user name reversed when
``?application=`` was given (§14.5); Kedge passes the user name as the device sent it (§17 fix).
"""

from __future__ import annotations

import binascii
from base64 import b64decode
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import unquote

from schemas.auth import CertCredential, Credential, PassCredential, UserCredential

__all__ = ["Login", "http_login", "parse_basic"]


@dataclass(frozen=True, slots=True)
class Login:
    """What to ask the authenticator: ``authenticate(app, device, credential)``."""

    app: str
    device: str
    credential: Credential


def parse_basic(authorization: str) -> tuple[str, str | None] | None:
    """``Basic base64(user[:password])`` -> ``(user, password or None)``; None when not Basic or malformed."""
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = b64decode(token.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    user, sep, password = decoded.partition(":")
    return user, (password if sep else None)


def _scoped(username: str) -> tuple[str, str] | None:
    """``<name>@<scope>`` split at the first ``@`` -> (percent-decoded name, scope)."""
    name, sep, scope = username.partition("@")
    if not sep:
        return None
    return unquote(name, errors="strict"), scope


def http_login(
    authorization: str | None,
    application: str | None,
    device: str | None,
    client_certs: Sequence[bytes] | None = None,
) -> Login | None:
    """The login of an HTTP request, or None when its credentials fit none of the accepted forms."""
    if authorization is not None:
        if client_certs:
            return None
        basic = parse_basic(authorization)
        if basic is None:
            return None
        username, password = basic
        if password is None:
            return None
        try:
            scoped = _scoped(username)
        except UnicodeDecodeError:
            return None
        if application is None and device is None:
            return None if scoped is None else Login(scoped[1], scoped[0], PassCredential(password))
        if application is not None and device is None:
            return Login(application, username, PassCredential(password))
        if application is None and device is not None:
            if scoped is None:
                return None
            return Login(scoped[1], device, UserCredential(scoped[0], password))
        assert application is not None and device is not None
        return Login(application, device, UserCredential(username, password))
    if client_certs and application is None and device is None:
        return Login("", "", CertCredential(tuple(client_certs)))
    return None
