"""StateClient against the real broker, with the test playing the agent by hand (no worker): request
multiplexing, addressing by instance id, callbacks, heartbeats and lease release, bad control records."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from ingress.state_client import StateClient
from kedge.broker import EmbeddedBroker
from kedge.settings import LeaseSettings
from schemas.state import (
    CommandOutcome,
    ConnectRequest,
    DeliverCommand,
    Heartbeat,
    Kick,
    Reason,
    Reply,
    control_partition,
    decode_control,
    decode_state_request,
)
from tests.agents.support import create_topics, kafka_settings
from tests.support.procs import eventually
from topology import names
from topology.highwater import end_offsets

pytestmark = [pytest.mark.integration]

LEASE = LeaseSettings(heartbeat_interval_s=0.2, lease_s=3.0, connect_timeout_s=10.0)


@pytest.fixture
async def kafka(kafka_broker: EmbeddedBroker) -> AsyncIterator[tuple[str, AIOKafkaProducer]]:
    await create_topics(kafka_broker.bootstrap)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_broker.bootstrap)
    await producer.start()
    yield kafka_broker.bootstrap, producer
    await producer.stop()


async def _tail(bootstrap: str, topic: str) -> AIOKafkaConsumer:
    """A consumer positioned at the true end of every partition of ``topic``."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=50)
    await consumer.start()
    tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
    consumer.assign(tps)
    for tp, offset in (await end_offsets(consumer, tps)).items():
        consumer.seek(tp, offset)
    return consumer


async def _control(producer: AIOKafkaProducer, instance: str, value: bytes) -> None:
    await producer.send_and_wait(names.ENDPOINT_CONTROL, value, key=instance.encode(),
                                 partition=control_partition(instance, 1))


async def test_concurrent_connects_are_matched_to_their_replies(kafka: tuple[str, AIOKafkaProducer]) -> None:
    bootstrap, producer = kafka
    requests = await _tail(bootstrap, names.DEVICE_STATE)
    client = StateClient(kafka_settings(bootstrap), LEASE, producer=producer)
    await client.start()

    async def fake_agent() -> None:
        seen: list[ConnectRequest] = []
        while len(seen) < 20:
            for records in (await requests.getmany(timeout_ms=200)).values():
                for r in records:
                    req = decode_state_request(r.value)
                    if isinstance(req, ConnectRequest) and req.endpoint == client.instance_id:
                        seen.append(req)
        # answer in reverse order, odd ones rejected; plus noise for another instance first
        await _control(producer, "someone-else", Reply(seen[0].request_id, "x", False, Reason.ERROR).to_bytes())
        for req in reversed(seen):
            accepted = int(req.device.split("-")[1]) % 2 == 0
            reply = Reply(req.request_id, req.connection_id, accepted, None if accepted else Reason.DEVICE_DISABLED)
            await _control(producer, client.instance_id, reply.to_bytes())

    agent = asyncio.create_task(fake_agent())
    try:
        replies = await asyncio.gather(*(
            client.connect("app", f"dev-{i}", f"cid-{i}", "mqtt", "au", f"du-{i}") for i in range(20)
        ))
        await agent
        assert [(r.connection_id, r.accepted) for r in replies] == [(f"cid-{i}", i % 2 == 0) for i in range(20)]
    finally:
        agent.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await agent
        await client.stop()
        await requests.stop()


async def test_callbacks_get_only_this_instances_records_and_bad_records_are_dropped(
    kafka: tuple[str, AIOKafkaProducer],
) -> None:
    bootstrap, producer = kafka
    kicks: list[Kick] = []
    outcomes: list[CommandOutcome] = []
    client = StateClient(kafka_settings(bootstrap), LEASE, on_kick=kicks.append, on_outcome=outcomes.append)
    await client.start()
    control = await _tail(bootstrap, names.ENDPOINT_CONTROL)
    try:
        me = client.instance_id
        await _control(producer, "other", Kick("a", "d", "c0", Reason.TAKEN_OVER).to_bytes())
        for bad in (b"nonsense", b'{"kind":"kick"}', b'{"kind":"unknown"}'):
            await _control(producer, me, bad)
        await _control(producer, me, Kick("a", "d", "c1", Reason.TAKEN_OVER).to_bytes())
        # no on_command callback: the client answers the requester that it cannot deliver
        command = DeliverCommand("a", "d", "c1", "cmd", b"", None, "req-1", reply_to="requester")
        await _control(producer, me, command.to_bytes())
        await _control(producer, me, CommandOutcome("req-0", True).to_bytes())
        await eventually(lambda: kicks and outcomes, 10, "the kick and the outcome")
        assert [k.connection_id for k in kicks] == ["c1"]
        assert outcomes == [CommandOutcome("req-0", True)]

        async def failure_outcome() -> CommandOutcome | None:
            for records in (await control.getmany(timeout_ms=200)).values():
                for r in records:
                    if r.key == b"requester":
                        record = decode_control(r.value)
                        assert isinstance(record, CommandOutcome)
                        return record
            return None

        found: list[CommandOutcome] = []

        async def check() -> bool:
            got = await failure_outcome()
            if got:
                found.append(got)
            return bool(found)

        await eventually(check, 10, "a failure outcome to the requester")
        assert found[0].request_id == "req-1" and not found[0].delivered
    finally:
        await client.stop()
        await control.stop()


