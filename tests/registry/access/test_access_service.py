"""The access service on a real (SQLite, migrated) registry database."""

from __future__ import annotations

import asyncio
import json
import stat
import time
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from registry.access import Access, AccessConfig, tokens
from registry.access.credentials import ApiKeyCredential, JwtCredential
from registry.access.errors import AuthenticationFailed
from registry.access.identity import ADMIN_ROLE
from registry.access.secrets_dir import ADMIN_FILE, SIGNING_KEY_FILE
from registry.access.tables import access_tokens
from registry.errors import Conflict, NotFound


async def test_ensure_admin_once(access: Access, config: AccessConfig) -> None:
    name, password, created = await access.ensure_admin()
    assert (name, created) == ("admin", True) and password
    path = config.data_dir / ADMIN_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert json.loads(path.read_text()) == {"username": "admin", "password": password}
    again = await access.ensure_admin()
    assert again == ("admin", password, False)
    user = await access.store.user_by_name("admin")
    assert user is not None and user.roles == {ADMIN_ROLE}
    assert await access.store.check_user_password("admin", password) is not None
    assert await access.store.check_user_password("admin", password + "x") is None


async def test_ensure_admin_concurrently_agrees(engine: AsyncEngine, config: AccessConfig) -> None:
    a, b = Access.create(engine, config), Access.create(engine, config)
    results = await asyncio.gather(a.ensure_admin(), b.ensure_admin())
    assert sorted(r[2] for r in results) == [False, True]
    assert results[0][1] == results[1][1]
    assert await a.store.check_user_password("admin", results[0][1] or "") is not None


async def test_signing_key_created_0600(engine: AsyncEngine, tmp_path: Path) -> None:
    data = tmp_path / "fresh"
    access = Access.create(engine, AccessConfig(data_dir=data, bcrypt_rounds=4))
    assert access.issuer is not None
    assert stat.S_IMODE((data / SIGNING_KEY_FILE).stat().st_mode) == 0o600
    again = Access.create(engine, AccessConfig(data_dir=data, bcrypt_rounds=4))
    assert again.issuer is not None and again.issuer.kid == access.issuer.kid


async def test_api_key_authentication(access: Access) -> None:
    alice = await access.store.create_user("alice", "alice-password", frozenset())
    created = await access.store.create_token(alice.id, "alice", "ci")
    identity = await access.authenticate_api_key("alice", created.token)
    assert identity is not None
    assert (identity.user_id, identity.username, identity.exp, identity.via) == (
        alice.id,
        "alice",
        None,
        "api_key",
    )
    assert not identity.is_admin and not identity.anonymous
    # wrong user for the token, a tampered token, a well-formed unknown token
    assert await access.authenticate_api_key("bob", created.token) is None
    tampered = created.token[:-1] + ("x" if created.token[-1] != "x" else "y")
    assert await access.authenticate_api_key("alice", tampered) is None
    assert await access.authenticate_api_key("alice", tokens.generate().token) is None
    with pytest.raises(AuthenticationFailed, match="Malformed"):
        await access.authenticate(ApiKeyCredential("alice", "drg_nope"))
    with pytest.raises(AuthenticationFailed, match="Unknown"):
        await access.authenticate(ApiKeyCredential("bob", created.token))


async def test_only_the_hash_is_stored(access: Access, engine: AsyncEngine) -> None:
    created = await access.store.create_token("u1", "alice", None)
    async with engine.connect() as conn:
        rows = (await conn.execute(access_tokens.select())).mappings().all()
    assert len(rows) == 1
    row = dict(rows[0])
    assert row["hashed_token"] == tokens.hash_token(created.token)
    assert created.token not in json.dumps(row, default=str)


async def test_admin_token_acts_as_admin(access: Access, admin: tuple[str, str]) -> None:
    user = await access.store.user_by_name(admin[0])
    assert user is not None
    created = await access.store.create_token(user.id, user.username, None)
    identity = await access.authenticate_api_key(admin[0], created.token)
    assert identity is not None and identity.is_admin


async def test_jwt_exchange_and_authentication(access: Access, admin: tuple[str, str]) -> None:
    issued = await access.issue_jwt(*admin, ttl_s=30)
    assert issued.expires_in == 30 and "***" in repr(issued)
    identity = await access.authenticate_jwt(issued.token)
    assert identity is not None and identity.is_admin and identity.username == "admin"
    assert identity.exp == issued.exp and identity.via == "jwt"
    assert not identity.expired(time.time()) and identity.expired(issued.exp + 1)
    # the ttl is capped at jwt_ttl_s
    assert (await access.issue_jwt(*admin, ttl_s=10**6)).expires_in == access.config.jwt_ttl_s
    with pytest.raises(AuthenticationFailed):
        await access.issue_jwt(admin[0], "wrong")
    with pytest.raises(AuthenticationFailed):
        await access.issue_jwt("nobody", "wrong")


async def test_expired_jwt(access: Access, admin: tuple[str, str]) -> None:
    assert access.issuer is not None
    token, _ = access.issuer.issue(user_id="u1", username="a", roles=[], ttl_s=5, now=time.time() - 60)
    assert await access.authenticate_jwt(token) is None
    with pytest.raises(AuthenticationFailed, match="expired"):
        await access.authenticate(JwtCredential(token))


async def test_users(access: Access) -> None:
    bob = await access.store.create_user("bob", "bob-password", frozenset({"x"}))
    with pytest.raises(Conflict):
        await access.store.create_user("bob", "other-password", frozenset())
    assert [u.username for u in await access.store.list_users()] == ["bob"]
    created = await access.store.create_token(bob.id, "bob", None)
    assert await access.store.delete_user("bob")
    assert not await access.store.delete_user("bob")
    assert await access.authenticate_api_key("bob", created.token) is None, "tokens go with their user"


async def test_issuer_disabled_with_oidc(engine: AsyncEngine, tmp_path: Path) -> None:
    access = Access.create(engine, AccessConfig(data_dir=tmp_path, oidc_issuer="http://127.0.0.1:9/realms/x"))
    assert access.issuer is None
    assert not (tmp_path / SIGNING_KEY_FILE).exists()
    with pytest.raises(NotFound):
        await access.issue_jwt("admin", "x")


async def test_database_down_is_unavailable_not_unknown(tmp_path: Path, config: AccessConfig) -> None:
    from registry.access.errors import AccessUnavailable
    from registry.db import create_engine

    broken = create_engine(f"sqlite+aiosqlite:///{tmp_path}")  # a directory: the database cannot be opened
    try:
        access = Access.create(broken, config)
        with pytest.raises(AccessUnavailable):
            await access.authenticate_api_key("alice", tokens.generate().token)
        # a malformed token is refused before any lookup, back end or not
        assert await access.authenticate_api_key("alice", "drg_nope") is None
    finally:
        await broken.dispose()
