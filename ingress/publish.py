"""The ONE publishing path for device events (HTTP, MQTT): a shared aiokafka producer per process.

Contract for the endpoints:

* :meth:`Publisher.publish` returns once Kafka acknowledged the record (``acks`` from settings, default
  ``all``: nothing a device was told "accepted" is lost by a broker failover). For HTTP and MQTT QoS 1.
* :meth:`Publisher.publish_nowait` enqueues and returns at once (MQTT QoS 0, best effort); a failed send is
  counted and logged, never raised.
* :meth:`Publisher.publish_then` is :meth:`Publisher.publish` with a callback instead of a task per event
  (MQTT QoS 1): one timer for all of them enforces ``kafka.publish_timeout_s``.
* All refuse instead of buffering without bound: at most ``kafka.max_in_flight`` records and
  ``kafka.max_in_flight_bytes`` payload bytes wait for their ack; past that they raise :class:`QueueFull`.
  Inside that window aiokafka adds its own back-pressure (``send`` waits when a partition's batch is full).
* Errors are specific; each endpoint maps them to its protocol at its edge only:

  | exception | meaning | HTTP | MQTT 5 PUBACK |
  |---|---|---|---|
  | :class:`QueueFull` | too many in flight | 503 | 0x97 quota exceeded |
  | :class:`TopicNotReady` | ``KafkaReady`` false (reference §1.1), or the topic does not exist | 503 | 0x80 |
  | :class:`PublishUnavailable` | not connected, timeout, broker error | 503 | 0x80 |

  :class:`TopicNotReady` is a :class:`PublishUnavailable`. Drogue answers the not-ready gate with 500; Kedge
  answers 503 because the condition is transient (the topic operator is creating the topic) and a device
  should retry. :class:`~schemas.events.PayloadRejected` never reaches here: the builder raises it (HTTP 406).

* A publish never creates a topic: one the cluster does not list is refused (:class:`TopicNotReady`), so a
  broker with auto-creation (Tansu, Kafka's default) cannot make ``events-<app>`` with the wrong partitions.
* Records are partitioned by their key exactly as aiokafka's default partitioner would (the publisher picks
  the partition itself, remembered per key: :mod:`ingress.partitions`); the exceptions live in
  :mod:`ingress.sink` and are re-exported here.
* A timed-out publish (``kafka.publish_timeout_s``) may still be delivered later (aiokafka does not withdraw a
  record once batched): delivery is at-least-once, and the device's retry can duplicate it (ids differ).

Batching (numbers from ``KafkaSettings``; measured in reference ``embedded-kafka.md`` §6 on 2 cores):
``linger_ms`` 5 and ``max_batch_size`` 256 KiB gave 57-81k msg/s for 200 B records with acks=1 and p50/p99
produce latency 0.33/0.5 ms; the 5 ms linger bounds the added latency per publish and lets concurrent requests
share a batch. With acks=all on a single broker the ack costs the same; on a cluster it waits for the ISR.

The producer is connected in the background: when Kafka is unreachable at start the endpoint still serves and
answers 503 until the connection succeeds (retried every ``kafka.connect_retry_s``).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from ingress.partitions import PartitionCache
from ingress.sink import Done, EventSink, PublishError, PublishUnavailable, QueueFull, TopicNotReady
from kedge import kafka as kafka_clients
from kedge.settings import KafkaSettings
from schemas.binding import to_kafka
from schemas.events import DeviceEvent
from schemas.types import EXT_APPLICATION
from topology.names import app_topic

__all__ = [
    "EventSink",
    "PublishError",
    "PublishUnavailable",
    "Publisher",
    "QueueFull",
    "TopicNotReady",
]

log = logging.getLogger(__name__)

#: how often at most the publisher lists the cluster's topics when asked for an unknown one
TOPIC_REFRESH_S = 1.0


class _Pending:
    """One event between :meth:`Publisher.publish_nowait` / :meth:`Publisher.publish_then` and its Kafka ack.

    ``done`` is the acknowledged caller's callback (None: best effort); ``settled`` once its outcome is decided
    (ack, failure, time-out or the caller gave up), after which nothing about it is reported again. The pending
    itself is the done-callback of its ack future (no closure per event).
    """

    __slots__ = ("deadline", "done", "event", "producer", "publisher", "settled", "size")

    def __init__(self, publisher: Publisher, producer: AIOKafkaProducer, event: DeviceEvent, size: int,
                 done: Done | None, deadline: float) -> None:
        self.publisher = publisher
        self.producer = producer
        self.event = event
        self.size = size
        self.done = done
        self.deadline = deadline
        self.settled = False

    def __call__(self, ack: asyncio.Future[Any]) -> None:
        if self.done is None:
            self.publisher._best_effort_done(self.event, self.size, None if ack.cancelled() else ack.exception())
        elif ack.cancelled():
            self.publisher._settle(self, PublishUnavailable("kafka: the send was cancelled"))
        else:
            self.publisher._settle(self, ack.exception())


class Publisher:
    """One shared producer and the in-flight bound. Create once per process; ``start``/``stop`` it once.

    ``producer_factory`` builds a fresh (unstarted) producer; it is called again after a failed start.
    ``on_outcome`` (optional) is told ``"accepted"``, ``"queue_full"``, ``"not_ready"``, ``"unavailable"`` for
    every publish, for metrics.
    """

    def __init__(
        self,
        producer_factory: Callable[[], AIOKafkaProducer],
        *,
        max_in_flight: int,
        max_in_flight_bytes: int,
        timeout_s: float,
        connect_retry_s: float = 1.0,
        on_outcome: Callable[[str], None] | None = None,
    ) -> None:
        self._factory = producer_factory
        self._max_in_flight = max_in_flight
        self._max_bytes = max_in_flight_bytes
        self._timeout_s = timeout_s
        self._retry_s = connect_retry_s
        self._on_outcome = on_outcome or _ignore
        self._producer: AIOKafkaProducer | None = None
        self._connector: asyncio.Task[None] | None = None
        self._connected = asyncio.Event()
        #: best-effort events waiting for the drainer, which hands them to the producer one by one
        self._backlog: deque[_Pending] = deque()
        self._backlog_ready = asyncio.Event()
        self._drainer: asyncio.Task[None] | None = None
        self._room = asyncio.Event()
        self._room.set()
        self._idle = asyncio.Event()
        self._idle.set()
        self.in_flight = 0
        self.in_flight_bytes = 0
        self._full_at = (max_in_flight * 3 // 4, max_in_flight_bytes * 3 // 4)
        self._room_at = (max_in_flight // 2, max_in_flight_bytes // 2)
        #: acknowledged publishes in submission order (so in deadline order) for the one time-out timer
        self._waiting: deque[_Pending] = deque()
        self._watchdog: asyncio.TimerHandle | None = None
        self._partitions = PartitionCache()
        #: app -> its events topic (``app_topic`` is a regular expression match)
        self._topic_of: dict[str, str] = {}
        #: topics known to exist (see _check_topic)
        self._topics: set[str] = set()
        self._refresh: asyncio.Future[None] | None = None
        self._refreshed_at = -TOPIC_REFRESH_S

    @classmethod
    def from_settings(
        cls, kafka: KafkaSettings, on_outcome: Callable[[str], None] | None = None
    ) -> Publisher:
        """The publisher of a Kedge process, from ``KafkaSettings`` (producer options: :mod:`kedge.kafka`)."""
        return cls(
            lambda: kafka_clients.producer(kafka),
            max_in_flight=kafka.max_in_flight,
            max_in_flight_bytes=kafka.max_in_flight_bytes,
            timeout_s=kafka.publish_timeout_s,
            connect_retry_s=kafka.connect_retry_s,
            on_outcome=on_outcome,
        )

    # ------------------------------------------------------------------------------------------ lifecycle

    @property
    def connected(self) -> bool:
        return self._producer is not None

    async def start(self, wait_s: float | None = None) -> None:
        """Connect in the background; with ``wait_s``, also wait that long for the connection (no error)."""
        if self._connector is None:
            self._connector = asyncio.create_task(self._connect(), name="kedge-producer-connect")
        if wait_s:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._connected.wait(), wait_s)

    async def wait_connected(self, timeout_s: float) -> None:
        """Wait for the connection; :class:`PublishUnavailable` after ``timeout_s``."""
        try:
            await asyncio.wait_for(self._connected.wait(), timeout_s)
        except TimeoutError:
            raise PublishUnavailable(f"not connected to Kafka within {timeout_s}s") from None

    async def _connect(self) -> None:
        attempt = 0
        while True:
            producer = self._factory()
            try:
                await producer.start()
            except (KafkaError, OSError) as exc:
                attempt += 1
                with contextlib.suppress(Exception):
                    await producer.stop()
                if attempt == 1 or attempt % 30 == 0:
                    log.warning("kafka not reachable (%s); retrying every %ss", exc, self._retry_s)
                await asyncio.sleep(self._retry_s)
                continue
            self._producer = producer
            self._connected.set()
            if attempt:
                log.info("connected to kafka after %d failed attempts", attempt)
            return

    async def stop(self) -> None:
        """Stop connecting; let the sends in flight finish (bounded by ``timeout_s``), flush the producer and
        close it; an acknowledged publish still waiting then fails with :class:`PublishUnavailable`."""
        if self._connector is not None:
            self._connector.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._connector
            self._connector = None
        with contextlib.suppress(TimeoutError):  # let the sends in flight finish (bounded)
            await asyncio.wait_for(self._idle.wait(), self._timeout_s)
        if self._drainer is not None:
            self._drainer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._drainer
            self._drainer = None
        producer, self._producer = self._producer, None
        self._connected.clear()
        if producer is not None:
            await producer.stop()
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        while self._waiting:
            self._settle(self._waiting[0], PublishUnavailable("the publisher stopped"))

    # ------------------------------------------------------------------------------------------ publishing

    def _admit(self, event: DeviceEvent, topic_ready: bool) -> AIOKafkaProducer:
        if not topic_ready:
            self._on_outcome("not_ready")
            raise TopicNotReady("Kafka topic is not ready")
        producer = self._producer
        if producer is None:
            self._on_outcome("unavailable")
            raise PublishUnavailable("not connected to Kafka")
        if self.in_flight >= self._max_in_flight or self.in_flight_bytes + len(event.data) > self._max_bytes:
            self._on_outcome("queue_full")
            raise QueueFull(f"{self.in_flight} events ({self.in_flight_bytes} bytes) await their Kafka ack")
        return producer

    async def publish(self, event: DeviceEvent, *, topic_ready: bool = True) -> None:
        """Send ``event`` to its ``events-<app>`` topic and wait for the Kafka ack.

        The event goes through the same drain task as :meth:`publish_nowait` (many concurrent senders would
        stall aiokafka); only the wait for the ack is the caller's. Cancelling the caller gives the event up
        (not sent if the drainer had not reached it yet; otherwise its ack is ignored).

        Raises :class:`QueueFull`, :class:`TopicNotReady` or :class:`PublishUnavailable`; ``ValueError`` when
        the event has no ``application`` extension (a programming error).
        """
        result: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        pending = self._submit(event, topic_ready, functools.partial(_resolve, result))
        try:
            await result
        except asyncio.CancelledError:
            self._settle(pending, None, abandoned=True)
            raise

    def publish_then(self, event: DeviceEvent, done: Done, *, topic_ready: bool = True) -> None:
        """:meth:`publish` for callers that would otherwise need a task per event (MQTT QoS 1).

        Admission errors (:class:`QueueFull`, :class:`TopicNotReady`, :class:`PublishUnavailable`) are raised
        at once; otherwise ``done`` is called exactly once, from the event loop: ``done(None)`` after the Kafka
        ack, else ``done(exc)`` with what :meth:`publish` would raise (a time-out after ``timeout_s`` included).
        """
        self._submit(event, topic_ready, done)

    def _submit(self, event: DeviceEvent, topic_ready: bool, done: Done) -> _Pending:
        producer = self._admit(event, topic_ready)
        size = len(event.data)
        self.in_flight += 1
        self.in_flight_bytes += size
        self._idle.clear()  # stop() lets acknowledged publishes finish too
        loop = asyncio.get_running_loop()
        pending = _Pending(self, producer, event, size, done, loop.time() + self._timeout_s)
        self._waiting.append(pending)
        if self._watchdog is None:
            self._watchdog = loop.call_at(pending.deadline, self._expire)
        self._hand_over(pending)
        return pending

    def _settle(self, pending: _Pending, exc: BaseException | None, *, abandoned: bool = False) -> None:
        """Decide the outcome of an acknowledged publish once: count it, free its room, tell its caller."""
        if pending.settled:
            return
        pending.settled = True
        self._count_out(pending.size)
        waiting = self._waiting
        while waiting and waiting[0].settled:
            waiting.popleft()
        if abandoned:
            return
        if exc is None:
            self._on_outcome("accepted")
        elif isinstance(exc, TopicNotReady):
            self._on_outcome("not_ready")
        elif isinstance(exc, PublishUnavailable):
            self._on_outcome("unavailable")
        elif isinstance(exc, KafkaError | TimeoutError):
            self._on_outcome("unavailable")
            unavailable = PublishUnavailable(f"kafka: {exc!r}")
            unavailable.__cause__ = exc
            exc = unavailable
        done = pending.done
        assert done is not None
        try:
            done(exc)
        except Exception:
            log.exception("publish callback failed")

    def _expire(self) -> None:
        """The one time-out timer: settle every acknowledged publish past its deadline, re-arm for the next."""
        self._watchdog = None
        waiting = self._waiting
        loop = asyncio.get_running_loop()
        now = loop.time() + 0.001  # timers may fire a clock tick early
        while waiting:
            head = waiting[0]
            if head.settled:
                waiting.popleft()
            elif head.deadline <= now:
                self._settle(head, PublishUnavailable(f"no Kafka ack within {self._timeout_s}s"))
            else:
                self._watchdog = loop.call_at(head.deadline, self._expire)
                return

    def publish_nowait(self, event: DeviceEvent, *, topic_ready: bool = True) -> None:
        """Enqueue ``event`` without waiting for the ack (best effort, still bounded).

        Raises :class:`QueueFull`, :class:`TopicNotReady`, :class:`PublishUnavailable` synchronously; a later
        send failure is only counted and logged. One drain task hands the events to the producer in order: a
        task per event would leave aiokafka with thousands of concurrent senders, which it does not survive
        (measured: 64 / 1,024 / 8,192 concurrent senders gave 7.8k / 23k / 5.3k msg/s, and time-outs). Callers
        that can apply back-pressure watch :attr:`saturated` and :meth:`wait_room`.
        """
        producer = self._admit(event, topic_ready)
        size = len(event.data)
        self._count_in(size)
        self._hand_over(_Pending(self, producer, event, size, None, 0.0))

    def _hand_over(self, pending: _Pending) -> None:
        self._backlog.append(pending)
        if not self._backlog_ready.is_set():
            self._backlog_ready.set()
        drainer = self._drainer
        if drainer is None or drainer.done():
            self._drainer = asyncio.create_task(self._drain(), name="kedge-publish-drain")

    @property
    def saturated(self) -> bool:
        full, full_bytes = self._full_at
        return self.in_flight >= full or self.in_flight_bytes >= full_bytes

    async def wait_room(self) -> None:
        await self._room.wait()

    def _count_in(self, size: int) -> None:
        self.in_flight += 1
        self.in_flight_bytes += size
        self._idle.clear()
        full, full_bytes = self._full_at
        if self.in_flight >= full or self.in_flight_bytes >= full_bytes:
            self._room.clear()

    def _count_out(self, size: int) -> None:
        self.in_flight -= 1
        self.in_flight_bytes -= size
        room, room_bytes = self._room_at
        if self.in_flight <= room and self.in_flight_bytes <= room_bytes:
            self._room.set()
        if self.in_flight == 0:
            self._idle.set()

    async def _drain(self) -> None:
        """Hand the backlog to the producer in order. No time-out per event here: aiokafka bounds a ``send``
        that waits for batch room or metadata by ``request_timeout_ms``; acknowledged callers have their own
        deadline (:meth:`_expire`), and an event whose caller gave up is skipped."""
        backlog = self._backlog
        while True:
            if not backlog:
                self._backlog_ready.clear()
                await self._backlog_ready.wait()
                continue
            pending = backlog.popleft()
            if pending.settled:
                continue  # its publisher gave up waiting (time-out, cancelled): not sent
            try:
                ack = await self._enqueue(pending.producer, pending.event)
            except Exception as exc:  # counted and logged (or raised to the waiting publisher); the drainer goes on
                if pending.done is None:
                    self._best_effort_done(pending.event, pending.size, exc)
                else:
                    self._settle(pending, exc)
                continue
            ack.add_done_callback(pending)

    def _best_effort_done(self, event: DeviceEvent, size: int, exc: BaseException | None) -> None:
        self._count_out(size)
        if exc is None:
            self._on_outcome("accepted")
        elif isinstance(exc, TopicNotReady):
            self._on_outcome("not_ready")
            log.warning("best-effort publish refused: %s", exc)
        elif isinstance(exc, TimeoutError | KafkaError):
            self._on_outcome("unavailable")
            log.warning("best-effort publish to %s failed: %r", event.application, exc)
        else:
            self._on_outcome("error")
            log.error("best-effort publish failed: %r", exc)

    async def _enqueue(self, producer: AIOKafkaProducer, event: DeviceEvent) -> asyncio.Future[Any]:
        """Hand ``event`` to the producer's batch; the returned future is its Kafka ack."""
        app = event.extensions.get(EXT_APPLICATION)
        topic = self._topic_of.get(app) if app is not None else None
        if topic is None:
            if app is None:
                raise ValueError(f"event {event.id} has no application extension")
            topic = app_topic(app)
            if len(self._topic_of) >= 4096:
                self._topic_of.clear()
            self._topic_of[app] = topic
        if topic not in self._topics:
            async with asyncio.timeout(self._timeout_s):
                await self._check_topic(producer, topic)
        record = to_kafka(event)
        partition = self._partitions.partition(producer, topic, record.key)
        if partition is None:
            ack: asyncio.Future[Any] = await producer.send(topic, record.value, key=record.key,
                                                           headers=record.headers)
        else:
            ack = await producer.send(topic, record.value, key=record.key, partition=partition,
                                      headers=record.headers)
        return ack

    async def _check_topic(self, producer: AIOKafkaProducer, topic: str) -> None:
        """Refuse a topic that does not exist instead of letting the send create it.

        aiokafka asks for a topic's metadata with auto-creation allowed, and a broker with auto-creation on
        (Tansu always; Kafka by default) would then make ``events-<app>`` with its default partition count.
        So before the first send to a topic the publisher lists ALL topics (a request that creates nothing),
        at most once per ``TOPIC_REFRESH_S``, shared by concurrent callers.
        """
        if self._refresh is None and time.monotonic() - self._refreshed_at >= TOPIC_REFRESH_S:
            self._refresh = asyncio.ensure_future(self._refresh_topics(producer))
            self._refresh.add_done_callback(_consume_exception)  # its waiters may all have timed out
        if self._refresh is not None:
            await asyncio.shield(self._refresh)
        if topic not in self._topics:
            raise TopicNotReady(f"topic {topic!r} does not exist")

    async def _refresh_topics(self, producer: AIOKafkaProducer) -> None:
        try:
            cluster = await producer.client.fetch_all_metadata()
            self._topics = set(cluster.topics())
        finally:
            self._refreshed_at = time.monotonic()
            self._refresh = None


def _ignore(_: str) -> None:
    return None


def _resolve(result: asyncio.Future[None], exc: BaseException | None) -> None:
    if result.done():
        return
    if exc is None:
        result.set_result(None)
    else:
        result.set_exception(exc)


def _consume_exception(future: asyncio.Future[None]) -> None:
    if not future.cancelled():
        future.exception()