async def test_heartbeats_renew_the_lease_and_stop_releases_it(kafka: tuple[str, AIOKafkaProducer]) -> None:
    bootstrap, _ = kafka
    beats = await _tail(bootstrap, names.ENDPOINT_HEARTBEATS)
    client = StateClient(kafka_settings(bootstrap), LEASE, instance_id=f"hb-{uuid.uuid4().hex[:6]}")
    got: list[Heartbeat] = []

    async def collect() -> bool:
        for records in (await beats.getmany(timeout_ms=100)).values():
            got.extend(Heartbeat.from_bytes(r.value) for r in records if r.key == client.instance_id.encode())
        return bool(got) and got[-1].lease_s == 0

    try:
        await client.start()
        await eventually(lambda: _count(collect, got, 3), 10, "three heartbeats")
        await client.stop()
        await eventually(collect, 10, "the release heartbeat")
        assert [h.seq for h in got] == sorted({h.seq for h in got}), "heartbeat seq must increase"
        assert all(h.lease_s == LEASE.lease_s for h in got[:-1]) and got[-1].lease_s == 0
    finally:
        await beats.stop()


async def _count(collect: object, got: list[Heartbeat], n: int) -> bool:
    await collect()  # type: ignore[operator]
    return len(got) >= n


async def test_a_kick_that_overtakes_the_accept_turns_it_into_a_rejection(
    kafka: tuple[str, AIOKafkaProducer],
) -> None:
    bootstrap, producer = kafka
    requests = await _tail(bootstrap, names.DEVICE_STATE)
    kicks: list[Kick] = []
    client = StateClient(kafka_settings(bootstrap), LEASE, producer=producer, on_kick=kicks.append)
    await client.start()

    async def fake_agent() -> None:
        while True:
            for records in (await requests.getmany(timeout_ms=200)).values():
                for r in records:
                    req = decode_state_request(r.value)
                    if isinstance(req, ConnectRequest) and req.endpoint == client.instance_id:
                        kick = Kick(req.app, req.device, req.connection_id, Reason.TAKEN_OVER)
                        await _control(producer, client.instance_id, kick.to_bytes())
                        reply = Reply(req.request_id, req.connection_id, True)
                        await _control(producer, client.instance_id, reply.to_bytes())
                        return

    agent = asyncio.create_task(fake_agent())
    try:
        reply = await client.connect("app", "dev", "cid", "mqtt", "au", "du")
        assert not reply.accepted and reply.reason is Reason.TAKEN_OVER
        assert kicks == []
    finally:
        agent.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await agent
        await client.stop()
        await requests.stop()


async def test_command_polls_go_to_iot_commands_keyed_by_their_route(kafka: tuple[str, AIOKafkaProducer]) -> None:
    from schemas.keys import device_key
    from schemas.state import CommandPoll, CommandPollEnd

    bootstrap, producer = kafka
    commands = await _tail(bootstrap, names.COMMANDS)
    client = StateClient(kafka_settings(bootstrap), LEASE, producer=producer, require_topics=(names.COMMANDS,))
    await client.start()
    try:
        await client.command_poll("app", "child", "p-1", 123.0, sender="gw")
        await client.end_command_poll("app", "child", "p-1", sender="gw")
        got: list[tuple[bytes | None, object]] = []

        async def collect() -> bool:
            for records in (await commands.getmany(timeout_ms=200)).values():
                got.extend((r.key, decode_state_request(r.value)) for r in records)
            return len(got) >= 2

        await eventually(collect, 10, "the poll and its end on iot-commands")
        key = device_key("app", "gw").encode()
        assert got == [(key, CommandPoll("app", "child", client.instance_id, "p-1", 123.0, "gw")),
                       (key, CommandPollEnd("app", "child", "p-1", "gw"))]
    finally:
        await client.stop()
        await commands.stop()


async def test_start_refuses_while_a_required_topic_is_missing(kafka: tuple[str, AIOKafkaProducer]) -> None:
    from ingress.state_client import StateUnavailable

    bootstrap, producer = kafka
    client = StateClient(kafka_settings(bootstrap), LEASE, producer=producer,
                         require_topics=(f"no-such-topic-{uuid.uuid4().hex[:6]}",))
    with pytest.raises(StateUnavailable, match="missing — run `kedge topology apply`"):
        await client.start()
    await client.stop(release=False)
