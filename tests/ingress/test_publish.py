"""Component tests of ingress.publish.Publisher over a hand-written fake producer."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiokafka.errors import KafkaConnectionError, KafkaTimeoutError, NotLeaderForPartitionError

from ingress.publish import Publisher, PublishUnavailable, QueueFull, TopicNotReady
from schemas.binding import to_kafka
from schemas.events import DeviceEvent, build_device_event
from tests.support.procs import eventually


def event(app: str = "my-app", payload: bytes = b"1") -> DeviceEvent:
    return build_device_event(app=app, app_uid="u", device="d", device_uid="du", sender="d", sender_uid="du",
                              instance="i", channel="c", payload=payload, content_type="text/plain")


class FakeCluster:
    def __init__(self, topics: set[str]) -> None:
        self._topics = topics

    def topics(self) -> set[str]:
        return set(self._topics)


class FakeMetadata:
    """The producer's view of the partitions (none known: the producer partitions itself)."""

    def partitions_for_topic(self, topic: str) -> set[int] | None:
        return None


class FakeClient:
    """The producer's client: lists all topics (the request that creates nothing)."""

    def __init__(self, topics: set[str]) -> None:
        self.topics = topics
        self.listings = 0
        self.cluster = FakeMetadata()

    async def fetch_all_metadata(self) -> FakeCluster:
        self.listings += 1
        return FakeCluster(self.topics)


class FakeProducer:
    """Stands in for AIOKafkaProducer: ``send`` returns an ack future the test resolves."""

    def __init__(self, fail_starts: int = 0) -> None:
        self.client = FakeClient({"events-my-app"})
        self.fail_starts = fail_starts
        self.started = self.stopped = 0
        self.sent: list[tuple[str, bytes, bytes, list[tuple[str, bytes]]]] = []
        self.acks: list[asyncio.Future[Any]] = []
        self.auto_ack = False

    async def start(self) -> None:
        self.started += 1
        if self.started <= self.fail_starts:
            raise KafkaConnectionError("Unable to bootstrap from [('127.0.0.1', 1)]")

    async def stop(self) -> None:
        self.stopped += 1

    async def send(self, topic: str, value: bytes, *, key: bytes, headers: list[tuple[str, bytes]]) -> Any:
        self.sent.append((topic, value, key, headers))
        ack: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if self.auto_ack:
            ack.set_result(None)
        self.acks.append(ack)
        return ack


def publisher(fake: FakeProducer, outcomes: list[str] | None = None, **kw: Any) -> Publisher:
    options: dict[str, Any] = {"max_in_flight": 2, "max_in_flight_bytes": 10_000, "timeout_s": 5.0,
                               "connect_retry_s": 0.01}
    options.update(kw)
    return Publisher(lambda: fake, on_outcome=None if outcomes is None else outcomes.append,
                     **options)


async def sends(fake: FakeProducer, n: int) -> None:
    await eventually(lambda: len(fake.sent) >= n, 5, f"{n} sends to reach the producer", 0.001)


async def started(p: Publisher) -> Publisher:
    await p.start()
    await p.wait_connected(5)
    return p


async def test_publish_sends_binary_mode_record_and_waits_for_the_ack() -> None:
    fake, outcomes = FakeProducer(), list[str]()
    p = await started(publisher(fake, outcomes))
    e = event()
    task = asyncio.create_task(p.publish(e))
    await sends(fake, 1)
    assert not task.done(), "publish must wait for the Kafka ack"
    assert p.in_flight == 1
    fake.acks[0].set_result(None)
    await asyncio.wait_for(task, 5)
    record = to_kafka(e)
    assert fake.sent == [("events-my-app", record.value, record.key, record.headers)]
    assert (p.in_flight, p.in_flight_bytes, outcomes) == (0, 0, ["accepted"])


async def test_too_many_in_flight_is_queue_full_and_frees_up_after_acks() -> None:
    fake, outcomes = FakeProducer(), list[str]()
    p = await started(publisher(fake, outcomes))
    first = [asyncio.create_task(p.publish(event())) for _ in range(2)]
    await sends(fake, 2)
    with pytest.raises(QueueFull):
        await p.publish(event())
    with pytest.raises(QueueFull):
        p.publish_nowait(event())
    for ack in fake.acks:
        ack.set_result(None)
    await asyncio.wait_for(asyncio.gather(*first), 5)
    fake.auto_ack = True
    await p.publish(event())
    assert outcomes.count("queue_full") == 2
    assert outcomes.count("accepted") == 3


async def test_in_flight_bytes_are_bounded() -> None:
    fake = FakeProducer()
    p = await started(publisher(fake, max_in_flight=100, max_in_flight_bytes=10))
    task = asyncio.create_task(p.publish(event(payload=b"123456")))
    await sends(fake, 1)
    with pytest.raises(QueueFull):
        await p.publish(event(payload=b"12345"))
    fake.acks[0].set_result(None)
    await task


