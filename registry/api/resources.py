"""``/api/registry/v1alpha1``: applications and devices (reference §8.1), with the §9 permission checks.

The :class:`registry.store.Registry` is taken from ``app.state.registry`` (see :func:`install`).
Denials: application routes answer 403, device routes 404 (Drogue hides devices of apps one cannot see).
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Body, Depends, FastAPI, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import HTTPConnection

from registry import resources as res
from registry.access import CurrentIdentity, Identity, Permission, authorize, members_from_column
from registry.access.errors import AuthenticationFailed
from registry.access.http import get_access
from registry.errors import BadRequest, NotFound, RegistryError
from registry.selectors import SelectorError, parse_many
from registry.store import Guard, Preconditions, Registry, Row
from schemas.registry import ApplicationIn, DeviceIn

BASE = "/api/registry/v1alpha1"
router = APIRouter(prefix=BASE, tags=["registry"])


def install(app: FastAPI, registry: Registry) -> None:
    app.state.registry = registry


def get_registry(conn: HTTPConnection) -> Registry:
    registry = getattr(conn.app.state, "registry", None)
    if not isinstance(registry, Registry):
        raise RuntimeError("registry.api.resources.install(app, registry) was not called")
    return registry


Reg = Annotated[Registry, Depends(get_registry)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class PreconditionsIn(_Strict):
    uid: str = ""
    resource_version: str = Field(default="", alias="resourceVersion")


class DeleteParams(_Strict):
    """Optional ``DELETE`` body (Drogue's form); query parameters ``uid``/``resourceVersion`` also work."""

    preconditions: PreconditionsIn = Field(default_factory=PreconditionsIn)


def _anonymous_write(request: Request) -> bool:
    return get_access(request).config.anonymous_write


def _guard(request: Request, identity: Identity, permission: Permission, deny: type[RegistryError]) -> Guard:
    anonymous_write = _anonymous_write(request)

    def check(row: Row) -> None:
        if not authorize(row["owner"], members_from_column(row["members"]), identity, permission,
                         anonymous_write=anonymous_write):
            if deny is NotFound:
                raise NotFound(f"Application {row['name']} not found")
            raise deny(f"Not authorized: {permission.value} on application {row['name']!r}")

    return check


def _preconditions(body: DeleteParams | None, uid: str | None, resource_version: str | None) -> Preconditions:
    pre = body.preconditions if body is not None else PreconditionsIn()
    uids = {v for v in (pre.uid, uid or "") if v}
    versions = {v for v in (pre.resource_version, resource_version or "") if v}
    if len(uids) > 1 or len(versions) > 1:  # body and query disagree: no resource can satisfy both
        raise BadRequest("preconditions in the body and in the query differ")
    return Preconditions(next(iter(uids), ""), next(iter(versions), ""))


def _selector(labels: list[str] | None) -> Any:
    try:
        return parse_many(labels or [])
    except SelectorError as exc:
        raise BadRequest(f"invalid label selector: {exc}") from None


_SELECTOR_HELP = "label selector: k, !k, k=v, k!=v, k in (a,b), k notin (a,b); comma = AND"
Labels = Annotated[list[str] | None, Query(description=_SELECTOR_HELP)]
Limit = Annotated[int | None, Query(ge=0)]
Offset = Annotated[int, Query(ge=0)]
Uid = Annotated[str | None, Query(description="delete precondition")]
Version = Annotated[str | None, Query(alias="resourceVersion", description="delete precondition")]
DeleteBody = Annotated[DeleteParams | None, Body()]


# ------------------------------------------------------------------------------------------------- apps


@router.get("/apps", summary="List applications the caller may read")
async def list_apps(request: Request, registry: Reg, identity: CurrentIdentity, labels: Labels = None,
                    limit: Limit = None, offset: Offset = 0) -> JSONResponse:
    anonymous_write = _anonymous_write(request)

    def visible(row: Row) -> bool:
        return authorize(row["owner"], members_from_column(row["members"]), identity, Permission.READ,
                         anonymous_write=anonymous_write)

    rows = await registry.list_apps(_selector(labels), limit, offset, visible)
    return JSONResponse([res.render(r) for r in rows])


@router.post("/apps", status_code=201, response_class=Response,
             summary="Create an application (the caller becomes its owner)")
async def create_app(request: Request, registry: Reg, identity: CurrentIdentity,
                     body: ApplicationIn) -> Response:
    if identity.anonymous and not _anonymous_write(request):
        raise AuthenticationFailed("Authentication required")
    row = await registry.create_app(body, owner=identity.user_id)
    return Response(status_code=201, headers={"Location": f"{BASE}/apps/{quote(row['name'], safe='')}"})


@router.get("/apps/{app}", summary="Read an application")
async def get_app(request: Request, registry: Reg, identity: CurrentIdentity, app: str) -> JSONResponse:
    row = await registry.get_app(app, _guard(request, identity, Permission.READ, AuthenticationFailed))
    return JSONResponse(res.render(row))


@router.put("/apps/{app}", status_code=204, summary="Update an application")
async def update_app(request: Request, registry: Reg, identity: CurrentIdentity, app: str,
                     body: ApplicationIn) -> Response:
    await registry.update_app(app, body, _guard(request, identity, Permission.WRITE, AuthenticationFailed))
    return Response(status_code=204)


@router.delete("/apps/{app}", status_code=204, summary="Delete an application (soft while finalizers remain)")
async def delete_app(request: Request, registry: Reg, identity: CurrentIdentity, app: str,
                     body: DeleteBody = None, uid: Uid = None, resource_version: Version = None) -> Response:
    pre = _preconditions(body, uid, resource_version)
    await registry.delete_app(app, pre, _guard(request, identity, Permission.ADMIN, AuthenticationFailed))
    return Response(status_code=204)


# ---------------------------------------------------------------------------------------------- devices


@router.get("/apps/{app}/devices", summary="List the devices of an application")
async def list_devices(request: Request, registry: Reg, identity: CurrentIdentity, app: str,
                       labels: Labels = None, limit: Limit = None, offset: Offset = 0) -> JSONResponse:
    guard = _guard(request, identity, Permission.READ, NotFound)
    rows = await registry.list_devices(app, _selector(labels), limit, offset, guard)
    return JSONResponse([res.render(r, app=app) for r in rows])


@router.post("/apps/{app}/devices", status_code=201, response_class=Response, summary="Create a device")
async def create_device(request: Request, registry: Reg, identity: CurrentIdentity, app: str,
                        body: DeviceIn) -> Response:
    row = await registry.create_device(app, body, _guard(request, identity, Permission.WRITE, NotFound))
    location = f"{BASE}/apps/{quote(app, safe='')}/devices/{quote(row['name'], safe='')}"
    return Response(status_code=201, headers={"Location": location})


@router.get("/apps/{app}/devices/{device:path}", summary="Read a device")
async def get_device(request: Request, registry: Reg, identity: CurrentIdentity, app: str,
                     device: str) -> JSONResponse:
    row = await registry.get_device(app, device, _guard(request, identity, Permission.READ, NotFound))
    return JSONResponse(res.render(row, app=app))


@router.put("/apps/{app}/devices/{device:path}", status_code=204, summary="Update a device")
async def update_device(request: Request, registry: Reg, identity: CurrentIdentity, app: str, device: str,
                        body: DeviceIn) -> Response:
    await registry.update_device(app, device, body, _guard(request, identity, Permission.WRITE, NotFound))
    return Response(status_code=204)


@router.delete("/apps/{app}/devices/{device:path}", status_code=204, summary="Delete a device")
async def delete_device(request: Request, registry: Reg, identity: CurrentIdentity, app: str, device: str,
                        body: DeleteBody = None, uid: Uid = None,
                        resource_version: Version = None) -> Response:
    pre = _preconditions(body, uid, resource_version)
    await registry.delete_device(app, device, pre, _guard(request, identity, Permission.WRITE, NotFound))
    return Response(status_code=204)
