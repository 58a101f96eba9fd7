"""Authorization of a caller on an application (reference §9, ``database-common/src/auth.rs``). Pure."""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Any

from registry.access.identity import Identity

__all__ = ["Permission", "Role", "authorize", "members_from_column", "members_to_column"]


class Permission(StrEnum):
    OWNER = "Owner"
    ADMIN = "Admin"
    WRITE = "Write"
    READ = "Read"


class Role(StrEnum):
    ADMIN = "admin"
    MANAGER = "manager"
    READER = "reader"


_GRANTS: dict[Role, frozenset[Permission]] = {
    Role.ADMIN: frozenset({Permission.ADMIN, Permission.WRITE, Permission.READ}),
    Role.MANAGER: frozenset({Permission.WRITE, Permission.READ}),
    Role.READER: frozenset({Permission.READ}),
}


def authorize(
    owner: str | None,
    members: Mapping[str, Role],
    identity: Identity,
    permission: Permission,
    *,
    anonymous_write: bool = False,
) -> bool:
    """May ``identity`` do ``permission`` on an app with this ``owner`` and ``members``?

    Drogue's rules, in order: a global admin (role ``drogue-admin``) may do anything; an app without owner is
    open to everyone; the owner may do anything; otherwise the caller's member role decides (``admin`` ->
    Admin/Write/Read, ``manager`` -> Write/Read, ``reader`` -> Read) and ``Owner`` is never granted to a
    member. Anonymous callers are looked up in ``members`` under the key ``""``.

    Kedge's one change: an **anonymous** caller gets only ``Read`` unless ``anonymous_write`` is enabled
    (``RegistrySettings.anonymous_write``), and this cap applies *before* the "app without owner" rule. So by
    default anonymous may read ownerless apps (and apps that list ``""`` as a member) but never write to them;
    with ``anonymous_write`` the Drogue behaviour is restored (ownerless apps fully open, ``""`` members get
    their role). Authenticated non-admin users keep Drogue's "ownerless app is open" rule.
    """
    if identity.is_admin:
        return True
    if identity.anonymous and permission != Permission.READ and not anonymous_write:
        return False
    if not owner:
        return True
    if identity.user_id is not None and identity.user_id == owner:
        return True
    if permission == Permission.OWNER:
        return False
    role = members.get(identity.user_id or "")
    return role is not None and Permission(permission) in _GRANTS[role]


def members_from_column(value: Any) -> dict[str, Role]:
    """Members as stored in ``apps.members`` (``{"<userId>": {"role": "admin"}}``) -> ``{user_id: Role}``.

    Entries with an unknown role are ignored (they grant nothing). A bare string role is accepted too.
    """
    out: dict[str, Role] = {}
    if not isinstance(value, Mapping):
        return out
    for user, entry in value.items():
        raw = entry.get("role") if isinstance(entry, Mapping) else entry
        try:
            out[str(user)] = Role(str(raw))
        except ValueError:
            continue
    return out


def members_to_column(members: Mapping[str, Role]) -> dict[str, dict[str, str]]:
    """The stored (and wire) form: ``{"<userId>": {"role": "<role>"}}``."""
    return {user: {"role": role.value} for user, role in sorted(members.items())}
