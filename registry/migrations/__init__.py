"""Alembic migrations of the registry database, applied programmatically by :func:`registry.db.migrate`.

Revisions live in ``versions/``: ``0001_resources`` (apps, devices, aliases, outbox), then ``0002_access``
(users, access tokens) on top of it. No ``alembic.ini`` is needed: the configuration is built in code.
"""
