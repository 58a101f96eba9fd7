"""The migrations create what ``registry.tables`` declares, and run idempotently."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

from registry.db import create_engine, migrate
from registry.tables import metadata


async def test_migrations_match_tables(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'm.db'}")
    try:
        await migrate(engine)
        await migrate(engine)  # idempotent
        async with engine.connect() as conn:
            def describe(sync: sa.Connection) -> dict[str, set[str]]:
                inspector = sa.inspect(sync)
                return {t: {c["name"] for c in inspector.get_columns(t)} for t in inspector.get_table_names()}

            found = await conn.run_sync(describe)
            mode = (await conn.execute(sa.text("PRAGMA journal_mode"))).scalar()
        for table in ("apps", "devices", "device_aliases", "outbox"):
            assert found[table] == {c.name for c in metadata.tables[table].columns}, table
        assert mode == "wal"
    finally:
        await engine.dispose()
