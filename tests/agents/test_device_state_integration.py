"""The device-state agents against the real broker, a real `kedge worker` and real StateClients.

One worker for the whole module (a Faust join takes seconds); every test uses its own application, so its
events-<app> topic shows only its own events.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from ingress.state_client import StateClient
from kedge.broker import EmbeddedBroker
from schemas.keys import app_key, device_key
from schemas.registry import RegistryChange
from schemas.state import (
    DEVICE_OFFLINE,
    CommandOutcome,
    CommandRequest,
    DeliverCommand,
    Kick,
    Reason,
    Will,
    decode_control,
)
from tests.agents.support import (
    DEVICE_PARTITIONS,
    TEST_LEASE,
    EventReader,
    connection_log,
    create_topics,
    kafka_settings,
    start_worker,
)
from tests.support.procs import Proc, ProcGroup, eventually
from topology import names

pytestmark = [pytest.mark.integration, pytest.mark.slow]

_apps = iter(range(1_000_000))


@dataclass
class Cluster:
    bootstrap: str
    worker: Proc
    group: str


@pytest.fixture(scope="module")
async def cluster(
    kafka_broker: EmbeddedBroker, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> AsyncIterator[Cluster]:
    tmp = tmp_path_factory.mktemp("device-state")
    group = ProcGroup(tmp)
    await create_topics(kafka_broker.bootstrap)
    failed_before = request.session.testsfailed
    try:
        group_id = f"kedge-worker-{uuid.uuid4().hex[:8]}"
        worker = await start_worker(group, "worker", kafka_broker.bootstrap, tmp / "w1", group_id)
        yield Cluster(kafka_broker.bootstrap, worker, group_id)
    finally:
        group.stop_all()
        if request.session.testsfailed > failed_before:
            print(group.logs())


@pytest.fixture
async def app(cluster: Cluster) -> str:
    name = f"state-app-{next(_apps)}-{uuid.uuid4().hex[:6]}"
    await create_topics(cluster.bootstrap, name)
    return name


class Endpoint:
    """A StateClient standing in for an endpoint process, recording what it was told."""

    def __init__(self, bootstrap: str, lease: object = TEST_LEASE) -> None:
        self.kicks: list[Kick] = []
        self.commands: list[DeliverCommand] = []
        self.outcomes: list[CommandOutcome] = []
        self.client = StateClient(kafka_settings(bootstrap), TEST_LEASE,
                                  on_kick=self.kicks.append, on_command=self._command,
                                  on_outcome=self.outcomes.append)

    async def _command(self, command: DeliverCommand) -> None:
        self.commands.append(command)
        await self.client.command_outcome(command, True)

    async def connect(self, app: str, device: str, will: Will | None = None) -> tuple[str, bool]:
        cid = uuid.uuid4().hex
        reply = await self.client.connect(app, device, cid, "mqtt", f"{app}-uid", f"{device}-uid", will)
        assert reply.connection_id == cid
        return cid, reply.accepted


@pytest.fixture
async def endpoints(cluster: Cluster) -> AsyncIterator[list[Endpoint]]:
    made: list[Endpoint] = []
    for _ in range(2):
        e = Endpoint(cluster.bootstrap)
        await e.client.start()
        made.append(e)
    yield made
    for e in made:
        await e.client.stop()


async def test_connect_is_accepted_after_connected_is_on_the_app_topic(
    cluster: Cluster, app: str, endpoints: list[Endpoint]
) -> None:
    async with EventReader(cluster.bootstrap, names.app_topic(app)) as events:
        cid, accepted = await endpoints[0].connect(app, "dev-1")
        assert accepted
        # the reply waited for the ack of `connected`, so it is readable now
        await events.wait(lambda: len(events.of("dev-1")) == 1, 10, "the connected event")
        (event,) = events.of("dev-1")
        assert event.type == "io.drogue.connection.v1" and event.subject == "connection"
        assert orjson.loads(event.data) == {"connected": True}
        assert event.id == f"{cid}:connected"
        assert event.extensions["connectionid"] == cid
        assert event.extensions["sequence"] == f"{1:020d}"
        assert event.extensions["partitionkey"] == device_key(app, "dev-1")
        assert event.extensions["instance"] == "test"

        await endpoints[0].client.disconnect(app, "dev-1", cid, Reason.NORMAL, skip_will=True)
        await events.wait(lambda: len(events.of("dev-1")) == 2, 10, "the disconnected event")
        assert connection_log(events.of("dev-1"))[1] == ("disconnected", cid, "normal", f"{2:020d}")


async def test_takeover_kicks_the_old_holder_and_orders_the_events(
    cluster: Cluster, app: str, endpoints: list[Endpoint]
) -> None:
    first, second = endpoints
    async with EventReader(cluster.bootstrap, names.app_topic(app)) as events:
        old, ok = await first.connect(app, "dev", Will("last/will", b'{"bye":1}', "application/json"))
        assert ok
        new, ok = await second.connect(app, "dev")
        assert ok
        await eventually(lambda: first.kicks, 10, "the kick to the first endpoint")
        assert [(k.connection_id, k.reason) for k in first.kicks] == [(old, Reason.TAKEN_OVER)]
        assert not second.kicks
        await events.wait(lambda: len(events.of("dev")) == 4, 10, "connected, will, disconnected, connected")
        assert connection_log(events.of("dev")) == [
            ("connected", old, None, f"{1:020d}"),
            ("will", "last/will", None, ""),
            ("disconnected", old, "taken_over", f"{2:020d}"),
            ("connected", new, None, f"{3:020d}"),
        ]
        will = events.of("dev")[1]
        assert will.type == "io.drogue.event.v1" and will.data == b'{"bye":1}' and will.id == f"{old}:will"

        # the old endpoint reports its (now stale) disconnect: nothing changes
        await first.client.disconnect(app, "dev", old, Reason.NORMAL)
        # a later real disconnect of the new holder proves the stale one was processed and ignored
        await second.client.disconnect(app, "dev", new, Reason.NORMAL, skip_will=True)
        # (same partition: the stale disconnect was processed before it, so any event of it would come first)
        await events.wait(lambda: any(e.id == f"{new}:disconnected" for e in events.of("dev")), 10,
                          "the new holder's disconnected")
        assert connection_log(events.of("dev"))[4:] == [("disconnected", new, "normal", f"{4:020d}")]


async def test_replayed_connect_of_an_ended_connection_is_refused(
    cluster: Cluster, app: str, endpoints: list[Endpoint]
) -> None:
    ep = endpoints[0]
    cid, ok = await ep.connect(app, "dev")
    assert ok
    await ep.client.disconnect(app, "dev", cid, Reason.NORMAL, skip_will=True)
    reply = await ep.client.connect(app, "dev", cid, "mqtt", f"{app}-uid", "dev-uid")
    assert not reply.accepted and reply.reason is Reason.SUPERSEDED


async def test_commands_go_to_the_holder_and_offline_commands_fail(
    cluster: Cluster, app: str, endpoints: list[Endpoint]
) -> None:
    holder, requester = endpoints
    cid, ok = await holder.connect(app, "dev")
    assert ok
    producer = AIOKafkaProducer(bootstrap_servers=cluster.bootstrap)
    await producer.start()
    try:
        for device, request_id, sender in (("dev", "cmd-1", None), ("offline-dev", "cmd-2", None),
                                           ("sensor", "cmd-3", "dev")):  # cmd-3: "dev" is the sensor's gateway
            command = CommandRequest(app, device, "set", b"on", "text/plain", request_id,
                                     requester.client.instance_id, sender)
            await producer.send_and_wait(names.COMMANDS, command.to_bytes(),
                                         key=device_key(app, command.route).encode())
    finally:
        await producer.stop()
    await eventually(lambda: len(requester.outcomes) == 3 and len(holder.commands) == 2, 15,
                     "three command outcomes and two deliveries")
    assert [(c.request_id, c.device, c.connection_id, c.command, c.payload) for c in holder.commands] == [
        ("cmd-1", "dev", cid, "set", b"on"), ("cmd-3", "sensor", cid, "set", b"on")
    ]
    assert not requester.commands
    outcomes = {o.request_id: o for o in requester.outcomes}
    assert outcomes["cmd-1"].delivered and outcomes["cmd-3"].delivered
    assert not outcomes["cmd-2"].delivered and outcomes["cmd-2"].reason == DEVICE_OFFLINE


async def test_endpoint_death_releases_its_devices_with_endpoint_lost_and_will(
    cluster: Cluster, app: str
) -> None:
    dying, survivor = Endpoint(cluster.bootstrap), Endpoint(cluster.bootstrap)
    await dying.client.start()
    await survivor.client.start()
    try:
        async with EventReader(cluster.bootstrap, names.app_topic(app)) as events:
            cids = {}
            for d in ("a", "b", "c"):
                cids[d], ok = await dying.connect(app, d, Will("gone", d.encode()))
                assert ok
            kept, ok = await survivor.connect(app, "kept")
            assert ok
            await dying.client.stop(release=False)  # like SIGKILL: the heartbeats just stop
            # lease 2 s + check 0.5 s (+ Kafka); generous bound for a loaded machine
            await events.wait(lambda: all(len(events.of(d)) == 3 for d in cids), 20, "endpoint_lost for a, b, c")
            for d, cid in cids.items():
                assert connection_log(events.of(d)) == [
                    ("connected", cid, None, f"{1:020d}"),
                    ("will", "gone", None, ""),
                    ("disconnected", cid, "endpoint_lost", f"{2:020d}"),
                ]
            assert connection_log(events.of("kept")) == [("connected", kept, None, f"{1:020d}")]
    finally:
        await survivor.client.stop()


async def test_endpoint_death_with_many_devices_releases_each_once_in_batches(cluster: Cluster, app: str) -> None:
    """Enough devices that each partition's release goes out in batches (``BULK_EFFECTS``): every device gets
    its Will and ``disconnected(endpoint_lost)`` once, after its ``connected``, and its kick goes to the endpoint."""
    dying = Endpoint(cluster.bootstrap)
    await dying.client.start()
    devices = [f"many-{i}" for i in range(120)]  # ~30 per partition: 60-90 effects each
    async with EventReader(cluster.bootstrap, names.app_topic(app)) as events:
        connected = await asyncio.gather(*(
            dying.connect(app, d, Will("gone", d.encode()) if i % 2 else None) for i, d in enumerate(devices)))
        assert all(ok for _, ok in connected)
        cids = {d: cid for d, (cid, _) in zip(devices, connected, strict=True)}
        await dying.client.stop(release=False)
        await events.wait(lambda: all(len(events.of(d)) == (3 if i % 2 else 2) for i, d in enumerate(devices)),
                          30, "endpoint_lost for every device")
        for i, d in enumerate(devices):
            will = [("will", "gone", None, "")] if i % 2 else []
            assert connection_log(events.of(d)) == [
                ("connected", cids[d], None, f"{1:020d}"), *will,
                ("disconnected", cids[d], "endpoint_lost", f"{2:020d}")]
    kicks = await _kicks_of(cluster.bootstrap, dying.client.instance_id, len(devices))
    assert {k.connection_id for k in kicks} == set(cids.values())
    assert {k.reason for k in kicks} == {Reason.ENDPOINT_LOST}


async def _kicks_of(bootstrap: str, instance: str, expected: int) -> list[Kick]:
    """The kicks addressed to ``instance`` on ``endpoint-control`` (read from the start, until ``expected``)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    kicks: list[Kick] = []
    try:
        tps = [TopicPartition(names.ENDPOINT_CONTROL, p)
               for p in consumer.partitions_for_topic(names.ENDPOINT_CONTROL) or {0}]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)

        async def read() -> bool:
            for records in (await consumer.getmany(timeout_ms=200)).values():
                for r in records:
                    record = decode_control(r.value or b"") if r.key == instance.encode() else None
                    if isinstance(record, Kick):
                        kicks.append(record)
            return len({k.connection_id for k in kicks}) >= expected

        await eventually(read, 20, f"{expected} kicks for {instance}", 0)
    finally:
        await consumer.stop()
    return kicks


