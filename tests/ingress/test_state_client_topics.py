"""The StateClient's start-up check of the internal topics (against a fresh, empty broker: nothing may be
auto-created), and :func:`kedge.kafka.forbid_auto_create` pinning what aiokafka does by default."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiokafka.errors import UnknownTopicOrPartitionError

from ingress.state_client import StateClient, StateUnavailable, TopicsNotReady
from kedge import kafka
from kedge.broker import EmbeddedBroker, free_port
from kedge.settings import KafkaSettings, LeaseSettings, TopologySettings
from tests.support.procs import ProcGroup, eventually, kedge
from topology import names
from topology.apply import apply
from topology.declare import TopicSpec, declared_topics

pytestmark = [pytest.mark.integration]

LEASE = LeaseSettings(connect_timeout_s=5.0)


@pytest.fixture
async def empty_broker(tmp_path: Path) -> AsyncIterator[EmbeddedBroker]:
    """A broker of its own with no topics at all (as after a restart of the embedded broker)."""
    broker = EmbeddedBroker(port=free_port(), log_path=tmp_path / "tansu.log")
    await broker.start()
    yield broker
    broker.stop()


async def topics_of(bootstrap: str) -> dict[str, int]:
    admin = kafka.admin_client(KafkaSettings(bootstrap_servers=bootstrap))
    await admin.start()
    try:
        return await kafka.topic_partitions(admin._client)
    finally:
        await admin.close()


async def create(bootstrap: str, specs: list[TopicSpec]) -> None:
    admin = kafka.admin_client(KafkaSettings(bootstrap_servers=bootstrap))
    await admin.start()
    try:
        await apply(admin, specs)
    finally:
        await admin.close()


async def test_start_without_topics_fails_with_one_line_and_creates_nothing(empty_broker: EmbeddedBroker) -> None:
    client = StateClient(KafkaSettings(bootstrap_servers=empty_broker.bootstrap), LEASE,
                         require_topics=(names.COMMANDS,))
    with pytest.raises(TopicsNotReady) as failure:
        await client.start()
    await client.stop(release=False)
    message = str(failure.value)
    assert "\n" not in message
    assert message == ("topics 'device-state', 'endpoint-control', 'endpoint-heartbeats', 'iot-commands' missing "
                       "— run `kedge topology apply`")
    assert await topics_of(empty_broker.bootstrap) == {}


async def test_declared_partition_counts_are_checked(empty_broker: EmbeddedBroker) -> None:
    bootstrap = empty_broker.bootstrap
    await create(bootstrap, declared_topics(device_partitions=2, endpoint_partitions=1, replication=1))
    wrong = StateClient(KafkaSettings(bootstrap_servers=bootstrap), LEASE,
                        topology=TopologySettings(device_partitions=3))
    with pytest.raises(TopicsNotReady, match=r"^topic 'device-state' has 2 partitions, declared 3 \(auto-created"):
        await wrong.start()
    await wrong.stop(release=False)

    right = StateClient(KafkaSettings(bootstrap_servers=bootstrap), LEASE,
                        topology=TopologySettings(device_partitions=2), require_topics=(names.COMMANDS,))
    await right.start()
    await right.stop()


async def test_device_keyed_topics_must_agree_even_without_declared_counts(empty_broker: EmbeddedBroker) -> None:
    bootstrap = empty_broker.bootstrap
    specs = declared_topics(device_partitions=3, endpoint_partitions=1, replication=1)
    # device-state as the broker would auto-create it (4), next to a registry topic declared with 3
    await create(bootstrap, [TopicSpec(s.name, 4 if s.name == names.DEVICE_STATE else s.partitions, 1, s.configs)
                             for s in specs])
    client = StateClient(KafkaSettings(bootstrap_servers=bootstrap), LEASE)
    with pytest.raises(TopicsNotReady, match=r"^device-keyed topics differ in partitions \('device-state' 4, "
                                             r"'registry' 3, 'iot-commands' 3;"):
        await client.start()
    await client.stop(release=False)


@pytest.mark.slow
async def test_a_running_client_does_not_recreate_topics_after_a_broker_restart(tmp_path: Path) -> None:
    """The hazard of issue 9: after a restart of the embedded broker a running client's metadata refresh
    forgets the topics, and with aiokafka's default its next send to one makes the broker re-create it with
    its default partition count. The state client's send fails instead."""
    broker = EmbeddedBroker(port=free_port(), log_path=tmp_path / "tansu.log")
    await broker.start()
    settings = KafkaSettings(bootstrap_servers=broker.bootstrap, request_timeout_ms=1000, linger_ms=0)
    client = StateClient(settings, LEASE)
    control = kafka.producer(settings)  # aiokafka's default, for comparison
    try:
        await create(broker.bootstrap, [*declared_topics(device_partitions=2, endpoint_partitions=1, replication=1),
                                        TopicSpec("control-topic", 1, 1)])
        await client.start()
        await control.start()
        await (await control.send("control-topic", b"x"))

        broker.stop()  # the embedded broker restarts empty on the same port
        broker = EmbeddedBroker(port=broker.port, log_path=tmp_path / "tansu-2.log")
        await broker.start()
        for refreshing in (control.client, client.producer.client):
            async def refreshed(c: Any = refreshing) -> bool:
                return bool(await c.force_metadata_update())

            await eventually(refreshed, 15, "a metadata refresh from the new broker")

        await (await control.send("control-topic", b"y"))
        assert await topics_of(broker.bootstrap) == {"control-topic": 4}  # re-created with the broker's count
        with pytest.raises(StateUnavailable, match="UnknownTopicOrPartitionError"):
            await client.connect("app", "dev", "cid-1", "mqtt", "app-uid", "dev-uid")
        assert await topics_of(broker.bootstrap) == {"control-topic": 4}  # device-state was not
    finally:
        try:
            await client.stop(release=False)
            await control.stop()
        finally:
            broker.stop()


