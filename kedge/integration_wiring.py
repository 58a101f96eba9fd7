"""Wiring of the integrations: adapters over the registry, which ``integrations`` may not import.

* :class:`AccessAdapter` — :class:`integrations.auth.UserAccess` over ``registry.access.Access``;
* :class:`RegistryDirectory` — :class:`integrations.commands.model.DeviceDirectory` over
  ``registry.store.Registry``;
* :func:`command_api` — the command API's parts for the API host; :func:`run_ws_integration` — the
  `kedge serve ws-integration` process.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from integrations.auth import AuthError, AuthUnavailable, Caller, Permission
from integrations.commands.api import CommandApi
from integrations.commands.bus import CommandBus
from integrations.commands.model import CommandTargets
from kedge.settings import Settings
from registry import resources as res
from registry.access import Access, AccessConfig, Identity
from registry.access import Permission as RegistryPermission
from registry.access.credentials import JwtCredential
from registry.access.http import identify
from registry.errors import NotFound, RegistryError
from registry.store import Registry


def access_config(settings: Settings) -> AccessConfig:
    """The access configuration, as the API host builds it (kedge/apihost.py)."""
    return AccessConfig(
        data_dir=settings.data_dir,
        oidc_issuer=settings.api.oidc_issuer,
        oidc_audience=settings.api.oidc_audience,
        jwt_ttl_s=settings.api.jwt_ttl_s,
        anonymous_write=settings.registry.anonymous_write,
    )


def _translate(e: RegistryError) -> Exception:
    if e.status >= 500:
        return AuthUnavailable(e.message)
    return AuthError(e.status, e.message)


class AccessAdapter:
    """``integrations.auth.UserAccess`` over the registry's :class:`Access`."""

    def __init__(self, access: Access) -> None:
        self.access = access

    async def identify(self, authorization: Sequence[str], query: Callable[[str], Sequence[str]]) -> Caller:
        try:
            return await identify(self.access, authorization, query)
        except RegistryError as e:
            raise _translate(e) from e

    async def authenticate_jwt(self, token: str) -> Caller:
        try:
            return await self.access.authenticate(JwtCredential(token))
        except RegistryError as e:
            raise _translate(e) from e

    async def may(self, app: str, caller: Caller, permission: Permission) -> bool | None:
        assert isinstance(caller, Identity)
        try:
            return await self.access.may(app, caller, RegistryPermission(permission))
        except RegistryError as e:
            raise _translate(e) from e


def _live(row: dict[str, Any]) -> bool:
    return row.get("deletion_timestamp") is None


class RegistryDirectory:
    """``DeviceDirectory`` over the registry store: the device, its app and its enabled gateways."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry

    async def _device(self, app: str, name: str) -> dict[str, Any] | None:
        try:
            row = await self.registry.get_device(app, name)
        except NotFound:
            return None
        return row if _live(row) else None

    async def command_targets(self, app: str, device: str) -> CommandTargets | None:
        try:
            app_row = await self.registry.get_app(app)
        except NotFound:
            return None
        row = await self._device(app, device) if _live(app_row) else None
        if row is None:
            return None
        selector = row["spec"].get("gatewaySelector")
        names = selector.get("matchNames") if isinstance(selector, dict) else None
        gateways: list[str] = []
        for name in names if isinstance(names, list) else []:
            if not isinstance(name, str) or name == device or name in gateways:
                continue
            gateway = await self._device(app, name)
            if gateway is not None and not res.disabled(gateway["spec"]):
                gateways.append(name)
        return CommandTargets(app_disabled=res.disabled(app_row["spec"]),
                              device_disabled=res.disabled(row["spec"]), gateways=tuple(gateways))


def command_api(settings: Settings, access: Access, registry: Registry) -> CommandApi:
    """The command API's parts on the API host (its own instance id for ``?wait=`` outcomes)."""
    return CommandApi(AccessAdapter(access), RegistryDirectory(registry), CommandBus(settings.kafka))


def run_ws_integration(settings: Settings, on_ready: Callable[[str, int], None] | None = None) -> None:
    """`kedge serve ws-integration`: the WebSocket integration on the registry database, until SIGTERM."""
    import asyncio

    from integrations.ws.server import WsIntegration
    from registry.db import create_engine

    async def main() -> None:
        engine = create_engine(settings.registry_database_url)
        try:
            access = Access.create(engine, access_config(settings))
            server = WsIntegration(AccessAdapter(access), settings.integration, settings.kafka)
            await server.serve(on_ready)
        finally:
            await engine.dispose()

    asyncio.run(main())
