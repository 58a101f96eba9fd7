"""End to end: commands to HTTP devices waiting with ``ct`` (reference §7.1), with real processes.

A real `kedge worker` (the device-state agent routes commands), `kedge serve http` and `kedge serve mqtt` on
the real broker, devices in a real registry database. Commands are sent the way the command API sends them
(:class:`~integrations.commands.bus.CommandBus`: ``CommandRequest`` per target on ``iot-commands``, outcomes
read back from ``endpoint-control``).

To send a command only once the request's poll is in place, a test watches ``iot-commands`` for the poll's
record: a command produced after it to the same key (same partition) is processed after it by the agent.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from integrations.commands.bus import CommandBus
from integrations.commands.model import CommandTargets, Outcome, command_requests
from kedge.broker import EmbeddedBroker
from protocols.mqtt import Connect, Publish, ReasonCode, SubAck, Subscribe, Subscription
from schemas.state import DEVICE_OFFLINE, CommandPoll, MalformedRecord, decode_state_request
from tests.agents.support import DEVICE_PARTITIONS, EventReader, create_topics, kafka_settings, start_worker
from tests.ingress.mqtt_support import RawClient
from tests.ingress.registry_support import basic, seed_registry
from tests.support.procs import ProcGroup, eventually, kedge
from topology import names
from topology.highwater import end_offsets

pytestmark = [pytest.mark.integration, pytest.mark.slow]


class PollTap:
    """Reads ``iot-commands`` from its end in the background, keeping the command polls seen."""

    def __init__(self, bootstrap: str) -> None:
        self.consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                         fetch_max_wait_ms=50)
        self.polls: list[CommandPoll] = []
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.consumer.start()
        tps = [TopicPartition(names.COMMANDS, p) for p in self.consumer.partitions_for_topic(names.COMMANDS) or ()]
        assert tps, "iot-commands does not exist"
        self.consumer.assign(tps)
        for tp, offset in (await end_offsets(self.consumer, tps)).items():
            self.consumer.seek(tp, offset)
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.consumer.stop()

    async def _run(self) -> None:
        while True:
            for records in (await self.consumer.getmany(timeout_ms=200)).values():
                for r in records:
                    with contextlib.suppress(MalformedRecord):
                        record = decode_state_request(r.value or b"")
                        if isinstance(record, CommandPoll):
                            self.polls.append(record)

    async def poll_of(self, app: str, device: str, sender: str | None = None) -> CommandPoll:
        def find() -> CommandPoll | None:
            return next((p for p in self.polls if (p.app, p.device, p.sender) == (app, device, sender)), None)

        await eventually(find, 20, f"the command poll of {device} (via {sender})")
        found = find()
        assert found is not None
        return found


@dataclass
class Stack:
    bootstrap: str
    app: str
    http: httpx.AsyncClient
    mqtt_port: int
    bus: CommandBus
    tap: PollTap

    async def command(self, device: str, name: str, payload: bytes, content_type: str | None,
                      gateways: tuple[str, ...] = ()) -> Outcome:
        """Send like the command API does (one request per target) and wait for the delivery outcome."""
        requests = command_requests(self.app, device, CommandTargets(False, False, gateways), name, payload,
                                    content_type, self.bus.instance_id)
        return await self.bus.send(requests, wait_s=15)

    def publish(self, user: str, ct: int, **params: str) -> asyncio.Task[httpx.Response]:
        return asyncio.create_task(self.http.post("/v1/telemetry", params={"ct": str(ct), **params}, content=b"1",
                                                  headers=basic(f"{user}@{self.app}", "secret")))


@pytest.fixture(scope="module")
async def stack(
    kafka_broker: EmbeddedBroker, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> AsyncIterator[Stack]:
    tmp = tmp_path_factory.mktemp("http-commands")
    app = f"httpcmd-{uuid.uuid4().hex[:8]}"
    await seed_registry(tmp, app, extra=("idle", "lonely", "hybrid"))
    bootstrap = kafka_broker.bootstrap
    await create_topics(bootstrap, app)
    group = ProcGroup(tmp)
    failed_before = request.session.testsfailed
    env = {"KEDGE_KAFKA__BOOTSTRAP_SERVERS": bootstrap, "KEDGE_DATA_DIR": str(tmp), "KEDGE_INSTANCE": "kedge-e2e",
           "KEDGE_TOPOLOGY__DEVICE_PARTITIONS": str(DEVICE_PARTITIONS)}
    bus = CommandBus(kafka_settings(bootstrap))
    tap = PollTap(bootstrap)
    try:
        await start_worker(group, "worker", bootstrap, tmp / "worker", f"kedge-worker-{uuid.uuid4().hex[:8]}")
        http = group.start("http", kedge("serve", "http", "--port", "0"), env=env)
        mqtt = group.start("mqtt", kedge("serve", "mqtt", "--port", "0"), env=env)
        await http.wait_for_log("command delivery to HTTP devices ready", 30)
        await http.wait_for_log("http endpoint listening on http://", 30)
        await mqtt.wait_for_log("mqtt endpoint listening on mqtt://", 30)
        http_url = re.search(r"listening on (http://127\.0\.0\.1:\d+)", http.log())
        mqtt_port = re.search(r"listening on mqtt://127\.0\.0\.1:(\d+)", mqtt.log())
        assert http_url and mqtt_port, (http.log(), mqtt.log())
        await tap.start()
        async with httpx.AsyncClient(base_url=http_url.group(1), timeout=30) as client:
            yield Stack(bootstrap, app, client, int(mqtt_port.group(1)), bus, tap)
        assert http.stop() == 0, http.log()  # SIGTERM: a clean stop
        assert "Traceback" not in http.log(), http.log()
    finally:
        await tap.stop()
        await bus.stop()
        group.stop_all()
        if request.session.testsfailed > failed_before:
            print(group.logs())


async def test_a_command_sent_while_the_device_waits_is_the_200_response(stack: Stack) -> None:
    async with EventReader(stack.bootstrap, names.app_topic(stack.app)) as events:
        waiting = stack.publish("dev-1", 10)
        await stack.tap.poll_of(stack.app, "dev-1")
        outcome = await stack.command("dev-1", "set-temp", b'{"target":21}', "application/json")
        r = await asyncio.wait_for(waiting, 15)
        assert (r.status_code, r.headers["command"], r.headers["content-type"], r.content) == (
            200, "set-temp", "application/json", b'{"target":21}')
        assert outcome == Outcome(True)
        await events.wait(lambda: bool(events.of("dev-1")), 15, "the telemetry event")
    # HTTP creates no connection state (§3.1): the telemetry, and no connection events
    assert [e.type for e in events.of("dev-1")] == ["io.drogue.event.v1"]


async def test_a_gateway_publishing_for_a_device_gets_that_devices_command(stack: Stack) -> None:
    waiting = stack.publish("gw", 10, **{"as": "child"})
    await stack.tap.poll_of(stack.app, "child", "gw")
    # one request for the child itself (no poll: offline) and one via its gateway (the poll)
    outcome = await stack.command("child", "reboot", b"now", "text/plain", gateways=("gw",))
    r = await asyncio.wait_for(waiting, 15)
    assert (r.status_code, r.headers["command"], r.content) == (200, "reboot", b"now")
    assert outcome == Outcome(True)


async def test_without_a_command_the_request_answers_202_after_ct(stack: Stack) -> None:
    r = await asyncio.wait_for(stack.publish("idle", 1), 15)
    assert r.status_code == 202 and "command" not in r.headers
    # the poll ended with its request: a later command finds nobody
    assert await stack.command("idle", "late", b"", None) == Outcome(False, DEVICE_OFFLINE)


async def test_a_command_for_a_device_without_connection_or_poll_is_offline(stack: Stack) -> None:
    assert await stack.command("lonely", "ping", b"", None) == Outcome(False, DEVICE_OFFLINE)


async def test_an_mqtt_connection_has_priority_over_a_waiting_http_request(stack: Stack) -> None:
    client, connack = await RawClient.open(
        stack.mqtt_port, Connect("hybrid", 5, username=f"hybrid@{stack.app}", password=b"secret"))
    try:
        assert connack.reason_code == ReasonCode.SUCCESS
        await client.send(Subscribe(1, (Subscription("command/inbox//#"),)))
        assert isinstance(await client.recv(), SubAck)
        waiting = stack.publish("hybrid", 2)
        await stack.tap.poll_of(stack.app, "hybrid")
        assert await stack.command("hybrid", "blink", b"fast", None) == Outcome(True)
        delivered = await client.recv(15)
        assert isinstance(delivered, Publish) and delivered.payload == b"fast", delivered
        r = await asyncio.wait_for(waiting, 15)
        assert r.status_code == 202 and "command" not in r.headers
    finally:
        client.close()
