"""The relay lock: at most one outbox relay per database sends.

PostgreSQL: a session advisory lock held on a connection of its own, for the relay's whole lead. SQLite: an
exclusive ``flock`` on ``<database>.relay-lock``. In-memory SQLite and other dialects: no lock (one process).

Invariants of the PostgreSQL lock:

- The lock connection never goes back to the pool. A pooled connection is only ROLLBACKed on return, which
  does not release a session advisory lock: the lock would stay held by an idle pooled session, and since
  advisory locks are re-entrant per session, any later checkout of that session "gets" it again. Releasing
  unlocks (bounded) and then invalidates the connection, so the session ends and the server frees the lock
  whatever state the connection was in (a cancelled query, a dead socket).
- A connection that may hold the lock is never leaked: acquisition interrupted at any point (cancellation,
  timeout, error) invalidates it.
- The holder verifies its session every cycle (:meth:`RelayLock.hold`) and the rows it relays are read on
  that session (:meth:`RelayLock.read`), each bounded by ``check_timeout_s``; on failure it steps down. So a
  relay whose lock session was terminated or cut off never sends rows committed after that. The server side:
  the lock session asks for TCP keepalives (and ``tcp_user_timeout``) so that, after a network partition,
  the server ends the session and frees the lock within about :data:`SERVER_DEAD_PEER_S` seconds instead of
  the OS default of hours. A killed relay process (SIGKILL) closes its socket, and the server frees the lock
  at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
from collections.abc import Sequence
from typing import Any, BinaryIO

import sqlalchemy as sa
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

log = logging.getLogger(__name__)
PG_RELAY_LOCK = 0x6B65646766
#: server-side dead-peer detection on the lock session: keepalive idle, interval, count (s, s, probes)
KEEPALIVE = (10, 5, 3)
SERVER_DEAD_PEER_S = KEEPALIVE[0] + KEEPALIVE[1] * KEEPALIVE[2]


class LockLost(Exception):
    """The session holding the relay lock is gone or does not answer: stop sending."""


class RelayLock:
    """No lock: always held (one process per database). Base of the real locks."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    @property
    def held(self) -> bool:
        return True

    async def hold(self) -> bool:
        """Take the lock, or verify it is still held; False while another relay holds it."""
        return True

    async def release(self) -> None:
        """Give the lock up (idempotent)."""

    async def read(self, query: sa.Select[Any]) -> Sequence[RowMapping]:
        """Run ``query`` (PostgreSQL: on the lock session while held, raising :class:`LockLost` if it fails)."""
        async with self.engine.connect() as conn:
            rows: Sequence[RowMapping] = (await conn.execute(query)).mappings().all()
            await conn.rollback()
        return rows


class FileRelayLock(RelayLock):
    """An exclusive ``flock`` on ``path``; released when the handle is closed (or the process dies)."""

    def __init__(self, engine: AsyncEngine, path: str) -> None:
        super().__init__(engine)
        self.path = path
        self._file: BinaryIO | None = None

    @property
    def held(self) -> bool:
        return self._file is not None

    async def hold(self) -> bool:
        if self._file is not None:
            if self._same_file(self._file):
                return True
            # the lock file was removed or replaced: a relay opening the path now would lock another file
            log.warning("outbox relay: the relay lock file %s was removed or replaced; stepping down", self.path)
            await self.release()
        self._file = self._take()
        return self._file is not None

    def _take(self) -> BinaryIO | None:
        handle = open(self.path, "a+b")  # noqa: SIM115 - held for the relay's lead
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            return None
        if not self._same_file(handle):  # replaced between open and flock
            handle.close()
            return None
        return handle

    def _same_file(self, handle: BinaryIO) -> bool:
        try:
            now = os.stat(self.path)
        except FileNotFoundError:
            return False
        held = os.fstat(handle.fileno())
        return (now.st_dev, now.st_ino) == (held.st_dev, held.st_ino)

    async def release(self) -> None:
        handle, self._file = self._file, None
        if handle is not None:
            handle.close()  # releases the flock


class PgRelayLock(RelayLock):
    """A session advisory lock on a dedicated connection (see the module docstring for its invariants)."""

    def __init__(self, engine: AsyncEngine, *, check_timeout_s: float = 5.0, key: int = PG_RELAY_LOCK) -> None:
        super().__init__(engine)
        self.check_timeout_s = check_timeout_s
        self.key = key
        self._conn: AsyncConnection | None = None

    @property
    def held(self) -> bool:
        return self._conn is not None

    async def hold(self) -> bool:
        if self._conn is not None:
            try:
                async with asyncio.timeout(self.check_timeout_s):
                    await self._conn.execute(sa.text("SELECT 1"))
                    await self._conn.commit()
                return True
            except Exception as exc:
                await self._lost(exc)
        return await self._acquire()

    async def _acquire(self) -> bool:
        conn: AsyncConnection | None = None
        try:
            async with asyncio.timeout(self.check_timeout_s):
                conn = await self.engine.connect()
                got = (await conn.execute(sa.text("SELECT pg_try_advisory_lock(:k)"), {"k": self.key})).scalar()
                if got:
                    idle, interval, count = KEEPALIVE
                    await conn.execute(sa.text(
                        "SELECT set_config('tcp_keepalives_idle', :i, false),"
                        " set_config('tcp_keepalives_interval', :n, false),"
                        " set_config('tcp_keepalives_count', :c, false),"
                        " set_config('tcp_user_timeout', :u, false)"),
                        {"i": str(idle), "n": str(interval), "c": str(count), "u": str(SERVER_DEAD_PEER_S * 1000)})
                await conn.commit()
        except BaseException:
            if conn is not None:  # the lock may have been granted even if we never saw the answer
                await asyncio.shield(_discard(conn))
            raise
        if got:
            self._conn = conn
            log.info("outbox relay: holding the relay lock")
            return True
        await conn.close()  # never held the lock: safe to pool
        return False

    async def _lost(self, exc: BaseException) -> None:
        log.warning("outbox relay: lost the session holding the relay lock (%s: %s); stepping down",
                    type(exc).__name__, exc)
        conn, self._conn = self._conn, None
        if conn is not None:
            await asyncio.shield(_discard(conn))

    async def read(self, query: sa.Select[Any]) -> Sequence[RowMapping]:
        conn = self._conn
        if conn is None:
            return await super().read(query)
        try:
            async with asyncio.timeout(self.check_timeout_s):
                rows: Sequence[RowMapping] = (await conn.execute(query)).mappings().all()
                await conn.rollback()
        except Exception as exc:
            await self._lost(exc)
            raise LockLost(f"{type(exc).__name__}: {exc}") from exc
        return rows

    async def release(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        with contextlib.suppress(Exception):  # a broken session: ending it below frees the lock anyway
            async with asyncio.timeout(self.check_timeout_s):
                await conn.rollback()
                await conn.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": self.key})
                await conn.commit()
        await _discard(conn)


async def _discard(conn: AsyncConnection) -> None:
    """End the connection's session (never return it to the pool); bounded by SQLAlchemy's terminate."""
    with contextlib.suppress(Exception):
        await conn.invalidate()
    with contextlib.suppress(Exception):
        await conn.close()


def relay_lock(engine: AsyncEngine, *, check_timeout_s: float = 5.0) -> RelayLock:
    """The relay lock for ``engine``'s database."""
    if engine.dialect.name == "postgresql":
        return PgRelayLock(engine, check_timeout_s=check_timeout_s)
    database = engine.url.database
    if engine.dialect.name == "sqlite" and database and database != ":memory:":
        return FileRelayLock(engine, f"{database}.relay-lock")
    return RelayLock(engine)