async def test_connect_wait_is_bounded_and_raises_state_unavailable(cluster: Cluster, app: str) -> None:
    from ingress.state_client import StateUnavailable
    from kedge.settings import LeaseSettings

    client = StateClient(kafka_settings(cluster.bootstrap), LeaseSettings(connect_timeout_s=0.001))
    await client.start()
    try:
        # no agent round trip fits in 1 ms: the wait is bounded and fails with the documented exception
        with pytest.raises(StateUnavailable):
            await client.connect(app, "dev", uuid.uuid4().hex, "mqtt", "u", "d")
    finally:
        await client.stop()


async def _registry(bootstrap: str, change: RegistryChange, partitions: list[int] | None) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        value = change.model_dump_json(by_alias=True).encode()
        if partitions is None:
            assert change.device is not None
            meta = await producer.send_and_wait(names.REGISTRY, value,
                                                key=device_key(change.app, change.device).encode())
            _last_registry_record[0] = (meta.partition, meta.offset)
        else:  # application-level: the relay sends it once to every partition
            for p in partitions:
                await producer.send_and_wait(names.REGISTRY, value, key=app_key(change.app).encode(), partition=p)
    finally:
        await producer.stop()


_last_registry_record: list[tuple[int, int]] = [(0, -1)]


async def _processed(cluster: Cluster, topic: str = names.REGISTRY, at: tuple[int, int] | None = None) -> None:
    """Wait until the worker committed past a record (default: the last device-level registry record sent):
    records of different topics are not ordered, so a connect sent now could otherwise overtake it."""
    partition, offset = at or _last_registry_record[0]
    tp = TopicPartition(topic, partition)
    consumer = AIOKafkaConsumer(bootstrap_servers=cluster.bootstrap, group_id=cluster.group,
                                enable_auto_commit=False)
    await consumer.start()
    try:
        async def committed() -> bool:
            return (await consumer.committed(tp) or -1) > offset

        await eventually(committed, 20, f"the worker to commit past {topic}[{partition}]@{offset}", 0.2)
    finally:
        await consumer.stop()


