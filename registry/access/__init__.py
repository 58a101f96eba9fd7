"""Users and access: access tokens, JWTs (own issuer or OIDC), the authentication dependency, authorization.

Wiring on the API host (``kedge/apihost.py``)::

    access = Access.create(engine, AccessConfig(data_dir=..., oidc_issuer=..., ...))
    http.install(app, access)
    for router in routes.routers():
        app.include_router(router)

Registry routes take ``identity: CurrentIdentity`` and check ``authorize(...)``; the integrations call
``access.authenticate_api_key`` / ``access.authenticate_jwt`` (or :func:`http.identify` for HTTP-style input).
"""

from registry.access.authz import Permission, Role, authorize, members_from_column, members_to_column
from registry.access.errors import AccessUnavailable, AuthenticationFailed
from registry.access.http import CurrentIdentity, current_identity, identify, install
from registry.access.identity import ADMIN_ROLE, ANONYMOUS, Identity
from registry.access.routes import routers
from registry.access.service import Access, AccessConfig

__all__ = [
    "ADMIN_ROLE",
    "ANONYMOUS",
    "Access",
    "AccessConfig",
    "AccessUnavailable",
    "AuthenticationFailed",
    "CurrentIdentity",
    "Identity",
    "Permission",
    "Role",
    "authorize",
    "current_identity",
    "identify",
    "install",
    "members_from_column",
    "members_to_column",
    "routers",
]
