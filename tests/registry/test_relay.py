"""The outbox relay's acknowledgement rules, with a small hand-written producer (the integration tests in
``test_outbox.py`` use the real broker)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from registry.db import create_engine, migrate
from registry.outbox import OutboxRelay
from registry.relay_lock import KEEPALIVE, FileRelayLock, LockLost, PgRelayLock
from registry.store import Registry
from registry.tables import outbox
from schemas.keys import app_key, device_key
from schemas.registry import ApplicationIn, DeviceIn
from tests.support.procs import eventually


class FakeProducer:
    """Acknowledges sends, except those whose number (from 1) is in ``fail``; records what it acknowledged."""

    def __init__(self, fail: set[int], partitions: int = 3) -> None:
        self.fail = fail
        self.partitions = partitions
        self.count = 0
        self.acked: list[tuple[bytes, int | None]] = []

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def partitions_for(self, _topic: str) -> set[int]:
        return set(range(self.partitions))

    async def send(self, _topic: str, _value: bytes, *, key: bytes, partition: int | None = None) -> Any:
        self.count += 1
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self.count in self.fail:
            future.set_exception(RuntimeError(f"send {self.count} failed"))
        else:
            self.acked.append((key, partition))
            future.set_result(None)
        return future


async def _rows(engine: Any) -> list[str]:
    async with engine.connect() as conn:
        return [r.key for r in (await conn.execute(sa.select(outbox.c.key).order_by(outbox.c.id))).all()]


@pytest.fixture
async def registry(tmp_path: Path) -> Any:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'r.db'}")
    await migrate(engine)
    reg = Registry(engine)
    await reg.create_app(ApplicationIn.model_validate({"metadata": {"name": "a"}}), owner=None)
    for name in ("d1", "d2", "d3"):
        await reg.create_device("a", DeviceIn.model_validate({"metadata": {"name": name}}))
    yield reg
    await engine.dispose()


async def test_only_the_acknowledged_prefix_is_deleted(registry: Registry) -> None:
    engine = registry.engine
    # send 1..3: the app record to 3 partitions; 4: d1; 5: d2 fails; 6: d3 succeeds but comes after a failure
    producer = FakeProducer(fail={5})
    relay = OutboxRelay(engine, lambda: producer)
    with pytest.raises(RuntimeError, match="send 5 failed"):
        await relay.drain_once(producer)
    assert producer.acked[:3] == [(b"a", 0), (b"a", 1), (b"a", 2)]
    assert await _rows(engine) == ["a/d2", "a/d3"]  # d3 stays: it must not overtake d2 for good
    assert await relay.drain_once(producer) == 2
    assert await _rows(engine) == []
    assert relay.sent == 4


async def test_relay_loop_retries_until_delivered(registry: Registry) -> None:
    producer = FakeProducer(fail={1, 2})
    factory: Any = lambda: producer  # noqa: E731
    relay = OutboxRelay(registry.engine, factory, retry_s=0.01, max_backoff_s=0.02)
    relay.start()
    try:
        async def empty() -> bool:
            return await _rows(registry.engine) == []

        await eventually(empty, 10.0, "the outbox to be drained after failed sends")
        assert relay.failures >= 1 and relay.last_error is None  # cleared once records flow again
    finally:
        await relay.stop()


async def _pg_database(request: pytest.FixtureRequest, unique: str) -> str:
    """A PostgreSQL database of its own (advisory locks are per database, and the session's API host leads on
    its own): its URL."""
    from kedge.settings import Settings

    base = Settings(registry={"database_url": request.getfixturevalue("pg_url")}).registry_database_url
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    async with admin.connect() as conn:
        await conn.execute(sa.text(f'CREATE DATABASE "lead_{unique}"'))
    await admin.dispose()
    return base.rsplit("/", 1)[0] + f"/lead_{unique}"


async def _lock_holders(url: str) -> list[int]:
    """Server process ids holding an advisory lock in the database of ``url`` (seen from another session)."""
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            return list((await conn.execute(sa.text(
                "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted"
                " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"))).scalars())
    finally:
        await engine.dispose()



def _relay(engine: AsyncEngine, **options: Any) -> tuple[OutboxRelay, FakeProducer]:
    """A relay on ``engine`` whose producer (returned too) never fails."""
    producer = FakeProducer(fail=set())
    factory: Any = lambda: producer  # noqa: E731
    return OutboxRelay(engine, factory, **options), producer

@pytest.mark.integration
@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
async def test_one_relay_per_database(backend: str, request: pytest.FixtureRequest, tmp_path: Path,
                                      unique: str) -> None:
    """Two API processes on one database (an engine each): only the relay holding the relay lock sends, and
    stopping it releases the lock at once."""
    if backend == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'shared.db'}"
    else:
        url = await _pg_database(request, unique)
    engine_a, engine_b = create_engine(url), create_engine(url)
    await migrate(engine_a)
    relay_a, first = _relay(engine_a, poll_s=0.05)
    relay_b, second = _relay(engine_b, poll_s=0.05)
    relay_a.start()
    try:
        await eventually(lambda: relay_a.leading, 10.0, "the first relay to lead")
        relay_b.start()
        reg = Registry(engine_a)
        app = f"lead-{unique}"
        await reg.create_app(ApplicationIn.model_validate({"metadata": {"name": app}}), owner=None)
        await reg.create_device(app, DeviceIn.model_validate({"metadata": {"name": "d"}}))

        async def empty() -> bool:
            return await _rows(engine_a) == []

        await eventually(empty, 10.0, "the outbox to be drained")
        assert second.count == 0 and first.count >= 4 and not relay_b.leading
        holder = await _lock_holders(url) if backend == "postgresql" else []
        await relay_a.stop()  # the lock is released: the other relay takes over
        if backend == "postgresql":
            # released by stop() itself, not left held by an idle pooled session (the cause of issue 9)
            assert len(holder) == 1 and holder[0] not in await _lock_holders(url)
        await reg.create_device(app, DeviceIn.model_validate({"metadata": {"name": "e"}}))
        await eventually(empty, 10.0, "the second relay to take over")
        assert second.count >= 1 and relay_b.leading
    finally:
        await relay_a.stop()
        await relay_b.stop()
        await engine_a.dispose()
        await engine_b.dispose()


async def _terminate(url: str, pid: int) -> None:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            assert (await conn.execute(sa.text("SELECT pg_terminate_backend(:p)"), {"p": pid})).scalar()
            await conn.commit()
    finally:
        await engine.dispose()


@pytest.mark.integration
async def test_relay_steps_down_when_its_lock_session_is_killed(request: pytest.FixtureRequest,
                                                                 unique: str) -> None:
    """The lock holder's backend is terminated (a DBA, a failover, a partition the server detected): the
    other relay takes over, the old one steps down, and every outbox row is published exactly once."""
    url = await _pg_database(request, unique)
    engine_a, engine_b = create_engine(url), create_engine(url)
    await migrate(engine_a)
    # the old holder only looks at its lock when woken: it notices the loss after the other relay took over
    relay_a, first = _relay(engine_a, poll_s=60.0)
    relay_b, second = _relay(engine_b, poll_s=0.05)
    relay_a.start()
    try:
        await eventually(lambda: relay_a.leading, 10.0, "the first relay to lead")
        relay_b.start()
        reg = Registry(engine_a)
        app = f"kill-{unique}"
        await reg.create_app(ApplicationIn.model_validate({"metadata": {"name": app}}), owner=None)
        await reg.create_device(app, DeviceIn.model_validate({"metadata": {"name": "d"}}))
        relay_a.notify()

        async def empty() -> bool:
            return await _rows(engine_a) == []

        await eventually(empty, 10.0, "the outbox to be drained by the first relay")
        [pid] = await _lock_holders(url)
        await _terminate(url, pid)
        await reg.create_device(app, DeviceIn.model_validate({"metadata": {"name": "e"}}))
        await eventually(lambda: relay_b.leading, 10.0, "the second relay to take over")
        relay_a.notify()  # the old holder checks its lock session, finds it gone and steps down
        await eventually(lambda: not relay_a.leading and relay_a.lock.held is False, 10.0,
                         "the first relay to step down")
        await reg.create_device(app, DeviceIn.model_validate({"metadata": {"name": "f"}}))
        relay_a.notify()
        await eventually(empty, 10.0, "the outbox to be drained by the second relay")
        sent = first.acked + second.acked
        expected: list[tuple[bytes, int | None]] = [(app_key(app).encode(), p) for p in range(3)]
        expected += [(device_key(app, d).encode(), None) for d in "def"]
        assert sorted(sent, key=repr) == sorted(expected, key=repr)  # none lost, none twice
        assert [k for k, _ in second.acked] == [device_key(app, d).encode() for d in "ef"]
        assert relay_b.leading and not relay_a.leading
    finally:
        await relay_a.stop()
        await relay_b.stop()
        await engine_a.dispose()
        await engine_b.dispose()


@pytest.mark.integration
async def test_rows_are_read_on_the_lock_session(request: pytest.FixtureRequest, unique: str) -> None:
    """A holder whose lock session died cannot read (so cannot send) rows: it raises LockLost and lets go."""
    url = await _pg_database(request, unique)
    engine = create_engine(url)
    await migrate(engine)
    lock = PgRelayLock(engine, check_timeout_s=5.0)
    try:
        assert await lock.hold() and lock.held
        # the server drops the session (and frees the lock) if its peer goes silent: TCP keepalives asked for
        setting = sa.select(sa.func.current_setting("tcp_keepalives_idle").label("v"))
        assert [r["v"] for r in await lock.read(setting)] == [str(KEEPALIVE[0])]
        other = PgRelayLock(engine)
        assert not await other.hold() and not other.held  # a second session cannot take it
        [pid] = await _lock_holders(url)
        await _terminate(url, pid)
        with pytest.raises(LockLost):
            await lock.read(sa.select(outbox))
        assert not lock.held
        assert await other.hold()  # the server freed the lock with the session
        await other.release()
        assert await _lock_holders(url) == []
    finally:
        await lock.release()
        await engine.dispose()


@pytest.mark.integration
async def test_an_interrupted_acquisition_never_leaves_the_lock_held(request: pytest.FixtureRequest,
                                                                     unique: str) -> None:
    """stop() may cancel the relay at any point of taking the lock (even after the server granted it but
    before the relay saw the answer): the session that may hold it is ended, never pooled or leaked."""
    url = await _pg_database(request, unique)
    engine = create_engine(url)
    await migrate(engine)
    cancelled = 0
    try:
        for step in range(40):
            lock = PgRelayLock(engine)
            task = asyncio.get_running_loop().create_task(lock.hold())
            await asyncio.sleep(step * 0.0005)
            task.cancel()
            try:
                assert await task
                await lock.release()  # it was quicker than the cancellation
            except asyncio.CancelledError:
                cancelled += 1
                assert not lock.held
            assert await _lock_holders(url) == [], f"the lock was left held (cancelled after {step * 0.5} ms)"
        assert cancelled > 0
    finally:
        await engine.dispose()


async def test_sqlite_relay_lock_steps_down_when_the_lock_file_is_replaced(tmp_path: Path) -> None:
    """flock locks a file, not a path: a holder whose lock file was removed no longer excludes anyone."""
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'r.db'}")
    path = str(tmp_path / "r.db.relay-lock")
    a, b = FileRelayLock(engine, path), FileRelayLock(engine, path)
    try:
        assert await a.hold() and not await b.hold()
        os.unlink(path)
        assert await b.hold()  # a new file, free
        assert not await a.hold() and not a.held  # a notices, and the new file is b's
        await b.release()
        assert await a.hold()
    finally:
        await a.release()
        await b.release()
        await engine.dispose()


class BlackholeProxy:
    """A TCP proxy to PostgreSQL that can go silent without closing anything: a network partition as the
    client sees it (its writes vanish, no answer, no reset)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.silent = False
        self.server: asyncio.Server | None = None
        self.writers: list[asyncio.StreamWriter] = []

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.port)
        self.writers += [writer, up_writer]
        await asyncio.gather(self._pump(reader, up_writer), self._pump(up_reader, writer),
                             return_exceptions=True)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            if not self.silent:
                writer.write(data)
                await writer.drain()
        if not self.silent:  # a partition does not pass a close on either
            writer.close()

    async def stop(self) -> None:
        for w in self.writers:
            w.close()
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


