"""Migration 0002_access creates exactly the tables of registry/access/tables.py (SQLite and PostgreSQL)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.ext.asyncio import AsyncEngine

from registry.access.tables import access_tokens, users
from registry.tables import metadata

MINE = {users.name, access_tokens.name}


def _table_of(diff: Any) -> str | None:
    item = diff[0] if isinstance(diff, list) else diff
    for part in item[1:]:
        name = getattr(part, "name", None) if not isinstance(part, str) else None
        table = getattr(part, "table", None)
        if table is not None:
            return str(table.name)
        if name in MINE:
            return str(name)
    return str(item[2]) if len(item) > 2 and isinstance(item[2], str) else None


async def test_migration_matches_tables(engine: AsyncEngine) -> None:
    def diff(conn: sa.Connection) -> list[Any]:
        return list(compare_metadata(MigrationContext.configure(conn), metadata))

    async with engine.connect() as conn:
        diffs = await conn.run_sync(diff)
    mine = [d for d in diffs if _table_of(d) in MINE]
    assert mine == [], mine
    async with engine.connect() as conn:
        names = await conn.run_sync(lambda c: set(sa.inspect(c).get_table_names()))
        version = (await conn.execute(sa.text("SELECT version_num FROM alembic_version"))).scalars().all()
    assert names >= MINE
    assert "0002_access" in version
