"""Registry storage: applications and devices in SQL, each change with its outbox record in one transaction.

Every write method runs in one transaction that (1) reads and locks the rows it changes, (2) calls the
caller's ``guard`` on the application row (authorization lives in the API layer), (3) writes the resource
rows and (4) appends the :class:`schemas.registry.RegistryChange` records to ``outbox``. After the commit
``on_commit`` gets the committed changes (the API host wakes the outbox relay and invalidates its device
authentication cache with them). Errors are :mod:`registry.errors` instances.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from registry import resources as res
from registry.changes import CHANGES, change, emit
from registry.db import write_connection
from registry.errors import BadRequest, Conflict, DatabaseError, NotFound, ReferenceNotFound, RegistryError
from registry.selectors import Selector
from registry.tables import apps, device_aliases, devices
from schemas.registry import ApplicationIn, DeviceIn, Operation, RegistryChange

Row = dict[str, Any]
#: called with the application row inside the transaction; raises to refuse (NotAuthorized / NotFound)
Guard = Callable[[Row], None]
#: may the caller see this application in a list?
Visible = Callable[[Row], bool]


def _allow(_row: Row) -> None:
    return None


@dataclass(frozen=True, slots=True)
class Preconditions:
    """Delete/update preconditions: when non-empty they must equal the stored values (else 409)."""

    uid: str = ""
    resource_version: str = ""

    def check(self, row: Row) -> None:
        if (self.uid and self.uid != row["uid"]) or (
            self.resource_version and self.resource_version != row["resource_version"]
        ):
            raise Conflict("Conflict")


class Registry:
    """Applications and devices (reference §8). Construct with an engine; ``on_commit`` wakes the relay."""

    def __init__(self, engine: AsyncEngine, *,
                 on_commit: Callable[[list[RegistryChange]], None] | None = None) -> None:
        self.engine = engine
        self.on_commit = on_commit

    # ------------------------------------------------------------------------------------ transactions

    @asynccontextmanager
    async def _write(self) -> AsyncIterator[AsyncConnection]:
        changes: list[RegistryChange] = []
        try:
            async with self.engine.connect() as conn:
                conn = await write_connection(conn)
                conn.info[CHANGES] = changes
                try:
                    async with conn.begin():
                        yield conn
                finally:
                    conn.info.pop(CHANGES, None)
        except IntegrityError:
            raise Conflict("Unique key violation") from None
        except (DBAPIError, OSError) as exc:
            raise DatabaseError(f"database error: {getattr(exc, 'orig', None) or exc}") from None
        if self.on_commit is not None and changes:
            self.on_commit(changes)

    @asynccontextmanager
    async def _read(self) -> AsyncIterator[AsyncConnection]:
        try:
            async with self.engine.connect() as conn, conn.begin():
                yield conn
        except (DBAPIError, OSError) as exc:
            raise DatabaseError(f"database error: {getattr(exc, 'orig', None) or exc}") from None

    # ------------------------------------------------------------------------------------------ apps

    async def create_app(self, body: ApplicationIn, *, owner: str | None) -> Row:
        name = body.metadata.name
        res.validate_app_name(name)
        res.validate_app_spec(body.spec)
        row = _new_row(body)
        row.update(name=name, owner=owner, transfer_owner=None, members={},
                   status=res.app_status(row["spec"], row["status"]))
        async with self._write() as conn:
            await conn.execute(apps.insert().values(**row))
            await emit(conn, change("created", row, ["."], app_row=row))
        return row

    async def get_app(self, name: str, guard: Guard = _allow) -> Row:
        async with self._read() as conn:
            row = await _app(conn, name)
            if row is None:
                raise NotFound(f"Application {name} not found")
            guard(row)
            return row

    async def list_apps(self, selector: Selector, limit: int | None, offset: int,
                        visible: Visible = lambda _r: True) -> list[Row]:
        async with self._read() as conn:
            rows = (await conn.execute(sa.select(apps).order_by(apps.c.name))).mappings().all()
        found = [dict(r) for r in rows if visible(dict(r)) and selector.matches(r["labels"])]
        return found[offset:None if limit is None else offset + limit]

    async def update_app(self, name: str, body: ApplicationIn, guard: Guard = _allow) -> None:
        if body.metadata.name != name:
            raise BadRequest(f"metadata.name {body.metadata.name!r} does not match the path ({name!r})")
        res.validate_app_spec(body.spec)
        async with self._write() as conn:
            old = await _app(conn, name, lock=True)
            if old is None:
                raise NotFound(f"Application {name} not found")
            guard(old)
            Preconditions(body.metadata.uid, body.metadata.resource_version).check(old)
            new = {**old, **_content(body)}
            new["status"] = res.app_status(new["spec"], new["status"])
            paths = res.diff_paths(old, new)
            if not paths:
                return
            if old["deletion_timestamp"] is not None and not new["finalizers"]:
                await _hard_delete_app(conn, old)
                return
            await _update(conn, apps, (apps.c.name == name), old, new, paths)
            await emit(conn, change(_op(new), new, paths, app_row=new))

    async def delete_app(self, name: str, pre: Preconditions, guard: Guard = _allow) -> None:
        async with self._write() as conn:
            old = await _app(conn, name, lock=True)
            if old is None or old["deletion_timestamp"] is not None:
                raise NotFound(f"Application {name} not found")
            guard(old)
            pre.check(old)
            rows = await _devices_of(conn, name)
            finalizers = list(old["finalizers"])
            if any(d["finalizers"] for d in rows) and res.HAS_DEVICES not in finalizers:
                finalizers.append(res.HAS_DEVICES)
            if not finalizers:
                await _hard_delete_app(conn, old)
                return
            new = {**old, "finalizers": finalizers, "deletion_timestamp": res.now()}
            await _update(conn, apps, (apps.c.name == name), old, new, [".metadata"])
            await emit(conn, change("deleted", new, [".metadata"], app_row=new))
            for device in rows:
                if device["finalizers"]:
                    soft = {**device, "deletion_timestamp": new["deletion_timestamp"]}
                    where = _device_where(name, device["name"])
                    await _update(conn, devices, where, device, soft, [".metadata"])
                    await emit(conn, change("deleted", soft, [".metadata"], app_row=new, device=True,
                                              cascade=True))
                else:
                    await _delete_device_row(conn, old, device, cascade=True)

    # --------------------------------------------------------------------------------------- devices

    async def create_device(self, app: str, body: DeviceIn, guard: Guard = _allow) -> Row:
        name = body.metadata.name
        res.validate_device_name(name)
        if body.metadata.application not in (None, "", app):
            raise BadRequest(f"metadata.application {body.metadata.application!r} does not match the path")
        res.validate_device_spec(body.spec)
        row = _new_row(body)
        row.update(name=name, app=app)
        async with self._write() as conn:
            app_row = await _app(conn, app, lock=True)
            if app_row is None:
                raise ReferenceNotFound(f"Application {app} not found")
            guard(app_row)
            if app_row["deletion_timestamp"] is not None:
                raise ReferenceNotFound(f"Application {app} is being deleted")
            await conn.execute(devices.insert().values(**row))
            await _set_aliases(conn, app, name, row["spec"])
            await emit(conn, change("created", row, ["."], app_row=app_row, device=True))
        return row

    async def get_device(self, app: str, name: str, guard: Guard = _allow) -> Row:
        async with self._read() as conn:
            app_row = await _app(conn, app)
            if app_row is None:
                raise NotFound(f"Application {app} not found")
            guard(app_row)
            row = await _device(conn, app, name)
            if row is None:
                raise NotFound(f"Device {name} not found")
            return row

    async def list_devices(self, app: str, selector: Selector, limit: int | None, offset: int,
                           guard: Guard = _allow) -> list[Row]:
        async with self._read() as conn:
            app_row = await _app(conn, app)
            if app_row is None:
                raise NotFound(f"Application {app} not found")
            guard(app_row)
            query = sa.select(devices).where(devices.c.app == app).order_by(devices.c.name)
            if not selector.requirements:
                query = query.offset(offset).limit(limit)
                return [dict(r) for r in (await conn.execute(query)).mappings().all()]
            rows = [dict(r) for r in (await conn.execute(query)).mappings().all()]
        found = [r for r in rows if selector.matches(r["labels"])]
        return found[offset:None if limit is None else offset + limit]

    async def update_device(self, app: str, name: str, body: DeviceIn, guard: Guard = _allow) -> None:
        if body.metadata.name != name:
            raise BadRequest(f"metadata.name {body.metadata.name!r} does not match the path ({name!r})")
        if body.metadata.application not in (None, "", app):
            raise BadRequest(f"metadata.application {body.metadata.application!r} does not match the path")
        res.validate_device_spec(body.spec)
        async with self._write() as conn:
            app_row = await _app(conn, app, lock=True)
            if app_row is None:
                raise NotFound(f"Application {app} not found")
            guard(app_row)
            old = await _device(conn, app, name, lock=True)
            if old is None:
                raise NotFound(f"Device {name} not found")
            Preconditions(body.metadata.uid, body.metadata.resource_version).check(old)
            new = {**old, **_content(body)}
            paths = res.diff_paths(old, new)
            if not paths:
                return
            if old["deletion_timestamp"] is not None and not new["finalizers"]:
                await _delete_device_row(conn, app_row, old)
                await _finish_app_deletion(conn, app_row)
                return
            await _update(conn, devices, _device_where(app, name), old, new, paths)
            if any(p.startswith((".spec.alias", ".spec.credentials")) for p in paths):
                await _set_aliases(conn, app, name, new["spec"])
            await emit(conn, change(_op(new), new, paths, app_row=app_row, device=True))

    async def delete_device(self, app: str, name: str, pre: Preconditions, guard: Guard = _allow) -> None:
        async with self._write() as conn:
            app_row = await _app(conn, app, lock=True)
            if app_row is None:
                raise NotFound(f"Application {app} not found")
            guard(app_row)
            old = await _device(conn, app, name, lock=True)
            if old is None or old["deletion_timestamp"] is not None:
                raise NotFound(f"Device {name} not found")
            pre.check(old)
            if old["finalizers"]:
                new = {**old, "deletion_timestamp": res.now()}
                await _update(conn, devices, _device_where(app, name), old, new, [".metadata"])
                await emit(conn, change("deleted", new, [".metadata"], app_row=app_row, device=True))
                return
            await _delete_device_row(conn, app_row, old)
            await _finish_app_deletion(conn, app_row)


# ------------------------------------------------------------------------------------------ row helpers


def _new_row(body: ApplicationIn | DeviceIn) -> Row:
    return {
        "uid": res.new_uuid(),
        "creation_timestamp": res.now(),
        "deletion_timestamp": None,
        "generation": 1,
        "resource_version": res.new_uuid(),
        "revision": 1,
        **_content(body),
    }


def _content(body: ApplicationIn | DeviceIn) -> Row:
    """The client-writable part of a resource."""
    m = body.metadata
    return {"labels": dict(m.labels), "annotations": dict(m.annotations), "finalizers": list(m.finalizers),
            "spec": dict(body.spec), "status": dict(body.status)}


def _op(row: Mapping[str, Any]) -> Operation:
    return "deleted" if row["deletion_timestamp"] is not None else "updated"


def _device_where(app: str, name: str) -> sa.ColumnElement[bool]:
    return sa.and_(devices.c.app == app, devices.c.name == name)


async def _app(conn: AsyncConnection, name: str, *, lock: bool = False) -> Row | None:
    query = sa.select(apps).where(apps.c.name == name)
    if lock:
        query = query.with_for_update()
    row = (await conn.execute(query)).mappings().first()
    return None if row is None else dict(row)


async def _device(conn: AsyncConnection, app: str, name: str, *, lock: bool = False) -> Row | None:
    query = sa.select(devices).where(_device_where(app, name))
    if lock:
        query = query.with_for_update()
    row = (await conn.execute(query)).mappings().first()
    return None if row is None else dict(row)


async def _devices_of(conn: AsyncConnection, app: str) -> list[Row]:
    query = sa.select(devices).where(devices.c.app == app).order_by(devices.c.name).with_for_update()
    return [dict(r) for r in (await conn.execute(query)).mappings().all()]


_WRITABLE = ("labels", "annotations", "finalizers", "spec", "status", "deletion_timestamp", "generation",
             "resource_version", "revision")


async def _update(conn: AsyncConnection, table: sa.Table, where: sa.ColumnElement[bool], old: Row, new: Row,
                  paths: list[str]) -> None:
    """Write ``new`` over ``old`` (compare-and-set on resourceVersion); bumps versions in ``new``."""
    new["generation"] = old["generation"] + (1 if res.spec_changed(paths) else 0)
    new["resource_version"] = res.new_uuid()
    new["revision"] = old["revision"] + 1
    values = {k: new[k] for k in _WRITABLE}
    result = await conn.execute(
        table.update().where(where, table.c.resource_version == old["resource_version"]).values(**values)
    )
    if result.rowcount != 1:
        raise Conflict("Conflict")


async def _set_aliases(conn: AsyncConnection, app: str, device: str, spec: Mapping[str, Any]) -> None:
    await conn.execute(device_aliases.delete().where(device_aliases.c.app == app,
                                                      device_aliases.c.device == device))
    rows = [{"app": app, "kind": kind, "alias": alias, "device": device}
            for kind, alias in sorted(res.aliases(spec))]
    if rows:
        await conn.execute(device_aliases.insert(), rows)


async def _delete_device_row(conn: AsyncConnection, app_row: Row, device: Row, *,
                             cascade: bool = False) -> None:
    await conn.execute(device_aliases.delete().where(device_aliases.c.app == app_row["name"],
                                                      device_aliases.c.device == device["name"]))
    await conn.execute(devices.delete().where(_device_where(app_row["name"], device["name"])))
    gone = {**device, "revision": device["revision"] + 1}
    await emit(conn, change("deleted", gone, ["."], app_row=app_row, device=True, cascade=cascade))


async def _hard_delete_app(conn: AsyncConnection, app_row: Row) -> None:
    """Remove the application; devices still present go with it (cascade records)."""
    gone = {**app_row, "revision": app_row["revision"] + 1}
    await emit(conn, change("deleted", gone, ["."], app_row=gone))
    for device in await _devices_of(conn, app_row["name"]):
        await _delete_device_row(conn, app_row, device, cascade=True)
    await conn.execute(apps.delete().where(apps.c.name == app_row["name"]))


async def _finish_app_deletion(conn: AsyncConnection, app_row: Row) -> None:
    """After a device is gone: a deleting app with no devices left loses ``has-devices`` (and may go)."""
    if app_row["deletion_timestamp"] is None or res.HAS_DEVICES not in app_row["finalizers"]:
        return
    if await _devices_of(conn, app_row["name"]):
        return
    finalizers = [f for f in app_row["finalizers"] if f != res.HAS_DEVICES]
    if not finalizers:
        await _hard_delete_app(conn, app_row)
        return
    new = {**app_row, "finalizers": finalizers}
    await _update(conn, apps, (apps.c.name == app_row["name"]), app_row, new, [".metadata"])
    await emit(conn, change("deleted", new, [".metadata"], app_row=new))


__all__ = ["Guard", "Preconditions", "Registry", "RegistryError", "Row", "Visible"]
