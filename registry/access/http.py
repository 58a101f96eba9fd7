"""The FastAPI side of access: the one authentication dependency and its wiring.

Every API route takes ``identity: CurrentIdentity`` (``Depends(current_identity)``). :func:`install` puts the
:class:`~registry.access.service.Access` on the app (``app.state.access``); errors are
:class:`registry.errors.RegistryError` subclasses (rendered by the API host's handler,
``registry.api.errors.install``): 400 for several credentials, 403 ``AuthenticationError`` for wrong ones,
503 when the back end cannot be asked.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Annotated

from fastapi import Depends, FastAPI
from starlette.requests import HTTPConnection

from registry.access.authz import Permission
from registry.access.credentials import parse_http_credentials
from registry.access.errors import AuthenticationFailed
from registry.access.identity import ANONYMOUS, Identity
from registry.access.service import Access
from registry.access.store import AppAccess
from registry.errors import NotFound

__all__ = [
    "CurrentIdentity",
    "current_identity",
    "get_access",
    "identify",
    "install",
    "require_app",
    "require_user",
]


def install(app: FastAPI, access: Access) -> None:
    """Make ``access`` the one the dependencies of this app use."""
    app.state.access = access


def get_access(conn: HTTPConnection) -> Access:
    access = getattr(conn.app.state, "access", None)
    if not isinstance(access, Access):
        raise RuntimeError("registry.access.http.install(app, access) was not called")
    return access


async def identify(access: Access, authorization: Sequence[str], query: Callable[[str], Sequence[str]]) -> Identity:
    """The identity of a request from its ``Authorization`` headers and query parameters (see
    :mod:`registry.access.credentials`); usable outside FastAPI (the WebSocket integration)."""
    credential = parse_http_credentials(authorization, query)
    if credential is None:
        return ANONYMOUS
    return await access.authenticate(credential)


async def current_identity(conn: HTTPConnection) -> Identity:
    """FastAPI dependency (HTTP and WebSocket routes): the caller, or :data:`ANONYMOUS`."""
    return await identify(get_access(conn), conn.headers.getlist("authorization"), conn.query_params.getlist)


#: the parameter type every route uses: ``identity: CurrentIdentity``
CurrentIdentity = Annotated[Identity, Depends(current_identity)]


def require_user(identity: Identity) -> Identity:
    """Refuse anonymous callers (403)."""
    if identity.anonymous:
        raise AuthenticationFailed("Authentication required")
    return identity


async def require_app(access: Access, app: str, identity: Identity, permission: Permission) -> AppAccess:
    """The access data of ``app`` if ``identity`` has ``permission`` on it; 404 if absent, else 403."""
    found = await access.store.app_access(app)
    if found is None:
        raise NotFound(f"Application {app!r} not found")
    if not access.allowed(found, identity, permission):
        raise AuthenticationFailed(f"Not authorized: {permission.value} on application {app!r}")
    return found