def _change(app: str, device: str | None, operation: str, revision: int, disabled: bool = False) -> RegistryChange:
    uid = f"{app}-uid" if device is None else f"{device}-uid"
    return RegistryChange(operation=operation, app=app, app_uid=f"{app}-uid", device=device, paths=["."],
                          generation=revision, resource_version=str(revision), uid=uid, revision=revision,
                          disabled=disabled)


async def test_disabling_a_device_kicks_it_and_refuses_connects_until_enabled(
    cluster: Cluster, app: str, endpoints: list[Endpoint]
) -> None:
    ep = endpoints[0]
    async with EventReader(cluster.bootstrap, names.app_topic(app)) as events:
        cid, ok = await ep.connect(app, "dev", Will("w", b"gone"))
        assert ok
        await _registry(cluster.bootstrap, _change(app, "dev", "updated", 2, disabled=True), None)
        await eventually(lambda: ep.kicks, 10, "the kick of the disabled device")
        assert [(k.connection_id, k.reason) for k in ep.kicks] == [(cid, Reason.DEVICE_DISABLED)]
        await events.wait(lambda: len(events.of("dev")) == 3, 10, "will + disconnected(device_disabled)")
        assert connection_log(events.of("dev"))[1:] == [
            ("will", "w", None, ""), ("disconnected", cid, "device_disabled", f"{2:020d}")]
        _, ok = await ep.connect(app, "dev")
        assert not ok
        # a stale (older) enable does not lift the block; the newer one does
        await _registry(cluster.bootstrap, _change(app, "dev", "updated", 1, disabled=False), None)
        await _processed(cluster)
        _, ok = await ep.connect(app, "dev")
        assert not ok
        await _registry(cluster.bootstrap, _change(app, "dev", "updated", 3, disabled=False), None)
        await _processed(cluster)
        _, ok = await ep.connect(app, "dev")
        assert ok