@pytest.mark.integration
async def test_relay_steps_down_when_its_lock_session_goes_silent(request: pytest.FixtureRequest,
                                                                  unique: str) -> None:
    """A half-open lock connection (partition): the holder's bounded check fails, it steps down and sends
    nothing more; once the server ends the session (keepalive; here pg_terminate_backend) the other relay
    takes over and delivers what the old holder could not."""
    from sqlalchemy.engine import make_url

    url = await _pg_database(request, unique)
    target = make_url(url)
    assert target.port is not None
    proxy = BlackholeProxy(target.port)
    proxied = target.set(port=await proxy.start()).render_as_string(hide_password=False)
    engine_a, engine_b = create_engine(proxied), create_engine(url)
    await migrate(engine_b)
    relay_a, first = _relay(engine_a, poll_s=0.05, lock_check_s=1.0, retry_s=0.05, max_backoff_s=0.1)
    relay_b, second = _relay(engine_b, poll_s=0.05)
    relay_a.start()
    try:
        await eventually(lambda: relay_a.leading, 10.0, "the first relay to lead")
        relay_b.start()
        reg = Registry(engine_b)
        app = f"silent-{unique}"
        await reg.create_app(ApplicationIn.model_validate({"metadata": {"name": app}}), owner=None)

        async def empty() -> bool:
            return await _rows(engine_b) == []

        await eventually(empty, 10.0, "the outbox to be drained by the first relay")
        [pid] = await _lock_holders(url)
        proxy.silent = True
        await reg.create_device(app, DeviceIn.model_validate({"metadata": {"name": "d"}}))
        await eventually(lambda: not relay_a.leading, 10.0, "the silent holder to step down")
        assert await _lock_holders(url) == [pid] and not relay_b.leading  # the server has not noticed yet
        await _terminate(url, pid)  # what the lock session's TCP keepalive does after SERVER_DEAD_PEER_S
        await eventually(empty, 10.0, "the second relay to take over")
        assert [k for k, _ in second.acked] == [device_key(app, "d").encode()]
        assert [k for k, _ in first.acked] == [app_key(app).encode()] * 3  # nothing after it went silent
    finally:
        await relay_a.stop()
        await relay_b.stop()
        await proxy.stop()
        await engine_a.dispose()
        await engine_b.dispose()
