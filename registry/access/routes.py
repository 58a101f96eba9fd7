"""REST routes of the access API (reference §8.1 admin paths, §9 tokens). Wiring: :func:`routers`.

| route | who |
|---|---|
| ``GET|POST /api/tokens/v1alpha1`` (``?description=``), ``DELETE /api/tokens/v1alpha1/{prefix}`` | any user |
| ``POST /api/token`` (local issuer only) | anyone with a local user's password |
| ``GET /.well-known/openid-configuration``, ``GET /.well-known/jwks.json`` (local issuer only) | anyone |
| ``GET /api/user/v1alpha1/whoami`` (also ``/api/admin/v1alpha1/user/whoami``) | anyone |
| ``GET|POST /api/admin/v1alpha1/users``, ``GET|DELETE …/users/{username}`` | global admin |
| ``GET|PUT /api/admin/v1alpha1/apps/{app}/members`` | Admin on the app |
| ``GET|PUT|DELETE …/apps/{app}/transfer-ownership`` | owner |
| ``PUT …/apps/{app}/accept-ownership`` | the new owner |
"""

from __future__ import annotations

import secrets
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from registry.access.authz import Permission, Role, members_to_column
from registry.access.bodies import MembersIn, TokenRequest, TransferIn, UserIn, parse_body, parse_token_request
from registry.access.errors import AuthenticationFailed
from registry.access.http import CurrentIdentity, get_access, require_app, require_user
from registry.access.identity import Identity
from registry.errors import NotFound

__all__ = ["routers"]

TOKENS = "/api/tokens/v1alpha1"
ADMIN = "/api/admin/v1alpha1"

tokens_router = APIRouter(tags=["access tokens"])
issuer_router = APIRouter(tags=["identity provider"])
admin_router = APIRouter(tags=["users and members"])


def _body(model: type[BaseModel], *types: str) -> dict[str, Any]:
    """OpenAPI request body of a route that validates its body itself (for Drogue-style 400 messages)."""
    schema = model.model_json_schema(by_alias=True, ref_template="#/components/schemas/{model}")
    schema.pop("$defs", None)
    content = {t: {"schema": schema} for t in (types or ("application/json",))}
    return {"requestBody": {"required": True, "content": content}}


_MEMBERS_DOC = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "resourceVersion": {"type": "string"},
                        "members": {
                            "type": "object",
                            "additionalProperties": {
                                "type": "object",
                                "properties": {"role": {"enum": [r.value for r in Role]}},
                                "required": ["role"],
                            },
                        },
                    },
                }
            }
        },
    }
}


def routers() -> list[APIRouter]:
    """Every access router, to ``app.include_router`` on the API host (after :func:`http.install`)."""
    return [tokens_router, issuer_router, admin_router]


# --------------------------------------------------------------------------------------------- tokens


@tokens_router.get(TOKENS)
async def list_tokens(request: Request, identity: CurrentIdentity) -> list[dict[str, Any]]:
    user = require_user(identity)
    assert user.user_id is not None
    return [t.to_json() for t in await get_access(request).store.list_tokens(user.user_id)]


@tokens_router.post(TOKENS, status_code=201)
async def create_token(
    request: Request, identity: CurrentIdentity, description: Annotated[str | None, Query(max_length=1024)] = None
) -> JSONResponse:
    """A new access token: the full ``token`` is in this response only (Drogue's field name, §17)."""
    user = require_user(identity)
    assert user.user_id is not None
    created = await get_access(request).store.create_token(user.user_id, user.username or user.user_id, description)
    body = {"prefix": created.prefix, "token": created.token}
    return JSONResponse(body, status_code=201, headers={"Cache-Control": "no-store"})


@tokens_router.delete(TOKENS + "/{prefix}", status_code=204)
async def delete_token(prefix: str, request: Request, identity: CurrentIdentity) -> Response:
    user = require_user(identity)
    assert user.user_id is not None
    await get_access(request).store.delete_token(user.user_id, prefix)
    return Response(status_code=204)


# ------------------------------------------------------------------------------------ local issuer


@issuer_router.post(
    "/api/token", openapi_extra=_body(TokenRequest, "application/x-www-form-urlencoded", "application/json")
)
async def token_exchange(request: Request) -> JSONResponse:
    """OAuth2 password grant: ``username``, ``password``, optional ``expires_in`` (seconds), form or JSON.

    Answer: ``{"access_token": <JWT>, "token_type": "Bearer", "expires_in": n, "exp": <epoch s>}``.
    """
    body = await parse_token_request(request)
    access = get_access(request)
    issued = await access.issue_jwt(body.username, body.password, body.expires_in)
    payload = {
        "access_token": issued.token,
        "token_type": "Bearer",
        "expires_in": issued.expires_in,
        "exp": issued.exp,
    }
    return JSONResponse(payload, headers={"Cache-Control": "no-store"})


@issuer_router.get("/.well-known/openid-configuration")
async def openid_configuration(request: Request) -> dict[str, Any]:
    access = get_access(request)
    if access.issuer is None:
        raise NotFound("Kedge is not the token issuer here")
    base = str(request.base_url).rstrip("/")
    return {
        "issuer": access.issuer.issuer,
        "jwks_uri": base + "/.well-known/jwks.json",
        "token_endpoint": base + "/api/token",
        "grant_types_supported": ["password"],
        "id_token_signing_alg_values_supported": ["RS256"],
    }


