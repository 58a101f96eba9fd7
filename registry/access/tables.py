"""SQL schema of users and access tokens, on the registry's one ``MetaData`` (migration ``0002_access``)."""

from __future__ import annotations

import sqlalchemy as sa

from registry.tables import JSON, TS, metadata

__all__ = ["access_tokens", "users"]

#: local users of Kedge's own identity provider (not used for users of an external OIDC issuer)
users = sa.Table(
    "users",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("username", sa.String(255), nullable=False, unique=True),
    #: bcrypt hash (``$2b$…``)
    sa.Column("password_hash", sa.Text, nullable=False),
    #: JSON list of role names, e.g. ["drogue-admin"]
    sa.Column("roles", JSON, nullable=False),
    sa.Column("created", TS, nullable=False),
)

#: access tokens (API keys) of any user, local or from the OIDC issuer; only their sha3-512 hash is stored
access_tokens = sa.Table(
    "access_tokens",
    metadata,
    sa.Column("prefix", sa.String(16), primary_key=True),
    sa.Column("user_id", sa.Text, nullable=False, index=True),
    #: the user name the token must be presented with (Drogue: the Keycloak user name)
    sa.Column("username", sa.Text, nullable=False),
    sa.Column("hashed_token", sa.String(128), nullable=False),
    sa.Column("created", TS, nullable=False),
    sa.Column("description", sa.Text, nullable=True),
)
