"""Device authentication: the contract between the endpoints (ingress) and the registry (reference §5, §7.1, §9).

Endpoints never import the registry. ``kedge`` wires an implementation of :class:`DeviceAuthenticator` into
each endpoint: the registry's in-process authenticator (same database, with its verification cache) or a
client of the API host's ``POST /api/v1/auth``. Outcomes map to protocol codes only at the edge:

| outcome | MQTT 3.1.1 CONNACK | MQTT 5 CONNACK | HTTP |
|---|---|---|---|
| ``FAIL`` | 4 bad username or password | 0x86 bad user name or password | 403 |
| ``DISABLED`` | 5 not authorized | 0x87 not authorized | 403 |
| :class:`AuthUnavailable` raised | 3 server unavailable | 0x88 server unavailable | 503 |
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

__all__ = [
    "AuthOutcome",
    "AuthResult",
    "AuthUnavailable",
    "CertCredential",
    "Credential",
    "DeviceAuthenticator",
    "DeviceIdentity",
    "PassCredential",
    "UserCredential",
]


class AuthUnavailable(Exception):
    """The registry could not be asked (database or API down). Fail closed: the device is refused."""


class AuthOutcome(StrEnum):
    PASS = "pass"
    #: unknown app/device, wrong secret, unsupported combination (no user enumeration: one outcome for all)
    FAIL = "fail"
    #: credentials are right but the app or device is disabled (``spec.core.disabled``) (§17 row 14.7)
    DISABLED = "disabled"


@dataclass(frozen=True, slots=True)
class PassCredential:
    """``<device>@<app>`` + password (or ``<device>`` + ``?application=``)."""

    password: str


@dataclass(frozen=True, slots=True)
class UserCredential:
    """A ``user`` credential: username + password, the device named separately (client id or ``?device=``)."""

    username: str
    password: str


@dataclass(frozen=True, slots=True)
class CertCredential:
    """A verified-by-TLS client certificate chain, leaf first, DER bytes."""

    chain: tuple[bytes, ...]


Credential = PassCredential | UserCredential | CertCredential


@dataclass(frozen=True, slots=True)
class DeviceIdentity:
    """An authenticated device as the endpoints need it.

    ``app``/``device`` are the resolved *names* (a login by alias resolves to the real name). ``mqtt_dialect``
    is the effective ``spec.mqtt.dialect`` object (device first, else app; None means ``drogue/v1``).
    ``topic_ready`` is the app's ``KafkaReady`` condition (the §1.1 publish gate).
    """

    app: str
    app_uid: str
    device: str
    device_uid: str
    mqtt_dialect: dict[str, Any] | None = None
    topic_ready: bool = True
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class AuthResult:
    outcome: AuthOutcome
    identity: DeviceIdentity | None = None

    @property
    def ok(self) -> bool:
        return self.outcome is AuthOutcome.PASS and self.identity is not None


class DeviceAuthenticator(Protocol):
    """What an endpoint asks of the registry. Both calls raise :class:`AuthUnavailable` on back-end failure."""

    async def authenticate(self, app: str, device: str, credential: Credential) -> AuthResult:
        """Authenticate ``device`` of ``app`` (either may be an alias) with ``credential``."""
        ...

    async def authorize_as(self, gateway: DeviceIdentity, as_device: str) -> AuthResult:
        """May ``gateway`` publish on behalf of ``as_device`` (its ``spec.gatewaySelector.matchNames``)?

        PASS carries the identity of ``as_device``; FAIL when it does not exist or does not list the gateway.
        """
        ...