async def test_topic_not_ready_is_refused_before_sending() -> None:
    fake, outcomes = FakeProducer(), list[str]()
    p = await started(publisher(fake, outcomes))
    with pytest.raises(TopicNotReady):
        await p.publish(event(), topic_ready=False)
    with pytest.raises(PublishUnavailable):  # TopicNotReady is a PublishUnavailable
        p.publish_nowait(event(), topic_ready=False)
    assert fake.sent == []
    assert outcomes == ["not_ready", "not_ready"]


@pytest.mark.parametrize("error", [KafkaTimeoutError(), NotLeaderForPartitionError()])
async def test_kafka_errors_are_unavailable(error: Exception) -> None:
    fake, outcomes = FakeProducer(), list[str]()
    p = await started(publisher(fake, outcomes))
    task = asyncio.create_task(p.publish(event()))
    await sends(fake, 1)
    fake.acks[0].set_exception(error)
    with pytest.raises(PublishUnavailable):
        await task
    assert (p.in_flight, outcomes) == (0, ["unavailable"])


async def test_no_ack_within_the_timeout_is_unavailable() -> None:
    fake = FakeProducer()
    p = await started(publisher(fake, timeout_s=0.05))
    with pytest.raises(PublishUnavailable, match="no Kafka ack"):
        await p.publish(event())
    assert p.in_flight == 0


async def test_not_connected_is_unavailable_and_connect_is_retried() -> None:
    fake, outcomes = FakeProducer(fail_starts=3), list[str]()
    p = publisher(fake, outcomes)
    with pytest.raises(PublishUnavailable, match="not connected"):
        await p.publish(event())
    await p.start()
    await p.wait_connected(5)
    assert fake.started == 4
    assert fake.stopped == 3  # every failed producer was closed
    fake.auto_ack = True
    await p.publish(event())
    assert outcomes == ["unavailable", "accepted"]
    await p.stop()
    assert fake.stopped == 4
    assert not p.connected


async def test_wait_connected_times_out() -> None:
    p = publisher(FakeProducer(fail_starts=10**6))
    await p.start(wait_s=0.05)
    with pytest.raises(PublishUnavailable):
        await p.wait_connected(0.05)
    await p.stop()


async def test_publish_nowait_is_bounded_and_counted() -> None:
    fake, outcomes = FakeProducer(), list[str]()
    p = await started(publisher(fake, outcomes))
    p.publish_nowait(event())
    p.publish_nowait(event())
    with pytest.raises(QueueFull):
        p.publish_nowait(event())
    await sends(fake, 2)
    fake.acks[0].set_result(None)
    fake.acks[1].set_exception(KafkaTimeoutError())
    await eventually(lambda: p.in_flight == 0, 5, "the background sends to finish", 0.001)
    assert (p.in_flight, p.in_flight_bytes) == (0, 0)
    assert sorted(outcomes) == ["accepted", "queue_full", "unavailable"]


async def test_stop_waits_for_best_effort_sends() -> None:
    fake = FakeProducer()
    p = await started(publisher(fake))
    p.publish_nowait(event())
    await sends(fake, 1)
    stopping = asyncio.create_task(p.stop())
    await asyncio.sleep(0.05)  # proving a negative: stop() must still be waiting for the ack
    assert not stopping.done()
    fake.acks[0].set_result(None)
    await asyncio.wait_for(stopping, 5)
    assert fake.stopped == 1


async def test_event_without_application_is_a_programming_error() -> None:
    import dataclasses

    fake = FakeProducer()
    p = await started(publisher(fake))
    bad = dataclasses.replace(event(), extensions={})
    with pytest.raises(ValueError, match="no application"):
        await p.publish(bad)
    assert p.in_flight == 0


async def test_a_missing_topic_is_refused_and_never_sent_to(monkeypatch: pytest.MonkeyPatch) -> None:
    """A send would make the broker auto-create the topic (wrong partitions): the publisher checks first."""
    import ingress.publish

    fake, outcomes = FakeProducer(), list[str]()
    fake.auto_ack = True
    p = await started(publisher(fake, outcomes))
    with pytest.raises(TopicNotReady, match="does not exist"):
        await p.publish(event(app="no-topic"))
    with pytest.raises(TopicNotReady):
        await p.publish(event(app="no-topic"))
    assert fake.client.listings == 1, "listing the topics is rate-limited"
    assert fake.sent == []
    await p.publish(event())  # known from the same listing: no new request
    await p.publish(event())
    assert fake.client.listings == 1
    monkeypatch.setattr(ingress.publish, "TOPIC_REFRESH_S", 0.0)
    fake.client.topics.add("events-no-topic")  # the topic operator created it
    await p.publish(event(app="no-topic"))
    assert fake.client.listings == 2
    assert outcomes == ["not_ready", "not_ready", "accepted", "accepted", "accepted"]
