"""The in-process device authenticator (implements :class:`schemas.auth.DeviceAuthenticator`).

Rules (reference §5 "Server-side rules", §17 row 14.7 fixed): the application is found by name (for client
certificates also by trust-anchor subject), the device by name, then ``spec.alias[]``, then the username of a
``unique`` user credential. A deleting app or device fails; a disabled one (``spec.core.disabled``) answers
DISABLED once the credential is right. Database trouble raises :class:`AuthUnavailable` (fail closed).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from pydantic import ValidationError
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from registry import metrics
from registry import resources as res
from registry.authn import certs, passwords
from registry.authn.cache import VerificationCache, cache_key
from registry.tables import apps, device_aliases, devices
from schemas.auth import (
    AuthOutcome,
    AuthResult,
    AuthUnavailable,
    CertCredential,
    Credential,
    DeviceIdentity,
    PassCredential,
    UserCredential,
)
from schemas.registry import CredentialsSection, RegistryChange
from schemas.registry import PassCredential as PassEntry
from schemas.registry import UserCredential as UserEntry

Row = dict[str, Any]
FAIL = AuthResult(AuthOutcome.FAIL)


@dataclass(frozen=True, slots=True)
class Resolved:
    """An authentication outcome with the rows it was decided on (for the HTTP API's full answer)."""

    result: AuthResult
    app: Row | None = None
    device: Row | None = None


def _credentials(spec: Mapping[str, Any]) -> list[Any]:
    try:
        return CredentialsSection.model_validate(spec.get("credentials") or {}).credentials
    except ValidationError:
        return []


async def credential_matches(spec: Mapping[str, Any], presented: str, name: str,
                             credential: Credential) -> bool:
    """Does ``credential`` match one of the device's ``spec.credentials`` (``presented`` = the id used)?"""
    for entry in _credentials(spec):
        if isinstance(credential, PassCredential):
            if isinstance(entry, PassEntry):
                ok = await passwords.verify(entry.pass_, credential.password)
            elif isinstance(entry, UserEntry) and entry.user.username == (
                presented if entry.user.unique else name
            ):
                ok = await passwords.verify(entry.user.password, credential.password)
            else:
                continue
        elif isinstance(credential, UserCredential):
            if isinstance(entry, PassEntry) and credential.username == name:
                ok = await passwords.verify(entry.pass_, credential.password)
            elif isinstance(entry, UserEntry) and entry.user.username == credential.username:
                ok = await passwords.verify(entry.user.password, credential.password)
            else:
                continue
        else:
            return False
        if ok:
            return True
    return False


def _topic_ready(app: Row) -> bool:
    """The §1.1 gate: False only while the app carries a ``KafkaReady`` condition that is not ``True``."""
    conditions = app["status"].get("conditions") if isinstance(app["status"], dict) else None
    for c in conditions if isinstance(conditions, list) else []:
        if isinstance(c, dict) and c.get("type") == "KafkaReady":
            return c.get("status") == "True"
    return True


def _dialect(device: Row, app: Row) -> dict[str, Any] | None:
    for spec in (device["spec"], app["spec"]):
        mqtt = spec.get("mqtt")
        if isinstance(mqtt, dict) and isinstance(mqtt.get("dialect"), dict):
            return dict(mqtt["dialect"])
    return None


def identity_of(app: Row, device: Row) -> DeviceIdentity:
    return DeviceIdentity(app=app["name"], app_uid=app["uid"], device=device["name"],
                          device_uid=device["uid"], mqtt_dialect=_dialect(device, app),
                          topic_ready=_topic_ready(app))


def _usable(app: Row, device: Row) -> AuthResult:
    if app["deletion_timestamp"] is not None or device["deletion_timestamp"] is not None:
        return FAIL
    if res.disabled(app["spec"]) or res.disabled(device["spec"]):
        return AuthResult(AuthOutcome.DISABLED, identity_of(app, device))
    return AuthResult(AuthOutcome.PASS, identity_of(app, device))


async def _app(conn: AsyncConnection, name: str) -> Row | None:
    row = (await conn.execute(sa.select(apps).where(apps.c.name == name))).mappings().first()
    return None if row is None else dict(row)


async def _device(conn: AsyncConnection, app: str, name: str) -> Row | None:
    """By name, then by alias (``spec.alias``), then by unique username."""
    by_name = sa.select(devices).where(devices.c.app == app, devices.c.name == name)
    row = (await conn.execute(by_name)).mappings().first()
    if row is None:
        query = (sa.select(devices).join(device_aliases, sa.and_(device_aliases.c.app == devices.c.app,
                                                                 device_aliases.c.device == devices.c.name))
                 .where(device_aliases.c.app == app, device_aliases.c.alias == name)
                 .order_by(device_aliases.c.kind).limit(1))
        row = (await conn.execute(query)).mappings().first()
    return None if row is None else dict(row)


async def _app_by_anchor(conn: AsyncConnection, issuer: str) -> Row | None:
    for row in (await conn.execute(sa.select(apps).order_by(apps.c.name))).mappings():
        if any(certs.dn_string(a.subject) == issuer for a in certs.trust_anchors(row["spec"])):
            return dict(row)
    return None


def _key(app: str, device: str, credential: Credential) -> bytes:
    if isinstance(credential, PassCredential):
        return cache_key(app, device, "pass", "", credential.password)
    if isinstance(credential, UserCredential):
        return cache_key(app, device, "user", credential.username, credential.password)
    chain = hashlib.blake2b(b"".join(len(c).to_bytes(4, "big") + c for c in credential.chain)).hexdigest()
    return cache_key(app, device, "cert", "", chain)


class RegistryAuthenticator:
    """Device authentication against the registry database, with a :class:`VerificationCache`."""

    def __init__(self, engine: AsyncEngine, *, cache_size: int = 100_000, cache_ttl_s: float = 300.0) -> None:
        self.engine = engine
        self.cache = VerificationCache(cache_size, cache_ttl_s)

    async def authenticate(self, app: str, device: str, credential: Credential) -> AuthResult:
        key = _key(app, device, credential)
        cached = self.cache.get(key)
        if cached is not None:
            metrics.DEVICE_AUTH.labels(cached.outcome.value, "true").inc()
            return cached
        resolved = await self.resolve(app, device, credential)
        result = resolved.result
        metrics.DEVICE_AUTH.labels(result.outcome.value, "false").inc()
        if result.outcome is not AuthOutcome.FAIL and result.identity is not None:
            self.cache.put(key, result, result.identity.app, result.identity.device, presented=device)
        return result

    async def resolve(self, app: str, device: str, credential: Credential) -> Resolved:
        """Authenticate without the cache, returning the app and device rows too."""
        try:
            async with self.engine.connect() as conn:
                return await self._resolve(conn, app, device, credential)
        except (SQLAlchemyError, OSError) as exc:
            raise AuthUnavailable(f"registry database unavailable: {exc}") from exc

    async def _resolve(self, conn: AsyncConnection, app: str, device: str,
                       credential: Credential) -> Resolved:
        if isinstance(credential, CertCredential):
            return await self._resolve_cert(conn, app, device, credential)
        app_row = await _app(conn, app)
        if app_row is None:
            return Resolved(FAIL)
        dev_row = await _device(conn, app_row["name"], device)
        if dev_row is None:
            return Resolved(FAIL)
        if not await credential_matches(dev_row["spec"], device, dev_row["name"], credential):
            return Resolved(FAIL)
        return Resolved(_usable(app_row, dev_row), app_row, dev_row)

    async def _resolve_cert(self, conn: AsyncConnection, app: str, device: str,
                            credential: CertCredential) -> Resolved:
        chain = certs.load_chain(credential.chain)
        if not chain:
            return Resolved(FAIL)
        app_row = await _app(conn, app) or await _app_by_anchor(conn, certs.dn_string(chain[-1].issuer))
        if app_row is None or not certs.verify_chain(chain, certs.trust_anchors(app_row["spec"])):
            return Resolved(FAIL)
        dev_row = await _device(conn, app_row["name"], device or certs.dn_string(chain[0].subject))
        if dev_row is None:
            return Resolved(FAIL)
        return Resolved(_usable(app_row, dev_row), app_row, dev_row)

    async def authorize_as(self, gateway: DeviceIdentity, as_device: str) -> AuthResult:
        return (await self.resolve_as(gateway.app, gateway.device, as_device)).result

    async def resolve_as(self, app: str, gateway: str, as_device: str) -> Resolved:
        """May device ``gateway`` of ``app`` act for ``as_device`` (its ``gatewaySelector.matchNames``)?"""
        try:
            async with self.engine.connect() as conn:
                app_row = await _app(conn, app)
                if app_row is None:
                    return Resolved(FAIL)
                target = await _device(conn, app_row["name"], as_device)
        except (SQLAlchemyError, OSError) as exc:
            raise AuthUnavailable(f"registry database unavailable: {exc}") from exc
        if target is None:
            return Resolved(FAIL)
        selector = target["spec"].get("gatewaySelector")
        names = selector.get("matchNames") if isinstance(selector, dict) else None
        if not isinstance(names, list) or gateway not in names:
            return Resolved(FAIL)
        return Resolved(_usable(app_row, target), app_row, target)

    def invalidate(self, change: RegistryChange) -> None:
        """Forget cached verifications the change may have made wrong (the device's, or the whole app's)."""
        self.cache.invalidate(change.app, change.device)

    async def load(self, app: str, device: str) -> tuple[Row | None, Row | None]:
        """The app and device rows by their resolved names (for answers built after a cache hit)."""
        try:
            async with self.engine.connect() as conn:
                app_row = await _app(conn, app)
                dev_row = None if app_row is None else await _device(conn, app, device)
        except (SQLAlchemyError, OSError) as exc:
            raise AuthUnavailable(f"registry database unavailable: {exc}") from exc
        return app_row, dev_row

    def clear(self) -> None:
        """Forget every cached verification."""
        self.cache.clear()

    def invalidate_all(self, changes: list[RegistryChange]) -> None:
        for change in changes:
            self.invalidate(change)
