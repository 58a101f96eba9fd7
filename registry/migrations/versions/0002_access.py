"""Users of Kedge's own identity provider and access tokens (API keys).

Revision ID: 0002_access
Revises: 0001_resources
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_access"
down_revision = "0001_resources"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("username", sa.String(255), nullable=False, unique=True),
        sa.Column("password_hash", sa.Text, nullable=False),
        sa.Column("roles", sa.JSON, nullable=False),
        sa.Column("created", TS, nullable=False),
    )
    op.create_table(
        "access_tokens",
        sa.Column("prefix", sa.String(16), primary_key=True),
        sa.Column("user_id", sa.Text, nullable=False),
        sa.Column("username", sa.Text, nullable=False),
        sa.Column("hashed_token", sa.String(128), nullable=False),
        sa.Column("created", TS, nullable=False),
        sa.Column("description", sa.Text, nullable=True),
    )
    op.create_index("ix_access_tokens_user_id", "access_tokens", ["user_id"])


def downgrade() -> None:
    op.drop_index("ix_access_tokens_user_id", "access_tokens")
    op.drop_table("access_tokens")
    op.drop_table("users")