async def test_aiokafka_auto_creates_on_send_unless_forbidden(empty_broker: EmbeddedBroker) -> None:
    settings = KafkaSettings(bootstrap_servers=empty_broker.bootstrap, request_timeout_ms=500, linger_ms=0)
    guarded = kafka.producer(settings, auto_create_topics=False)
    plain = kafka.producer(settings)
    await guarded.start()
    await plain.start()
    try:
        with pytest.raises(UnknownTopicOrPartitionError):
            await guarded.send("guarded-topic", b"x")
        assert "guarded-topic" not in await topics_of(empty_broker.bootstrap)
        await (await plain.send("plain-topic", b"x"))  # aiokafka's default: the broker makes it, 4 partitions
        assert (await topics_of(empty_broker.bootstrap)).get("plain-topic") == 4
    finally:
        await guarded.stop()
        await plain.stop()


async def test_the_command_bus_answers_unavailable_instead_of_creating_iot_commands(
    empty_broker: EmbeddedBroker,
) -> None:
    from integrations.commands.bus import CommandBus, KafkaUnavailable
    from schemas.state import CommandRequest

    bus = CommandBus(KafkaSettings(bootstrap_servers=empty_broker.bootstrap, request_timeout_ms=500))
    request = CommandRequest("app", "dev", "reboot", b"", None, "r-1")
    try:
        with pytest.raises(KafkaUnavailable, match="UnknownTopicOrPartitionError"):
            await bus.send([(b"app/dev", request)])
    finally:
        await bus.stop()
    assert await topics_of(empty_broker.bootstrap) == {}


@pytest.mark.slow
async def test_mqtt_endpoint_refuses_to_start_without_topics_then_starts_with_them(
    empty_broker: EmbeddedBroker, procs: ProcGroup, tmp_path: Path
) -> None:
    env = {"KEDGE_KAFKA__BOOTSTRAP_SERVERS": empty_broker.bootstrap, "KEDGE_DATA_DIR": str(tmp_path)}
    refused = procs.start("mqtt-refused", kedge("serve", "mqtt", "--port", "0"), env)
    assert refused.popen is not None
    assert await asyncio.to_thread(refused.popen.wait, 60) == 1, refused.log()
    errors = [line for line in refused.log().splitlines() if line.startswith("error:")]
    assert errors == ["error: topics 'device-state', 'endpoint-control', 'endpoint-heartbeats' missing — run "
                      "`kedge topology apply`"], refused.log()
    assert "Unclosed" not in refused.log()
    assert "Traceback" not in refused.log()
    assert await topics_of(empty_broker.bootstrap) == {}  # the endpoint's clients created nothing

    applied = procs.start("apply", kedge("topology", "apply"), env)
    assert applied.popen is not None
    assert await asyncio.to_thread(applied.popen.wait, 60) == 0, applied.log()
    started = procs.start("mqtt", kedge("serve", "mqtt", "--port", "0"), env)
    await started.wait_for_log("mqtt endpoint listening on mqtt://", 30)
