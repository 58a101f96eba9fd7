"""Alembic environment: runs on the connection handed over by :func:`registry.db.migrate` (no URL, no ini)."""

from __future__ import annotations

from alembic import context

from registry.tables import metadata

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - only registry.db.migrate runs migrations
    raise RuntimeError("registry migrations run through registry.db.migrate(engine), not the alembic CLI")

context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
