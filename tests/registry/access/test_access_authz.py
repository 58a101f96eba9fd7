"""Authorization (§9) as a property over identities x roles x permissions."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from registry.access.authz import Permission, Role, authorize, members_from_column, members_to_column
from registry.access.identity import ADMIN_ROLE, ANONYMOUS, Identity

OWNER = "u-owner"
ALICE = Identity(user_id="u-alice", username="alice", via="jwt")
ADMIN = Identity(user_id="u-admin", username="admin", roles=frozenset({ADMIN_ROLE}), via="jwt")

GRANTS = {
    Role.ADMIN: {Permission.ADMIN, Permission.WRITE, Permission.READ},
    Role.MANAGER: {Permission.WRITE, Permission.READ},
    Role.READER: {Permission.READ},
    None: set(),
}

permissions = st.sampled_from(list(Permission))
roles = st.sampled_from([*Role, None])
flags = st.booleans()


@given(permissions, roles, flags)
def test_global_admin_may_do_anything(permission: Permission, role: Role | None, anon_write: bool) -> None:
    members = {ADMIN.user_id: role} if role and ADMIN.user_id else {}
    assert authorize(OWNER, members, ADMIN, permission, anonymous_write=anon_write)
    assert authorize(None, {}, ADMIN, permission, anonymous_write=anon_write)


@given(permissions, flags)
def test_owner_may_do_anything(permission: Permission, anon_write: bool) -> None:
    owner = Identity(user_id=OWNER, username="o", via="api_key")
    assert authorize(OWNER, {}, owner, permission, anonymous_write=anon_write)


@given(permissions, flags)
def test_app_without_owner_is_open_to_users(permission: Permission, anon_write: bool) -> None:
    assert authorize(None, {}, ALICE, permission, anonymous_write=anon_write)
    assert authorize("", {}, ALICE, permission, anonymous_write=anon_write)


@given(permissions, roles, flags)
def test_member_roles(permission: Permission, role: Role | None, anon_write: bool) -> None:
    assert ALICE.user_id is not None
    members = {ALICE.user_id: role} if role else {}
    expected = permission in GRANTS[role]
    assert authorize(OWNER, members, ALICE, permission, anonymous_write=anon_write) is expected
    # someone else's membership never counts
    assert not authorize(OWNER, {"u-bob": role} if role else {}, ALICE, permission)


@given(roles)
def test_owner_permission_is_never_granted_to_members(role: Role | None) -> None:
    assert ALICE.user_id is not None
    members = {ALICE.user_id: role} if role else {}
    assert not authorize(OWNER, members, ALICE, Permission.OWNER)


@given(permissions, roles)
def test_anonymous_without_anonymous_write(permission: Permission, role: Role | None) -> None:
    members = {"": role} if role else {}
    # ownerless apps: read only
    assert authorize(None, members, ANONYMOUS, permission) is (permission is Permission.READ)
    # owned apps: the "" member entry decides, but never more than Read
    expected = permission is Permission.READ and permission in GRANTS[role]
    assert authorize(OWNER, members, ANONYMOUS, permission) is expected


@given(permissions, roles)
def test_anonymous_with_anonymous_write_is_drogue(permission: Permission, role: Role | None) -> None:
    members = {"": role} if role else {}
    assert authorize(None, members, ANONYMOUS, permission, anonymous_write=True)
    expected = permission in GRANTS[role]
    assert authorize(OWNER, members, ANONYMOUS, permission, anonymous_write=True) is expected


def test_members_column_roundtrip_and_bad_entries() -> None:
    stored = {
        "u1": {"role": "admin"},
        "u2": {"role": "reader"},
        "u3": {"role": "boss"},
        "u4": "manager",
        "u5": 7,
    }
    parsed = members_from_column(stored)
    assert parsed == {"u1": Role.ADMIN, "u2": Role.READER, "u4": Role.MANAGER}
    assert members_to_column(parsed) == {
        "u1": {"role": "admin"},
        "u2": {"role": "reader"},
        "u4": {"role": "manager"},
    }
    assert members_from_column(None) == {} and members_from_column([]) == {}
