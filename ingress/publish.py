"""The ONE publishing path for device events (HTTP, MQTT): a shared aiokafka producer per process.

Contract for the endpoints:

* :meth:`Publisher.publish` returns once Kafka acknowledged the record (``acks`` from settings, default
  ``all``: nothing a device was told "accepted" is lost by a broker failover). For HTTP and MQTT QoS 1.
* :meth:`Publisher.publish_nowait` enqueues and returns at once (MQTT QoS 0, best effort); a failed send is
  counted and logged, never raised.
* Both refuse instead of buffering without bound: at most ``kafka.max_in_flight`` records and
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
from dataclasses import dataclass
from typing import Any, Protocol

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from kedge import kafka as kafka_clients
from kedge.settings import KafkaSettings
from schemas.binding import to_kafka
from schemas.events import DeviceEvent
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


class PublishError(Exception):
    """Base of every publish failure."""


class QueueFull(PublishError):
    """Too many events are waiting for their Kafka ack in this process; the device should retry later."""


class PublishUnavailable(PublishError):
    """Kafka cannot take the event now (not connected, timed out, topic missing, broker error)."""


class TopicNotReady(PublishUnavailable):
    """The application's topic is not ready (its ``KafkaReady`` condition is false, reference §1.1)."""


@dataclass(frozen=True, slots=True)
class _Pending:
    """An event waiting for the drainer; ``handed`` (for :meth:`Publisher.publish`) receives its ack future."""

    producer: AIOKafkaProducer
    event: DeviceEvent
    size: int
    handed: asyncio.Future[asyncio.Future[Any]] | None


class EventSink(Protocol):
    """What an endpoint needs to publish device events; :class:`Publisher` is the real one."""

    @property
    def connected(self) -> bool: ...

    async def publish(self, event: DeviceEvent, *, topic_ready: bool = True) -> None: ...

    def publish_nowait(self, event: DeviceEvent, *, topic_ready: bool = True) -> None: ...

    @property
    def saturated(self) -> bool:
        """Too many events await their ack: a caller that can should stop reading until :meth:`wait_room`."""
        ...

    async def wait_room(self) -> None:
        """Return once the backlog is down to half of its limit."""
        ...


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
        """Stop connecting; let QoS 0 sends finish, flush the producer and close it."""
        if self._connector is not None:
            self._connector.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._connector
            self._connector = None
        with contextlib.suppress(TimeoutError):  # let best-effort sends finish (bounded)
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
        stall aiokafka); only the wait for the ack is the caller's.

        Raises :class:`QueueFull`, :class:`TopicNotReady` or :class:`PublishUnavailable`; ``ValueError`` when
        the event has no ``application`` extension (a programming error).
        """
        producer = self._admit(event, topic_ready)
        size = len(event.data)
        self.in_flight += 1
        self.in_flight_bytes += size
        handed: asyncio.Future[asyncio.Future[Any]] = asyncio.get_running_loop().create_future()
        self._hand_over(_Pending(producer, event, size, handed))
        try:
            async with asyncio.timeout(self._timeout_s):
                await (await handed)
        except TopicNotReady:
            self._on_outcome("not_ready")
            raise
        except TimeoutError:
            self._on_outcome("unavailable")
            raise PublishUnavailable(f"no Kafka ack within {self._timeout_s}s") from None
        except KafkaError as exc:
            self._on_outcome("unavailable")
            raise PublishUnavailable(f"kafka: {exc!r}") from exc
        finally:
            self.in_flight -= 1
            self.in_flight_bytes -= size
        self._on_outcome("accepted")

    def publish_nowait(self, event: DeviceEvent, *, topic_ready: bool = True) -> None:
        """Enqueue ``event`` without waiting for the ack (best effort, still bounded).

        Raises :class:`QueueFull`, :class:`TopicNotReady`, :class:`PublishUnavailable` synchronously; a later
        send failure is only counted and logged. One drain task hands the events to the producer in order: a
        task per event would leave aiokafka with thousands of concurrent senders, which it does not survive
        (measured: 64 / 1,024 / 8,192 concurrent senders gave 7.8k / 23k / 5.3k msg/s, and time-outs). Callers
        that can apply back-pressure watch :attr:`saturated` and :meth:`wait_room`.
        """
        producer = self._admit(event, topic_ready)
        self._count_in(len(event.data))
        self._hand_over(_Pending(producer, event, len(event.data), None))

    def _hand_over(self, pending: _Pending) -> None:
        self._backlog.append(pending)
        self._backlog_ready.set()
        if self._drainer is None or self._drainer.done():
            self._drainer = asyncio.create_task(self._drain(), name="kedge-publish-drain")

    @property
    def saturated(self) -> bool:
        return self.in_flight >= self._max_in_flight * 3 // 4 or self.in_flight_bytes >= self._max_bytes * 3 // 4

    async def wait_room(self) -> None:
        await self._room.wait()

    def _count_in(self, size: int) -> None:
        self.in_flight += 1
        self.in_flight_bytes += size
        self._idle.clear()
        if self.saturated:
            self._room.clear()

    def _count_out(self, size: int) -> None:
        self.in_flight -= 1
        self.in_flight_bytes -= size
        if self.in_flight <= self._max_in_flight // 2 and self.in_flight_bytes <= self._max_bytes // 2:
            self._room.set()
        if self.in_flight == 0:
            self._idle.set()

    async def _drain(self) -> None:
        while True:
            if not self._backlog:
                self._backlog_ready.clear()
                await self._backlog_ready.wait()
                continue
            pending = self._backlog.popleft()
            handed = pending.handed
            if handed is not None and handed.done():
                continue  # its publisher gave up waiting (time-out, cancelled): not sent
            try:
                async with asyncio.timeout(self._timeout_s):
                    ack = await self._enqueue(pending.producer, pending.event)
            except Exception as exc:  # counted and logged (or raised to the waiting publisher); the drainer goes on
                if handed is None:
                    self._best_effort_done(pending.event, pending.size, exc)
                elif not handed.done():
                    handed.set_exception(exc)
                continue
            if handed is None:
                ack.add_done_callback(functools.partial(self._acked, pending.event, pending.size))
            elif not handed.done():
                handed.set_result(ack)

    def _acked(self, event: DeviceEvent, size: int, ack: asyncio.Future[Any]) -> None:
        self._best_effort_done(event, size, None if ack.cancelled() else ack.exception())

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
        app = event.application
        if app is None:
            raise ValueError(f"event {event.id} has no application extension")
        topic = app_topic(app)
        if topic not in self._topics:
            await self._check_topic(producer, topic)
        record = to_kafka(event)
        ack: asyncio.Future[Any] = await producer.send(topic, record.value, key=record.key, headers=record.headers)
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


def _consume_exception(future: asyncio.Future[None]) -> None:
    if not future.cancelled():
        future.exception()
