"""Who is calling: the result of authentication, shared by the API host and the integrations."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["ADMIN_ROLE", "ANONYMOUS", "Identity", "roles_from_claims"]

#: Drogue's global admin role (``service-api/src/auth/user/mod.rs``)
ADMIN_ROLE = "drogue-admin"
#: clients whose ``resource_access.<client>.roles`` count as roles, as in Drogue (§9)
ROLE_CLIENTS = ("services", "drogue")


@dataclass(frozen=True, slots=True)
class Identity:
    """An authenticated user, or the anonymous caller.

    ``user_id`` is the stable id (JWT ``sub``; local users: their uuid) used for app ``owner`` and
    ``members``; anonymous has ``user_id`` None and is looked up in members under ``""`` (Drogue). ``exp`` is
    the JWT expiry (seconds since the epoch) when the caller presented a JWT, None for access tokens (they do
    not expire) and for anonymous. ``via`` says how: ``"jwt"``, ``"api_key"`` or ``"anonymous"``.
    """

    user_id: str | None
    username: str | None = None
    roles: frozenset[str] = frozenset()
    exp: int | None = None
    via: str = "anonymous"

    @property
    def anonymous(self) -> bool:
        return self.user_id is None

    @property
    def is_admin(self) -> bool:
        return ADMIN_ROLE in self.roles

    def expired(self, now: float) -> bool:
        """True once a JWT identity is past its ``exp`` (never for access tokens or anonymous)."""
        return self.exp is not None and now > self.exp

    def to_json(self) -> dict[str, Any]:
        """The ``whoami`` body."""
        return {
            "id": self.user_id,
            "name": self.username,
            "roles": sorted(self.roles),
            "admin": self.is_admin,
            "anonymous": self.anonymous,
            "exp": self.exp,
            "via": self.via,
        }


ANONYMOUS = Identity(user_id=None)


def _strings(value: Any) -> Iterable[str]:
    if isinstance(value, list):
        return (v for v in value if isinstance(v, str))
    return ()


def roles_from_claims(claims: Mapping[str, Any]) -> frozenset[str]:
    """Keycloak-style roles: ``realm_access.roles`` + ``resource_access.{services,drogue}.roles``."""
    roles: set[str] = set()
    realm = claims.get("realm_access")
    if isinstance(realm, Mapping):
        roles.update(_strings(realm.get("roles")))
    resources = claims.get("resource_access")
    if isinstance(resources, Mapping):
        for client in ROLE_CLIENTS:
            entry = resources.get(client)
            if isinstance(entry, Mapping):
                roles.update(_strings(entry.get("roles")))
    return frozenset(roles)
