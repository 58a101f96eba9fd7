"""The device authentication service over HTTP (reference §9): ``POST /api/v1/auth`` and ``/authorize_as``.

Answers: ``{"outcome": {"pass": {"application": App, "device": Device, "as"?: Device}}}`` or
``{"outcome": "fail"}``; Kedge adds ``{"outcome": {"disabled": {…same…}}}`` for right credentials of a
disabled app/device (§17 row 14.7). Credentials are stripped from the returned device (§8.2). A back end
that cannot be asked answers 503 (``ServiceUnavailable``): fail closed.

Who may ask (Drogue protects this service with service-to-service authentication): a **service user**, i.e. a
caller with the global admin role (``drogue-admin``) or the role :data:`SERVICE_ROLE`, authenticated like any
API call (``Basic <user>:<access token>`` or ``Bearer <jwt>``). No credential -> 401 (with
``WWW-Authenticate``), wrong credentials -> 403, a user without either role -> 403; otherwise the service would
be a password-guessing oracle for every device. ``install(..., anonymous=True)``
(``KEDGE_REGISTRY__DEVICE_AUTH_ANONYMOUS``) restores Drogue-style open access for deployments that fence the
API host off instead.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.requests import HTTPConnection

from registry import resources as res
from registry.access.errors import AuthenticationFailed
from registry.access.http import current_identity
from registry.access.identity import ADMIN_ROLE
from registry.authn.authenticator import RegistryAuthenticator, Row
from schemas import auth
from schemas.registry import (
    AuthenticationRequest,
    AuthorizeAsRequest,
    CertAuthCredential,
    PassAuthCredential,
    UserAuthCredential,
)

__all__ = ["SERVICE_ROLE", "install", "require_service_user", "router"]

#: the role of a service user that may call the device authentication service (besides global admins)
SERVICE_ROLE = "kedge-device-auth"
FAIL = {"outcome": "fail"}


def install(app: FastAPI, authenticator: RegistryAuthenticator, *, anonymous: bool = False) -> None:
    """Serve device authentication with ``authenticator``; ``anonymous`` lets anyone ask (Drogue's exposure)."""
    app.state.device_authenticator = authenticator
    app.state.device_auth_anonymous = anonymous


async def require_service_user(conn: HTTPConnection) -> None:
    """The route dependency: 401 without a credential, 403 for wrong ones or a caller who is no service user."""
    if getattr(conn.app.state, "device_auth_anonymous", False):
        return
    identity = await current_identity(conn)
    if identity.anonymous:
        raise HTTPException(401, "Device authentication needs a service user: authenticate with "
                                 "Basic <user>:<access token> or Bearer <JWT>",
                            headers={"WWW-Authenticate": 'Basic realm="kedge", Bearer realm="kedge"'})
    if not (identity.is_admin or SERVICE_ROLE in identity.roles):
        raise AuthenticationFailed(f"Not authorized: device authentication needs the role {SERVICE_ROLE} "
                                   f"(or {ADMIN_ROLE})")


_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "No credential (a service user is required)"},
    403: {"description": "Wrong credentials, or the caller is no service user"},
}
router = APIRouter(prefix="/api/v1", tags=["device authentication"], dependencies=[Depends(require_service_user)],
                   responses=_ERRORS)


def get_authenticator(conn: HTTPConnection) -> RegistryAuthenticator:
    authn = getattr(conn.app.state, "device_authenticator", None)
    if not isinstance(authn, RegistryAuthenticator):
        raise RuntimeError("registry.api.device_auth.install(app, authenticator) was not called")
    return authn


Authn = Annotated[RegistryAuthenticator, Depends(get_authenticator)]


def _credential(c: PassAuthCredential | UserAuthCredential | CertAuthCredential) -> auth.Credential:
    if isinstance(c, PassAuthCredential):
        return auth.PassCredential(c.pass_)
    if isinstance(c, UserAuthCredential):
        return auth.UserCredential(c.user.username, c.user.password)
    return auth.CertCredential(tuple(bytes(der) for der in c.cert))


def _device_json(row: Row, app: str) -> dict[str, Any]:
    out = res.render(row, app=app)
    spec = out.get("spec")
    if isinstance(spec, dict) and "credentials" in spec:
        stripped = {k: v for k, v in spec.items() if k != "credentials"}
        if stripped:
            out["spec"] = stripped
        else:
            del out["spec"]
    return out


def _unavailable(exc: auth.AuthUnavailable) -> JSONResponse:
    return JSONResponse({"error": "ServiceUnavailable", "message": str(exc)}, status_code=503)


@router.post("/auth", summary="Authenticate a device")
async def authenticate(authn: Authn, body: AuthenticationRequest) -> JSONResponse:
    try:
        result = await authn.authenticate(body.application, body.device, _credential(body.credential))
        if result.identity is None or result.outcome is auth.AuthOutcome.FAIL:
            return JSONResponse(FAIL)
        identity = result.identity
        app_row, dev_row = await authn.load(identity.app, identity.device)
        if app_row is None or dev_row is None:
            return JSONResponse(FAIL)
        answer: dict[str, Any] = {"application": res.render(app_row),
                                  "device": _device_json(dev_row, app_row["name"])}
        if body.as_ is not None:
            gateway = await authn.resolve_as(identity.app, identity.device, body.as_)
            if gateway.device is None or gateway.result.outcome is auth.AuthOutcome.FAIL:
                return JSONResponse(FAIL)
            answer["as"] = _device_json(gateway.device, app_row["name"])
            if gateway.result.outcome is auth.AuthOutcome.DISABLED:
                result = gateway.result  # acting for a disabled device is refused like being one
    except auth.AuthUnavailable as exc:
        return _unavailable(exc)
    return JSONResponse({"outcome": {result.outcome.value: answer}})


@router.post("/authorize_as", summary="May a gateway device act for another device?")
async def authorize_as(authn: Authn, body: AuthorizeAsRequest) -> JSONResponse:
    try:
        resolved = await authn.resolve_as(body.application, body.device, body.as_)
    except auth.AuthUnavailable as exc:
        return _unavailable(exc)
    if resolved.device is None or resolved.app is None or resolved.result.outcome is auth.AuthOutcome.FAIL:
        return JSONResponse(FAIL)
    as_json = _device_json(resolved.device, resolved.app["name"])
    return JSONResponse({"outcome": {resolved.result.outcome.value: {"as": as_json}}})
