"""The lease watcher: notices endpoint instances that stopped heartbeating and has their devices released.

Design (scales with the number of endpoints, not of sessions):

* Endpoints send :class:`~schemas.state.Heartbeat` records (key = instance id) to ``endpoint-heartbeats``
  every ``lease.heartbeat_interval_s``; each renews the instance's lease for ``lease_s`` seconds.
* The watcher agent consumes that topic and keeps, per instance, ``(seq, deadline)`` in the ``leases``
  table (deadline = receive wall time + ``lease_s``, so it survives a move to another worker) and in an
  in-memory heap of deadlines. A timer runs every ``check_interval_s`` on every worker, pops the expired
  deadlines of the heartbeat partitions this worker owns (no scan) and sends an *expiry marker* — a
  Heartbeat with ``lease_s=0`` carrying the expired lease's ``seq`` — to ``endpoint-heartbeats``. The heap is
  rebuilt from the ``leases`` table whenever this worker's assignment of that topic changes.
* The agent treats a ``lease_s=0`` record (marker, or an endpoint's own release on shutdown) as the end of
  the lease, unless a newer heartbeat (higher ``seq``) was seen meanwhile: it deletes the lease and sends
  :class:`~schemas.state.EndpointLost` to EVERY partition of ``device-state``. Table writes thereby happen
  only while processing a record (Faust's rule), and the loss is processed at least once.
* Each device-state partition ends its own holders of that instance (``reason=endpoint_lost``, Will,
  kick) from its endpoint index: no cross-partition scan, and each device's single writer stays single.

* Deadlines are only trusted while the watcher is caught up with its heartbeat partitions: a watcher that is
  replaying a backlog (a fresh worker on an uncompacted topic, or after a stall) would see every lease
  "expire" before it reached the newer heartbeats, and each false marker lengthens the backlog it is stuck
  behind. So no marker is sent for a partition with unprocessed records; the deadlines are kept and honoured
  once it has caught up. A partition that has records but makes no progress for ``lease_s`` is reported (an
  error with the consumer's flow state) and its fetching resumed.

Bound: a dead endpoint's devices are disconnected within ``lease_s`` + ``check_interval_s`` (+ Kafka
latency, + the time to catch up when the watcher is behind) of its last heartbeat. An endpoint that
released its lease (``StateClient.stop``) gets the same treatment at once: devices it still holds ended
without a DISCONNECT of their own, so ``endpoint_lost`` and their Will.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import orjson

from agents.config import AgentConfig
from schemas.state import EndpointLost, Heartbeat, MalformedRecord
from topology import names
from topology.faust_app import ROCKSDB_OPTIONS, KedgeFaustApp

log = logging.getLogger(__name__)

LEASES_TABLE = "leases"


class LeaseClock:
    """Pure deadline bookkeeping: ``track`` on heartbeats, ``expired`` on ticks (a lazy-deletion heap)."""

    def __init__(self) -> None:
        self.current: dict[str, tuple[float, int]] = {}
        self._heap: list[tuple[float, str, int]] = []

    def track(self, endpoint: str, deadline: float, seq: int) -> None:
        self.current[endpoint] = (deadline, seq)
        heapq.heappush(self._heap, (deadline, endpoint, seq))

    def forget(self, endpoint: str) -> None:
        self.current.pop(endpoint, None)

    def clear(self) -> None:
        self.current.clear()
        self._heap.clear()

    def expired(self, now: float) -> list[tuple[str, int]]:
        """Endpoints whose newest deadline passed; each is reported once (then forgotten)."""
        out: list[tuple[str, int]] = []
        while self._heap and self._heap[0][0] <= now:
            deadline, endpoint, seq = heapq.heappop(self._heap)
            if self.current.get(endpoint) == (deadline, seq):
                del self.current[endpoint]
                out.append((endpoint, seq))
        return out


@dataclass
class _Progress:
    """Where the watcher is in one heartbeat partition (offsets of processed records, monotonic times)."""

    processed: int = -1
    since: float = field(default_factory=time.monotonic)
    reported: bool = False


class LeaseWatcher:
    def __init__(self, app: KedgeFaustApp, config: AgentConfig, leases: Any) -> None:
        self.app = app
        self.config = config
        self.leases = leases
        self.clock = LeaseClock()
        self._assignment: frozenset[Any] | None = None
        self._progress: dict[Any, _Progress] = {}

    def processed(self, tp: Any, offset: int) -> None:
        """Note that the record at ``offset`` of heartbeat partition ``tp`` was handled."""
        progress = self._progress.setdefault(tp, _Progress())
        progress.processed = offset
        progress.since = time.monotonic()
        progress.reported = False

    async def on_heartbeat(self, value: bytes | None) -> None:
        try:
            hb = Heartbeat.from_bytes(value or b"")
        except MalformedRecord as e:
            log.warning("dropping malformed heartbeat: %s", e)
            return
        raw = self.leases.get(hb.endpoint)
        prev_seq = None if raw is None else int(orjson.loads(raw)["seq"])
        if prev_seq is not None and hb.seq < prev_seq:
            return  # older than what we know (or a marker overtaken by a newer heartbeat)
        if hb.lease_s > 0:
            if raw is None:
                log.info("lease of endpoint %s started (seq %d)", hb.endpoint, hb.seq)
            deadline = time.time() + hb.lease_s
            self.leases[hb.endpoint] = orjson.dumps({"seq": hb.seq, "deadline": deadline})
            self.clock.track(hb.endpoint, deadline, hb.seq)
            return
        if raw is not None:
            del self.leases[hb.endpoint]
        self.clock.forget(hb.endpoint)
        log.info("lease of endpoint %s ended (seq %d): releasing its devices", hb.endpoint, hb.seq)
        await self.broadcast_lost(hb.endpoint)

    async def broadcast_lost(self, endpoint: str) -> None:
        value = EndpointLost(endpoint).to_bytes()
        key = f"endpoint-lost/{endpoint}".encode()
        acks = [
            await self.app.producer.send(names.DEVICE_STATE, key, value, p, None, None)
            for p in range(self.config.device_partitions)
        ]
        await asyncio.gather(*acks)

    async def tick(self) -> None:
        if self.app.rebalancing or getattr(self.app, "in_recovery", False):
            self._assignment = None
            return
        assignment = frozenset(tp for tp in self.app.consumer.assignment() if tp.topic == names.ENDPOINT_HEARTBEATS)
        if assignment != self._assignment:
            self._rebuild()
            self._assignment = assignment
            self._progress = {tp: self._progress.get(tp, _Progress()) for tp in assignment}
        if not all([await self._caught_up(tp) for tp in assignment]):
            return  # deadlines wait: newer heartbeats may be among the records not processed yet
        now = time.time()
        for endpoint, seq in self.clock.expired(now):
            log.info("lease of endpoint %s expired", endpoint)
            marker = Heartbeat(endpoint, seq, now, 0.0).to_bytes()
            try:
                await asyncio.wait_for(
                    self.app.producer.send(names.ENDPOINT_HEARTBEATS, endpoint.encode(), marker, None, None, None),
                    self.config.lease_s)
            except Exception as e:
                log.error("could not send the expiry marker of %s: %r", endpoint, e)
                self.clock.track(endpoint, now + self.config.lease_check_interval_s, seq)

    async def _caught_up(self, tp: Any) -> bool:
        """True when every record of ``tp`` below its high-water mark was processed (or none is known)."""
        consumer = self.app.consumer
        highwater = consumer.highwater(tp)
        progress = self._progress.setdefault(tp, _Progress())
        if highwater is None or highwater <= 0 or progress.processed + 1 >= highwater:
            progress.since = time.monotonic()
            return True
        if progress.processed < 0 and ((await consumer.position(tp)) or 0) >= highwater:
            return True  # nothing new since this worker took the partition over
        stalled_s = time.monotonic() - progress.since
        if stalled_s > self.config.lease_s and not progress.reported:
            progress.reported = True
            log.error(
                "lease watcher made no progress on %s[%d] for %.1fs (processed up to %d, high-water %d; "
                "active=%s buffered=%s paused=%s): expiries wait; resuming its fetching",
                tp.topic, tp.partition, stalled_s, progress.processed, highwater,
                tp in (getattr(consumer, "_active_partitions", None) or ()),
                tp in getattr(consumer, "_buffered_partitions", ()), tp in getattr(consumer, "_paused_partitions", ()))
            consumer.on_buffer_drop(tp)
            consumer.resume_partitions([tp])
        return False

    def _rebuild(self) -> None:
        self.clock.clear()
        for key, raw in self.leases.items():
            endpoint = key.decode() if isinstance(key, bytes) else str(key)
            lease = orjson.loads(raw)
            self.clock.track(endpoint, float(lease["deadline"]), int(lease["seq"]))
        log.info("lease watcher tracks %d endpoint leases", len(self.clock.current))


def register(app: KedgeFaustApp, config: AgentConfig) -> LeaseWatcher:
    """Register the ``leases`` table, the heartbeat agent and the lease timer on ``app``."""
    leases = app.Table(
        LEASES_TABLE, partitions=config.endpoint_partitions, key_type=str, value_type=bytes,
        options=ROCKSDB_OPTIONS,
    )
    source = app.topic(
        names.ENDPOINT_HEARTBEATS, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw",
    )
    watcher = LeaseWatcher(app, config, leases)

    @app.agent(source, name="lease-watcher")
    async def lease_watcher(stream: Any) -> None:
        async for event in stream.events():
            await watcher.on_heartbeat(event.value)
            watcher.processed(event.message.tp, event.message.offset)

    async def lease_check() -> None:
        try:
            await watcher.tick()
        except Exception:  # a raise would end Faust's timer task silently, and with it every expiry
            log.exception("lease check failed")

    app.timer(interval=config.lease_check_interval_s, name="lease-check")(lease_check)
    del lease_watcher
    return watcher
