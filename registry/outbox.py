"""The outbox relay: publishes committed registry changes to the ``registry`` topic, in outbox id order.

At-least-once and never dropping: a row is deleted only after Kafka acknowledged every record made from
it; on any failure the relay backs off (``retry_s`` doubling up to ``max_backoff_s``), recreates its
producer and retries from the oldest row left, so while Kafka is down writes still commit and the rows
wait. Records of one round are sent pipelined and awaited in order, and only the acknowledged *prefix* is
deleted, so per key the last delivered record is always the newest (a failure may cause duplicates, which
consumers tolerate through ``revision``). Application-level rows go to EVERY partition of the topic.

One relay per database relays: with several API processes on one database only the one holding the
relay lock sends (``registry.relay_lock``: PostgreSQL, a session advisory lock on a connection of its own;
SQLite, an exclusive ``flock`` on ``<database>.relay-lock``); the others stay idle and take over when it goes
away. The holder verifies its lock every cycle (and, on PostgreSQL, reads the rows it sends on the lock
session), so it steps down (closes its producer, sends nothing more) as soon as the lock is lost. A lock lost
in the middle of a round may still cause duplicates (never a loss): that round's rows were read while the
lock was held.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from aiokafka import AIOKafkaProducer
from sqlalchemy.ext.asyncio import AsyncEngine

from registry import metrics
from registry.db import write_connection
from registry.relay_lock import LockLost, RelayLock, relay_lock
from registry.tables import outbox
from topology.names import REGISTRY

log = logging.getLogger(__name__)


class OutboxRelay:
    """Relay loop; :meth:`notify` after a commit, :meth:`start`/:meth:`stop` around the process's life."""

    def __init__(self, engine: AsyncEngine, producer_factory: Callable[[], AIOKafkaProducer], *,
                 topic: str = REGISTRY, retry_s: float = 2.0, max_backoff_s: float = 30.0,
                 batch: int = 200, poll_s: float = 5.0, stop_timeout_s: float = 5.0,
                 lock_check_s: float = 5.0) -> None:
        self.engine = engine
        self.producer_factory = producer_factory
        self.topic = topic
        self.retry_s = retry_s
        self.max_backoff_s = max_backoff_s
        self.batch = batch
        self.poll_s = poll_s
        self.stop_timeout_s = stop_timeout_s
        self.sent = 0
        self.failures = 0
        #: the error of the current outage (None while records flow)
        self.last_error: str | None = None
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._producer: AIOKafkaProducer | None = None
        #: the relay lock; ``lock_check_s`` bounds each verification of it (then the relay steps down)
        self.lock: RelayLock = relay_lock(engine, check_timeout_s=lock_check_s)
        self._held = False
        self._stopping = False

    @property
    def leading(self) -> bool:
        """True while this relay holds the relay lock of its database."""
        return self._held and self.lock.held

    def notify(self, *_args: Any) -> None:
        """Wake the relay (call after a commit that wrote outbox rows)."""
        self._wake.set()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self.run(), name="outbox-relay")

    async def stop(self) -> None:
        """Stop relaying. Rows not yet acknowledged stay in the outbox for the next start."""
        task, self._task = self._task, None
        if task is None:
            return
        # the flag, not only the cancellation: a CancelledError thrown into a database driver call may be
        # absorbed there (seen with SQLAlchemy + asyncpg), and the loop must still end
        self._stopping = True
        self._wake.set()
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=self.stop_timeout_s * 2)
        if not done:
            log.warning("outbox relay did not stop within %.0fs", self.stop_timeout_s * 2)
        elif not task.cancelled() and task.exception() is not None:
            log.warning("outbox relay ended with %r", task.exception())

    async def run(self) -> None:
        """Relay until cancelled."""
        backoff = self.retry_s
        self._stopping = False
        try:
            while not self._stopping:
                try:
                    self._held = await self.lock.hold()
                    if not self._held:
                        await self._stop_producer()  # lost the lead (if it had it): send nothing more
                        await self._idle(self.poll_s)
                        continue
                    if self._producer is None:
                        producer = self.producer_factory()
                        try:
                            await producer.start()
                        except BaseException:
                            await self._close(producer)
                            raise
                        self._producer = producer
                    self._wake.clear()
                    sent = await self.drain_once(self._producer)
                    if self.last_error is not None:
                        log.warning("outbox relay: Kafka is back, delivering again")
                        self.last_error = None
                    backoff = self.retry_s
                    if sent == 0:
                        await self._idle(self.poll_s)
                except asyncio.CancelledError:
                    raise
                except LockLost:  # logged by the lock; the next round tries to take it again
                    self._held = False
                    await self._stop_producer()
                except Exception as exc:
                    self.failures += 1
                    metrics.OUTBOX_FAILURES.inc()
                    first = self.last_error is None
                    self.last_error = f"{type(exc).__name__}: {exc}"
                    # one warning per outage (then at debug level), so a long outage does not flood the log
                    log.log(logging.WARNING if first else logging.DEBUG,
                            "outbox relay: %s; retrying in %.1fs (changes stay in the outbox)",
                            self.last_error, backoff)
                    await self._stop_producer()
                    await self._idle(backoff, wake=False)
                    backoff = min(backoff * 2, self.max_backoff_s)
        finally:
            self._held = False
            # shielded: a second cancellation must not leave the lock held by a live session
            await asyncio.shield(self._step_down())

    async def _step_down(self) -> None:
        # the producer first: records still in flight must not land after the next leader's newer ones
        await self._stop_producer()
        await self.lock.release()

    async def _stop_producer(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            await self._close(producer)

    async def _idle(self, seconds: float, *, wake: bool = True) -> None:
        """Wait ``seconds``, or less when woken (by a commit if ``wake``; always by :meth:`stop`)."""
        deadline = asyncio.get_running_loop().time() + seconds
        while not self._stopping:
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                return
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(remaining):
                    await self._wake.wait()
            if wake or self._stopping:
                return
            self._wake.clear()  # a commit during backoff: keep backing off, the rows wait

    async def _close(self, producer: AIOKafkaProducer) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(producer.stop(), self.stop_timeout_s)

    async def drain_once(self, producer: AIOKafkaProducer) -> int:
        """Send one round of the oldest rows; delete the acknowledged prefix; raise on the first failure
        (:class:`~registry.relay_lock.LockLost` when the rows could not be read on the lock session)."""
        rows = await self.lock.read(sa.select(outbox).order_by(outbox.c.id).limit(self.batch))
        if not rows:
            return 0
        partitions: list[int] | None = None
        pending: list[tuple[int, list[asyncio.Future[Any]]]] = []
        failure: BaseException | None = None
        try:
            for row in rows:
                key = row["key"].encode()
                if row["all_partitions"]:
                    if partitions is None:
                        partitions = sorted(await producer.partitions_for(self.topic))
                    futures = [await producer.send(self.topic, row["value"], key=key, partition=p)
                               for p in partitions]
                else:
                    futures = [await producer.send(self.topic, row["value"], key=key)]
                pending.append((row["id"], futures))
        except Exception as exc:  # sending stopped: what was handed over may still be acknowledged
            failure = exc
        acked: list[int] = []
        for row_id, futures in pending:
            results = await asyncio.gather(*futures, return_exceptions=True)
            errors = [r for r in results if isinstance(r, BaseException)]
            if errors:
                failure = failure or errors[0]
                break
            acked.append(row_id)
        if acked:
            async with self.engine.connect() as conn:
                conn = await write_connection(conn)
                async with conn.begin():
                    await conn.execute(outbox.delete().where(outbox.c.id.in_(acked)))
            self.sent += len(acked)
            metrics.OUTBOX_SENT.inc(len(acked))
        if failure is not None:
            raise failure
        return len(acked)