async def test_deleting_an_app_ends_all_its_connections_in_every_partition(
    cluster: Cluster, app: str, endpoints: list[Endpoint]
) -> None:
    ep = endpoints[0]
    devices = [f"dev-{i}" for i in range(6)]
    async with EventReader(cluster.bootstrap, names.app_topic(app)) as events:
        cids = {}
        for d in devices:
            cids[d], ok = await ep.connect(app, d)
            assert ok
        await _registry(cluster.bootstrap, _change(app, None, "deleted", 5), list(range(DEVICE_PARTITIONS)))
        await events.wait(lambda: all(len(events.of(d)) == 2 for d in devices), 15, "app_deleted for every device")
        for d in devices:
            assert connection_log(events.of(d))[1] == ("disconnected", cids[d], "app_deleted", f"{2:020d}")
        await eventually(lambda: len(ep.kicks) == len(devices), 10, "a kick per device")
        _, ok = await ep.connect(app, devices[0])
        assert not ok


async def test_malformed_records_are_dropped_and_the_agent_goes_on(
    cluster: Cluster, app: str, endpoints: list[Endpoint]
) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=cluster.bootstrap)
    await producer.start()
    try:
        key = device_key(app, "dev").encode()
        sent = []
        for topic, value in ((names.DEVICE_STATE, b"not json"), (names.DEVICE_STATE, b'{"kind":"connect"}'),
                             (names.REGISTRY, b'{"operation":"nope"}'), (names.COMMANDS, b"[]")):
            meta = await producer.send_and_wait(topic, value, key=key)
            sent.append((topic, meta.partition, meta.offset))
    finally:
        await producer.stop()
    for topic, partition, offset in sent:
        await _processed(cluster, topic, (partition, offset))
    assert "dropping malformed record" in cluster.worker.log()
    _, ok = await endpoints[0].connect(app, "dev")
    assert ok
    assert cluster.worker.running
