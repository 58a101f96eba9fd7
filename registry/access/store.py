"""SQL access to users, access tokens and the access columns of ``apps`` (owner, members, transfer).

Thin I/O over :mod:`registry.access.tables` and ``registry.tables.apps``. Database failures surface as
:class:`registry.errors.DatabaseError` (503); the callers never see SQLAlchemy exceptions.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import bcrypt
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from registry.access import tokens
from registry.access.authz import Role, members_from_column, members_to_column
from registry.access.tables import access_tokens, users
from registry.db import write_connection
from registry.errors import Conflict, DatabaseError, NotFound
from registry.resources import timestamp
from registry.tables import apps

__all__ = ["KEEP", "AccessStore", "AppAccess", "TokenRecord", "UserRecord"]


@dataclass(frozen=True, slots=True)
class UserRecord:
    id: str
    username: str
    roles: frozenset[str]
    created: datetime
    password_hash: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "username": self.username,
            "roles": sorted(self.roles),
            "created": timestamp(self.created),
        }


@dataclass(frozen=True, slots=True)
class TokenRecord:
    prefix: str
    user_id: str
    username: str
    hashed_token: str
    created: datetime
    description: str | None

    def to_json(self) -> dict[str, Any]:
        """Drogue's ``AccessToken`` listing entry (never the hash)."""
        out: dict[str, Any] = {"prefix": self.prefix, "created": timestamp(self.created)}
        if self.description is not None:
            out["description"] = self.description
        return out


@dataclass(frozen=True, slots=True)
class AppAccess:
    """The access-relevant part of an application row."""

    name: str
    owner: str | None
    transfer_owner: str | None
    members: dict[str, Role]
    resource_version: str
    deleting: bool


class _Keep:
    """Sentinel type: leave this column as it is."""


KEEP = _Keep()


def _now() -> datetime:
    return datetime.now(UTC)


def _user(row: sa.RowMapping) -> UserRecord:
    return UserRecord(
        id=row["id"],
        username=row["username"],
        roles=frozenset(row["roles"] or ()),
        created=row["created"],
        password_hash=row["password_hash"],
    )


def _token(row: sa.RowMapping) -> TokenRecord:
    return TokenRecord(
        prefix=row["prefix"],
        user_id=row["user_id"],
        username=row["username"],
        hashed_token=row["hashed_token"],
        created=row["created"],
        description=row["description"],
    )


def _app(row: sa.RowMapping) -> AppAccess:
    return AppAccess(
        name=row["name"],
        owner=row["owner"],
        transfer_owner=row["transfer_owner"],
        members=members_from_column(row["members"]),
        resource_version=row["resource_version"],
        deleting=row["deletion_timestamp"] is not None,
    )


def hash_password(password: str, rounds: int) -> str:
    return bcrypt.hashpw(password.encode("utf-8"), bcrypt.gensalt(rounds)).decode("ascii")


def check_password(password: str, hashed: str) -> bool:
    try:
        return bcrypt.checkpw(password.encode("utf-8"), hashed.encode("ascii"))
    except ValueError:  # malformed hash, or a password beyond bcrypt's 72 bytes
        return False


