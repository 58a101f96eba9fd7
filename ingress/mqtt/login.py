"""Which device an MQTT CONNECT logs in as (reference §5, ``authenticate_mqtt``). Pure; no I/O.

| username | password | client id | login |
|---|---|---|---|
| ``<device>@<app>`` | set | any | ``pass`` for ``<device>`` (percent-decoded) of ``<app>`` |
| ``<user>`` (no ``@``) | set | ``<device>@<app>`` | ``user`` ``<user>`` for ``<device>`` of ``<app>`` |
| none | none | any | TLS client certificate (``cert``; the TLS listener is not built yet: refused) |

The username is split at its first ``@``. Anything else (no password, a certificate together with a password,
§17 row 14.6) is refused: ``None`` (the CONNACK then says "bad user name or password").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import unquote

from schemas.auth import CertCredential, Credential, PassCredential, UserCredential

__all__ = ["MqttLogin", "mqtt_login"]


@dataclass(frozen=True, slots=True)
class MqttLogin:
    """What to ask the authenticator: ``authenticate(app, device, credential)``."""

    app: str
    device: str
    credential: Credential


def _split(name: str) -> tuple[str, str] | None:
    device, sep, app = name.partition("@")
    if not sep or not device or not app:
        return None
    try:
        return unquote(device, errors="strict"), app
    except UnicodeDecodeError:
        return None


def mqtt_login(
    username: str | None,
    password: bytes | None,
    client_id: str,
    client_certs: Sequence[bytes] | None = None,
) -> MqttLogin | None:
    """The login of a CONNECT, or None when its credentials fit none of the accepted forms."""
    if username is None and password is None:
        if client_certs:
            return MqttLogin("", "", CertCredential(tuple(client_certs)))
        return None
    if client_certs or username is None or password is None:
        return None
    try:
        secret = password.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if "@" in username:
        scoped = _split(username)
        return None if scoped is None else MqttLogin(scoped[1], scoped[0], PassCredential(secret))
    target = _split(client_id)
    if target is None:
        return None
    return MqttLogin(target[1], target[0], UserCredential(username, secret))
