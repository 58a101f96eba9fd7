"""Registry resources: applications, devices, device aliases and the transactional outbox.

Revision ID: 0001_resources
Revises: (none)
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001_resources"
down_revision = None
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def _resource_columns() -> list[sa.Column[object]]:
    return [
        sa.Column("uid", sa.String(36), nullable=False),
        sa.Column("creation_timestamp", TS, nullable=False),
        sa.Column("deletion_timestamp", TS, nullable=True),
        sa.Column("generation", sa.BigInteger, nullable=False),
        sa.Column("resource_version", sa.String(36), nullable=False),
        sa.Column("revision", sa.BigInteger, nullable=False),
        sa.Column("labels", sa.JSON, nullable=False),
        sa.Column("annotations", sa.JSON, nullable=False),
        sa.Column("finalizers", sa.JSON, nullable=False),
        sa.Column("spec", sa.JSON, nullable=False),
        sa.Column("status", sa.JSON, nullable=False),
    ]


def upgrade() -> None:
    op.create_table(
        "apps",
        sa.Column("name", sa.String(253), primary_key=True),
        *_resource_columns(),
        sa.Column("owner", sa.Text, nullable=True),
        sa.Column("transfer_owner", sa.Text, nullable=True),
        sa.Column("members", sa.JSON, nullable=False),
    )
    op.create_table(
        "devices",
        sa.Column("app", sa.String(253), sa.ForeignKey("apps.name", ondelete="CASCADE"), primary_key=True),
        sa.Column("name", sa.String(255), primary_key=True),
        *_resource_columns(),
    )
    op.create_table(
        "device_aliases",
        sa.Column("app", sa.String(253), primary_key=True),
        sa.Column("kind", sa.String(16), primary_key=True),
        sa.Column("alias", sa.Text, primary_key=True),
        sa.Column("device", sa.String(255), nullable=False),
        sa.ForeignKeyConstraint(["app", "device"], ["devices.app", "devices.name"], ondelete="CASCADE"),
    )
    op.create_index("device_aliases_device", "device_aliases", ["app", "device"])
    op.create_table(
        "outbox",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True,
                  autoincrement=True),
        sa.Column("key", sa.Text, nullable=False),
        sa.Column("value", sa.LargeBinary, nullable=False),
        sa.Column("all_partitions", sa.Boolean, nullable=False),
        sa.Column("created", TS, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("outbox")
    op.drop_index("device_aliases_device", "device_aliases")
    op.drop_table("device_aliases")
    op.drop_table("devices")
    op.drop_table("apps")
