"""Kedge `registry` package: the device registry service (see DESIGN.md for its role).

| module | what |
|---|---|
| ``db`` | async engine (SQLite WAL / PostgreSQL), migrations at start (``migrations/``, Alembic, no ini) |
| ``tables`` | the SQL schema (SQLAlchemy Core) |
| ``resources``, ``selectors`` | pure rules: names, change paths, JSON rendering; label selectors |
| ``store`` | apps and devices; each write commits its outbox record(s) (``changes``) in the same transaction |
| ``outbox`` | the relay: outbox rows -> the ``registry`` topic, deleted only once Kafka acknowledged them |
| ``authn`` | device authentication (passwords, certificates, verification cache) for the endpoints |
| ``api`` | FastAPI routers: ``/api/registry/v1alpha1`` and ``/api/v1/auth``; Drogue error bodies |
| ``access`` | users, access tokens, JWTs, members and roles, authorization |

The registry imports only ``schemas`` and ``topology.names`` of Kedge: its engine, settings and Kafka
producer are handed in by ``kedge.apihost`` (the API process) and ``kedge.wiring`` (the endpoints).
"""