@issuer_router.get("/.well-known/jwks.json")
async def jwks(request: Request) -> dict[str, Any]:
    access = get_access(request)
    if access.issuer is None:
        raise NotFound("Kedge is not the token issuer here")
    return access.issuer.jwks()


# --------------------------------------------------------------------------------------------- whoami


@admin_router.get("/api/user/v1alpha1/whoami")
@admin_router.get(ADMIN + "/user/whoami")
async def whoami(identity: CurrentIdentity) -> dict[str, Any]:
    return identity.to_json()


# ---------------------------------------------------------------------------------------------- users


def _require_admin(identity: Identity) -> None:
    if not identity.is_admin:
        raise AuthenticationFailed("Only a global admin (role drogue-admin) may manage users")


@admin_router.get(ADMIN + "/users")
async def list_users(request: Request, identity: CurrentIdentity) -> list[dict[str, Any]]:
    _require_admin(identity)
    return [u.to_json() for u in await get_access(request).store.list_users()]


@admin_router.post(ADMIN + "/users", status_code=201, openapi_extra=_body(UserIn))
async def create_user(request: Request, identity: CurrentIdentity) -> dict[str, Any]:
    """Create a local user; without ``password`` one is generated and returned (only here)."""
    _require_admin(identity)
    body = await parse_body(request, UserIn)
    password = body.password or secrets.token_urlsafe(18)
    user = await get_access(request).store.create_user(body.username, password, frozenset(body.roles))
    out = user.to_json()
    if body.password is None:
        out["password"] = password
    return out


@admin_router.get(ADMIN + "/users/{username}")
async def get_user(username: str, request: Request, identity: CurrentIdentity) -> dict[str, Any]:
    _require_admin(identity)
    user = await get_access(request).store.user_by_name(username)
    if user is None:
        raise NotFound(f"User {username!r} not found")
    return user.to_json()


@admin_router.delete(ADMIN + "/users/{username}", status_code=204)
async def delete_user(username: str, request: Request, identity: CurrentIdentity) -> Response:
    _require_admin(identity)
    if not await get_access(request).store.delete_user(username):
        raise NotFound(f"User {username!r} not found")
    return Response(status_code=204)


# -------------------------------------------------------------------------------------------- members


@admin_router.get(ADMIN + "/apps/{app}/members")
async def get_members(app: str, request: Request, identity: CurrentIdentity) -> dict[str, Any]:
    found = await require_app(get_access(request), app, identity, Permission.ADMIN)
    return {"resourceVersion": found.resource_version, "members": members_to_column(found.members)}


@admin_router.put(ADMIN + "/apps/{app}/members", status_code=204, openapi_extra=_MEMBERS_DOC)
async def put_members(app: str, request: Request, identity: CurrentIdentity) -> Response:
    """Replace the members; a non-empty ``resourceVersion`` must be the app's current one (else 409)."""
    access = get_access(request)
    body = await parse_body(request, MembersIn)
    await require_app(access, app, identity, Permission.ADMIN)
    members: dict[str, Role] = {user: m.role for user, m in body.members.items()}
    await access.store.update_app_access(app, expected_resource_version=body.resource_version, members=members)
    return Response(status_code=204)


# ----------------------------------------------------------------------------------- ownership transfer


@admin_router.get(ADMIN + "/apps/{app}/transfer-ownership")
async def get_transfer(app: str, request: Request, identity: CurrentIdentity) -> Response:
    found = await require_app(get_access(request), app, identity, Permission.OWNER)
    if found.transfer_owner is None:
        return Response(status_code=204)
    return JSONResponse({"newUser": found.transfer_owner})


@admin_router.put(ADMIN + "/apps/{app}/transfer-ownership", status_code=204, openapi_extra=_body(TransferIn))
async def start_transfer(app: str, request: Request, identity: CurrentIdentity) -> Response:
    """Offer the app to ``newUser`` (a user id, or the name of a local user); it becomes owner on accept."""
    access = get_access(request)
    body = await parse_body(request, TransferIn)
    await require_app(access, app, identity, Permission.OWNER)
    local = await access.store.user_by_name(body.new_user)
    await access.store.update_app_access(app, transfer_owner=local.id if local else body.new_user)
    return Response(status_code=204)


@admin_router.delete(ADMIN + "/apps/{app}/transfer-ownership", status_code=204)
async def cancel_transfer(app: str, request: Request, identity: CurrentIdentity) -> Response:
    access = get_access(request)
    await require_app(access, app, identity, Permission.OWNER)
    await access.store.update_app_access(app, transfer_owner=None)
    return Response(status_code=204)


@admin_router.put(ADMIN + "/apps/{app}/accept-ownership", status_code=204)
async def accept_transfer(app: str, request: Request, identity: CurrentIdentity) -> Response:
    access = get_access(request)
    user = require_user(identity)
    found = await access.store.app_access(app)
    if found is None:
        raise NotFound(f"Application {app!r} not found")
    if found.transfer_owner is None or found.transfer_owner != user.user_id:
        raise AuthenticationFailed(f"No ownership transfer of {app!r} to this user is pending")
    await access.store.update_app_access(app, owner=user.user_id, transfer_owner=None)
    return Response(status_code=204)
