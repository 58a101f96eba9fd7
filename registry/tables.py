"""SQL schema of the registry (SQLAlchemy Core).

The Alembic migrations in ``registry/migrations/versions`` create these tables (a test compares them).
Invariant: every change of ``apps``/``devices`` writes its ``outbox`` row in the same transaction.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

JSON = sa.JSON()
TS = sa.DateTime(timezone=True)


def _resource_columns() -> list[sa.Column[object]]:
    return [
        sa.Column("uid", sa.String(36), nullable=False),
        sa.Column("creation_timestamp", TS, nullable=False),
        sa.Column("deletion_timestamp", TS, nullable=True),
        sa.Column("generation", sa.BigInteger, nullable=False),
        sa.Column("resource_version", sa.String(36), nullable=False),
        sa.Column("revision", sa.BigInteger, nullable=False),
        sa.Column("labels", JSON, nullable=False),
        sa.Column("annotations", JSON, nullable=False),
        sa.Column("finalizers", JSON, nullable=False),
        sa.Column("spec", JSON, nullable=False),
        sa.Column("status", JSON, nullable=False),
    ]


apps = sa.Table(
    "apps",
    metadata,
    sa.Column("name", sa.String(253), primary_key=True),
    *_resource_columns(),
    sa.Column("owner", sa.Text, nullable=True),
    sa.Column("transfer_owner", sa.Text, nullable=True),
    sa.Column("members", JSON, nullable=False),
)

devices = sa.Table(
    "devices",
    metadata,
    sa.Column("app", sa.String(253), sa.ForeignKey("apps.name", ondelete="CASCADE"), primary_key=True),
    sa.Column("name", sa.String(255), primary_key=True),
    *_resource_columns(),
)

# Alternative lookup names of a device, unique per application. ``kind`` is "alias" (spec.alias) or
# "username" (user credentials with unique=true). The PK makes collisions a unique-key violation.
device_aliases = sa.Table(
    "device_aliases",
    metadata,
    sa.Column("app", sa.String(253), primary_key=True),
    sa.Column("kind", sa.String(16), primary_key=True),
    sa.Column("alias", sa.Text, primary_key=True),
    sa.Column("device", sa.String(255), nullable=False),
    sa.ForeignKeyConstraint(["app", "device"], ["devices.app", "devices.name"], ondelete="CASCADE"),
    sa.Index("device_aliases_device", "app", "device"),
)

outbox = sa.Table(
    "outbox",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("key", sa.Text, nullable=False),
    sa.Column("value", sa.LargeBinary, nullable=False),
    #: application-level change: one copy to every partition of the ``registry`` topic
    sa.Column("all_partitions", sa.Boolean, nullable=False),
    sa.Column("created", TS, nullable=False),
)