class AccessStore:
    """Users, tokens and app access on the registry database (``engine``)."""

    def __init__(self, engine: AsyncEngine, *, bcrypt_rounds: int = 12) -> None:
        self.engine = engine
        self.bcrypt_rounds = bcrypt_rounds
        self._dummy_hash: str | None = None

    @asynccontextmanager
    async def _read(self) -> AsyncIterator[AsyncConnection]:
        try:
            async with self.engine.connect() as conn, conn.begin():
                yield conn
        except sa.exc.DBAPIError as e:
            raise DatabaseError(f"Database error: {type(e.orig).__name__ if e.orig else e}") from e

    @asynccontextmanager
    async def _write(self) -> AsyncIterator[AsyncConnection]:
        try:
            async with self.engine.connect() as raw:
                conn = await write_connection(raw)
                async with conn.begin():
                    yield conn
        except sa.exc.IntegrityError as e:
            raise Conflict("Unique key violation") from e
        except sa.exc.DBAPIError as e:
            raise DatabaseError(f"Database error: {type(e.orig).__name__ if e.orig else e}") from e

    # ------------------------------------------------------------------------------------------ users

    async def create_user(self, username: str, password: str, roles: frozenset[str]) -> UserRecord:
        """Insert a local user; :class:`Conflict` if the user name is taken."""
        hashed = await asyncio.to_thread(hash_password, password, self.bcrypt_rounds)
        record = UserRecord(id=str(uuid.uuid4()), username=username, roles=roles, created=_now())
        async with self._write() as conn:
            await conn.execute(
                users.insert().values(
                    id=record.id,
                    username=username,
                    password_hash=hashed,
                    roles=sorted(roles),
                    created=record.created,
                )
            )
        return record

    async def user_by_name(self, username: str) -> UserRecord | None:
        async with self._read() as conn:
            row = (await conn.execute(users.select().where(users.c.username == username))).mappings().first()
        return _user(row) if row else None

    async def user_by_id(self, user_id: str) -> UserRecord | None:
        async with self._read() as conn:
            row = (await conn.execute(users.select().where(users.c.id == user_id))).mappings().first()
        return _user(row) if row else None

    async def list_users(self) -> list[UserRecord]:
        async with self._read() as conn:
            rows = (await conn.execute(users.select().order_by(users.c.username))).mappings().all()
        return [_user(r) for r in rows]

    async def delete_user(self, username: str) -> bool:
        """Delete a local user and its access tokens; False if there was no such user."""
        async with self._write() as conn:
            query = sa.select(users.c.id).where(users.c.username == username)
            user_id = (await conn.execute(query)).scalar_one_or_none()
            if user_id is None:
                return False
            await conn.execute(access_tokens.delete().where(access_tokens.c.user_id == user_id))
            await conn.execute(users.delete().where(users.c.id == user_id))
        return True

    async def check_user_password(self, username: str, password: str) -> UserRecord | None:
        """The user if ``password`` is right; None otherwise (unknown users cost one bcrypt too)."""
        user = await self.user_by_name(username)
        if user is None and self._dummy_hash is None:
            self._dummy_hash = await asyncio.to_thread(hash_password, "x", self.bcrypt_rounds)
        hashed = user.password_hash if user else self._dummy_hash
        assert hashed is not None
        ok = await asyncio.to_thread(check_password, password, hashed)
        return user if ok and user is not None else None

    # ----------------------------------------------------------------------------------------- tokens

    async def create_token(self, user_id: str, username: str, description: str | None) -> tokens.GeneratedToken:
        """A new token for the user; only its hash is stored. Retries on the (unlikely) prefix collision."""
        for _ in range(5):
            generated = tokens.generate()
            try:
                async with self._write() as conn:
                    await conn.execute(
                        access_tokens.insert().values(
                            prefix=generated.prefix,
                            user_id=user_id,
                            username=username,
                            hashed_token=tokens.hash_token(generated.token),
                            created=_now(),
                            description=description,
                        )
                    )
                return generated
            except Conflict:
                continue
        raise DatabaseError("Could not allocate a unique token prefix")

    async def list_tokens(self, user_id: str) -> list[TokenRecord]:
        query = access_tokens.select().where(access_tokens.c.user_id == user_id).order_by(access_tokens.c.created)
        async with self._read() as conn:
            rows = (await conn.execute(query)).mappings().all()
        return [_token(r) for r in rows]

    async def delete_token(self, user_id: str, prefix: str) -> None:
        """Delete the user's token ``prefix``; absent is fine (Drogue answers 204 either way)."""
        async with self._write() as conn:
            await conn.execute(
                access_tokens.delete().where(access_tokens.c.user_id == user_id, access_tokens.c.prefix == prefix)
            )

    async def token_by_prefix(self, prefix: str) -> TokenRecord | None:
        async with self._read() as conn:
            query = access_tokens.select().where(access_tokens.c.prefix == prefix)
            row = (await conn.execute(query)).mappings().first()
        return _token(row) if row else None

    # --------------------------------------------------------------------------------------- app access

    async def app_access(self, app: str) -> AppAccess | None:
        query = sa.select(
            apps.c.name,
            apps.c.owner,
            apps.c.transfer_owner,
            apps.c.members,
            apps.c.resource_version,
            apps.c.deletion_timestamp,
        ).where(apps.c.name == app)
        async with self._read() as conn:
            row = (await conn.execute(query)).mappings().first()
        return _app(row) if row else None

    async def update_app_access(
        self,
        app: str,
        *,
        expected_resource_version: str | None = None,
        members: Mapping[str, Role] | None = None,
        owner: str | _Keep | None = KEEP,
        transfer_owner: str | _Keep | None = KEEP,
    ) -> str:
        """Change the access columns of ``app`` in one transaction; returns the new ``resourceVersion``.

        A non-empty ``expected_resource_version`` must match the current one (else :class:`Conflict`,
        optimistic locking as for the resource itself). The app's ``resourceVersion`` is renewed (the members
        are part of the app's state), while ``generation`` and ``revision`` are left alone: access is not part
        of the resource JSON, so no registry change event is written. Pass :data:`KEEP` to leave a column.
        """
        values: dict[str, Any] = {}
        if members is not None:
            values["members"] = members_to_column(members)
        if not isinstance(owner, _Keep):
            values["owner"] = owner
        if not isinstance(transfer_owner, _Keep):
            values["transfer_owner"] = transfer_owner
        new_version = str(uuid.uuid4())
        values["resource_version"] = new_version
        async with self._write() as conn:
            query = sa.select(apps.c.resource_version).where(apps.c.name == app)
            current = (await conn.execute(query)).scalar_one_or_none()
            if current is None:
                raise NotFound(f"Application {app!r} not found")
            if expected_resource_version and expected_resource_version != current:
                raise Conflict("Conflict")
            await conn.execute(apps.update().where(apps.c.name == app).values(**values))
        return new_version
