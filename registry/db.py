"""Registry database: the async engine (SQLite with WAL, or PostgreSQL) and the migrations run at start.

SQLite: transactions are begun explicitly (``BEGIN`` for reads, ``BEGIN IMMEDIATE`` for writes, so a writer
never fails half-way on a lock upgrade), foreign keys are enforced and several processes may read the file
concurrently (WAL). PostgreSQL: migrations are serialised by an advisory lock.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
#: execution option that makes a SQLite transaction take the write lock at BEGIN
WRITE = "kedge_write"
_PG_MIGRATION_LOCK = 0x6B65646765  # "kedge"


def create_engine(url: str, **options: Any) -> AsyncEngine:
    """An async engine for ``url`` (``sqlite+aiosqlite:///…`` or ``postgresql+asyncpg://…``)."""
    if url.startswith("sqlite"):
        path = url.split(":///", 1)[1] if ":///" in url else ""
        if path and path != ":memory:":
            db = Path(path)
            db.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            # credentials live in it (plain device passwords where a device was given one): owner only;
            # SQLite gives its -wal and -shm files the mode of the database file
            if not db.exists():
                db.touch(mode=0o600)
        engine = create_async_engine(url, connect_args={"timeout": 30}, **options)
        _sqlite_events(engine)
        return engine
    return create_async_engine(url, pool_pre_ping=True, **options)


def _sqlite_events(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we BEGIN ourselves
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        immediate = conn.get_execution_options().get(WRITE, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("path_separator", "os")
    return config


def _upgrade(conn: sa.Connection) -> None:
    if conn.dialect.name == "postgresql":
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_MIGRATION_LOCK})
    config = alembic_config()
    config.attributes["connection"] = conn
    command.upgrade(config, "heads")


async def migrate(engine: AsyncEngine) -> None:
    """Apply every pending migration (idempotent; safe when several processes start at once)."""
    async with engine.connect() as conn:
        conn = await conn.execution_options(**{WRITE: True})
        async with conn.begin():
            await conn.run_sync(_upgrade)


async def ping(engine: AsyncEngine) -> None:
    """Raise if the database cannot be reached (readiness)."""
    async with engine.connect() as conn:
        await conn.execute(sa.text("SELECT 1"))


async def write_connection(conn: AsyncConnection) -> AsyncConnection:
    """Mark ``conn`` as a writer (SQLite ``BEGIN IMMEDIATE``); call before ``begin()``."""
    return await conn.execution_options(**{WRITE: True})
