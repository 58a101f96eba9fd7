"""Outbox writes: the :class:`schemas.registry.RegistryChange` record of a resource change, appended to the
``outbox`` table inside the transaction that made the change (reference §3.3)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from registry import resources as res
from registry.tables import outbox
from schemas.keys import app_key, device_key
from schemas.registry import Operation, RegistryChange

#: ``conn.info`` key of the list collecting the changes of the current transaction (for ``on_commit``)
CHANGES = "kedge_registry_changes"


def change(operation: Operation, row: Mapping[str, Any], paths: list[str], *, app_row: Mapping[str, Any],
           device: bool = False, cascade: bool = False) -> RegistryChange:
    """The record of a change of ``row`` (an app row, or a device row with ``device=True``)."""
    return RegistryChange.model_validate({
        "operation": operation,
        "app": app_row["name"],
        "appUid": app_row["uid"],
        "device": row["name"] if device else None,
        "paths": paths,
        "generation": row["generation"],
        "resourceVersion": row["resource_version"],
        "uid": row["uid"],
        "revision": row["revision"],
        "disabled": res.disabled(row["spec"]),
        "cascade": cascade,
        "deleting": row["deletion_timestamp"] is not None and paths != ["."],
    })


async def emit(conn: AsyncConnection, record: RegistryChange) -> None:
    """Append ``record`` to the outbox (same transaction as the resource write).

    Device records are keyed by the device key; application records by ``pct(app)`` and marked for every
    partition of the ``registry`` topic (each partition's agent must see them).
    """
    conn.info.setdefault(CHANGES, []).append(record)
    key = app_key(record.app) if record.device is None else device_key(record.app, record.device)
    await conn.execute(outbox.insert().values(
        key=key,
        value=record.model_dump_json(by_alias=True).encode(),
        all_partitions=record.device is None,
        created=res.now(),
    ))
