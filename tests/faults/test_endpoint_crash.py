"""SIGKILL an MQTT endpoint while its devices publish QoS 1: the lease watcher ends every connection it held
with ``endpoint_lost`` (within lease + check interval), the devices reconnect through a second endpoint, and
every PUBACKed message is on Kafka (counted by the per-device sequence numbers in the payloads)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from kedge.broker import EmbeddedBroker
from tests.agents.support import EventReader, assert_repeats_identical, create_topics, start_worker
from tests.faults.support import (
    LEASE_BOUND_S,
    SeqPublisher,
    assert_alternating,
    connect,
    endpoint_env,
    published_seqs,
    start_mqtt,
    wait_lease_watched,
)
from tests.ingress.registry_support import seed_registry
from tests.support.procs import Proc, ProcGroup, eventually
from topology import names

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DEVICES = ("s-0", "s-1", "s-2", "s-3")
VERSIONS = {"s-0": 5, "s-1": 4, "s-2": 5, "s-3": 4}  # MQTT 5 and 3.1.1


@dataclass
class Stack:
    bootstrap: str
    app: str
    first: Proc
    first_port: int
    second: Proc
    second_port: int


@pytest.fixture(scope="module")
async def stack(
    kafka_broker: EmbeddedBroker, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> AsyncIterator[Stack]:
    tmp = tmp_path_factory.mktemp("endpoint-crash")
    app = f"crash-{uuid.uuid4().hex[:8]}"
    await seed_registry(tmp, app, extra=DEVICES)
    bootstrap = kafka_broker.bootstrap
    await create_topics(bootstrap, app)
    group = ProcGroup(tmp)
    failed_before = request.session.testsfailed
    try:
        worker = await start_worker(group, "worker", bootstrap, tmp / "worker",
                                    f"kedge-worker-{uuid.uuid4().hex[:8]}")
        env = endpoint_env(bootstrap, tmp)
        (first, first_port), (second, second_port) = await asyncio.gather(
            start_mqtt(group, "mqtt-a", env), start_mqtt(group, "mqtt-b", env))
        await asyncio.gather(wait_lease_watched(worker, first), wait_lease_watched(worker, second))
        yield Stack(bootstrap, app, first, first_port, second, second_port)
    finally:
        group.stop_all()
        if request.session.testsfailed > failed_before:
            print(group.logs())


async def test_sigkilled_endpoint_loses_no_acked_message_and_no_disconnect(stack: Stack) -> None:
    async with EventReader(stack.bootstrap, names.app_topic(stack.app)) as events:
        publishers: dict[str, SeqPublisher] = {}
        for d in DEVICES:
            client, code = await connect(stack.first_port, stack.app, d, VERSIONS[d])
            assert code == 0, f"{d}: CONNACK {code:#x} from the first endpoint"
            publishers[d] = SeqPublisher(client, d).start()
        await eventually(lambda: all(len(p.acked) >= 20 for p in publishers.values()), 30,
                         "20 PUBACKs per device from the first endpoint")

        stack.first.kill()  # SIGKILL while every device has publishes in flight
        await eventually(lambda: all(p.closed.is_set() for p in publishers.values()), 10,
                         "the devices to see their connections drop")
        await events.wait(
            lambda: all(any(not c for c, _, _ in assert_alternating(d, events.unique_of(d))) for d in DEVICES),
            LEASE_BOUND_S, f"endpoint_lost disconnects of every device within {LEASE_BOUND_S}s")
        for d in DEVICES:
            story = assert_alternating(d, events.unique_of(d))
            assert [(c, r) for c, _, r in story] == [(True, None), (False, "endpoint_lost")], f"{d}: {story}"
            assert publishers[d].failed == {}, f"{d}: PUBACKs with an error before the kill: {publishers[d].failed}"

        # the devices come back through the second endpoint and carry on numbering their messages
        second: dict[str, SeqPublisher] = {}
        for d in DEVICES:
            client, code = await connect(stack.second_port, stack.app, d, VERSIONS[d])
            assert code == 0, f"{d}: CONNACK {code:#x} from the second endpoint"
            second[d] = SeqPublisher(client, d, next_seq=publishers[d].next_seq).start()
        await eventually(lambda: all(len(p.acked) >= 10 for p in second.values()), 30,
                         "10 PUBACKs per device from the second endpoint")
        for p in second.values():
            await p.stop()  # DISCONNECT-less close: a normal end of the connection

        acked = {d: publishers[d].acked | second[d].acked for d in DEVICES}
        await events.wait(lambda: all(acked[d] <= set(published_seqs(events.of(d), d)) for d in DEVICES)
                          and all(len(assert_alternating(d, events.unique_of(d))) == 4 for d in DEVICES),
                          30, "every PUBACKed message and the second connections' ends on Kafka")
        for d in DEVICES:
            missing = acked[d] - set(published_seqs(events.of(d), d))
            assert not missing, f"{d}: PUBACKed but not on Kafka: {sorted(missing)}"
            story = assert_alternating(d, events.unique_of(d))
            assert [(c, r) for c, _, r in story] == [(True, None), (False, "endpoint_lost"), (True, None),
                                                     (False, "normal")], f"{d}: {story}"
            assert story[0][1] != story[2][1], f"{d}: the reconnect reused a connection id: {story}"
            assert second[d].failed == {}, f"{d}: failed PUBACKs on the second endpoint: {second[d].failed}"
            assert_repeats_identical(d, events.of(d))
    assert stack.second.running, stack.second.log()
