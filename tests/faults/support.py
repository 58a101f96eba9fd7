"""Helpers of the fault tests: endpoint processes with short leases and timeouts, a pipelining QoS 1 MQTT
publisher that remembers what was PUBACKed, and readers of the events it produced."""

from __future__ import annotations

import asyncio
import contextlib
import re
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from protocols.mqtt import Connect, PubAck, Publish, ReasonCode
from schemas.events import DeviceEvent
from tests.agents.support import DEVICE_PARTITIONS, TEST_LEASE
from tests.ingress.mqtt_support import RawClient
from tests.support.procs import Proc, ProcGroup, kedge

#: what a device's QoS 1 publish waits for at most before the endpoint fails it (short: faults are quick)
PUBLISH_TIMEOUT_S = 3.0
#: an endpoint's bounded wait for the agent's answer to a CONNECT
CONNECT_TIMEOUT_S = 4.0
#: lease expiry is noticed within lease + check interval; this much more for a loaded CI machine
LEASE_SLACK_S = 10.0
LEASE_BOUND_S = TEST_LEASE.lease_s + TEST_LEASE.check_interval_s + LEASE_SLACK_S


def endpoint_env(bootstrap: str, data_dir: Path, database_url: str | None = None) -> dict[str, str]:
    """Environment of `kedge serve mqtt|http|api` in the fault tests: short leases and Kafka timeouts."""
    env = {
        "KEDGE_KAFKA__BOOTSTRAP_SERVERS": bootstrap, "KEDGE_DATA_DIR": str(data_dir),
        "KEDGE_INSTANCE": "kedge-faults", "KEDGE_TOPOLOGY__DEVICE_PARTITIONS": str(DEVICE_PARTITIONS),
        "KEDGE_LEASE__HEARTBEAT_INTERVAL_S": str(TEST_LEASE.heartbeat_interval_s),
        "KEDGE_LEASE__LEASE_S": str(TEST_LEASE.lease_s),
        "KEDGE_LEASE__CHECK_INTERVAL_S": str(TEST_LEASE.check_interval_s),
        "KEDGE_LEASE__CONNECT_TIMEOUT_S": str(CONNECT_TIMEOUT_S),
        "KEDGE_KAFKA__PUBLISH_TIMEOUT_S": str(PUBLISH_TIMEOUT_S),
        "KEDGE_KAFKA__REQUEST_TIMEOUT_MS": "3000",
        "KEDGE_KAFKA__CONNECT_RETRY_S": "0.5",
    }
    if database_url is not None:
        env["KEDGE_REGISTRY__DATABASE_URL"] = database_url
    return env


async def start_mqtt(group: ProcGroup, name: str, env: dict[str, str]) -> tuple[Proc, int]:
    """`kedge serve mqtt` on a free port; returns the process and its port."""
    proc = group.start(name, kedge("serve", "mqtt", "--port", "0"), env)
    await proc.wait_for_log("mqtt endpoint listening on mqtt://", 45)
    match = re.search(r"mqtt endpoint listening on mqtt://127\.0\.0\.1:(\d+)", proc.log())
    assert match, proc.log()
    return proc, int(match.group(1))


async def wait_lease_watched(worker: Proc, endpoint: Proc, timeout_s: float = 60) -> str:
    """Wait until ``worker``'s lease watcher tracks ``endpoint``'s lease; returns the endpoint's instance id.

    A fresh worker first replays the whole ``endpoint-heartbeats`` topic (in a test session it holds every
    endpoint started so far): only then are a new endpoint's heartbeats, and so its death, noticed.
    """
    await endpoint.wait_for_log("holds a lease", 30)
    match = re.search(r"endpoint instance (\S+) holds a lease", endpoint.log())
    assert match, endpoint.log()
    await worker.wait_for_log(f"lease of endpoint {match.group(1)} started", timeout_s)
    return match.group(1)


async def start_http(group: ProcGroup, name: str, env: dict[str, str]) -> tuple[Proc, str]:
    """`kedge serve http` on a free port; returns the process and its base URL."""
    proc = group.start(name, kedge("serve", "http", "--port", "0"), env)
    await proc.wait_for_log("http endpoint listening on http://", 45)
    match = re.search(r"listening on (http://127\.0\.0\.1:\d+)", proc.log())
    assert match, proc.log()
    return proc, match.group(1)


async def connect(port: int, app: str, device: str, version: int = 5) -> tuple[RawClient, int]:
    """A raw MQTT connection of ``device@app`` (password ``secret``); returns it and the CONNACK code."""
    client, connack = await RawClient.open(
        port, Connect(f"{device}-{version}", version, username=f"{device}@{app}", password=b"secret"))
    return client, int(connack.reason_code)


def payload(device: str, seq: int) -> bytes:
    return orjson.dumps({"device": device, "seq": seq})


@dataclass
class SeqPublisher:
    """Publishes QoS 1 ``{"device", "seq"}`` payloads on one connection with up to ``window`` in flight and
    records which sequence numbers got a successful PUBACK. Stops when the connection ends."""

    client: RawClient
    device: str
    next_seq: int = 0
    window: int = 8
    acked: set[int] = field(default_factory=set)
    failed: dict[int, int] = field(default_factory=dict)  # seq -> PUBACK reason code
    _in_flight: dict[int, int] = field(default_factory=dict)  # packet id -> seq
    _room: asyncio.Semaphore = field(init=False)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    closed: asyncio.Event = field(default_factory=asyncio.Event)
    #: set while no publish awaits its PUBACK
    idle: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self._room = asyncio.Semaphore(self.window)

    def start(self) -> SeqPublisher:
        self._tasks = [asyncio.create_task(self._send()), asyncio.create_task(self._receive())]
        return self

    async def _send(self) -> None:
        packet_id = 0
        with contextlib.suppress(ConnectionError, OSError):
            while not self.closed.is_set():
                await self._room.acquire()
                packet_id = packet_id % 65535 + 1
                self._in_flight[packet_id] = self.next_seq
                self.idle.clear()
                await self.client.send(Publish("telemetry", payload(self.device, self.next_seq), 1,
                                               packet_id=packet_id))
                self.next_seq += 1
                await asyncio.sleep(0.01)

    async def _receive(self) -> None:
        try:
            while True:
                packet = await self.client.recv(60)
                if packet is None:
                    return
                if isinstance(packet, PubAck):
                    seq = self._in_flight.pop(packet.packet_id)
                    if packet.reason_code in (ReasonCode.SUCCESS, ReasonCode.NO_MATCHING_SUBSCRIBERS):
                        self.acked.add(seq)
                    else:
                        self.failed[seq] = int(packet.reason_code)
                    self._room.release()
                    if not self._in_flight:
                        self.idle.set()
        except (ConnectionError, OSError, TimeoutError):
            return
        finally:
            self.closed.set()

    async def halt(self) -> None:
        """Stop sending (``next_seq`` stays put); PUBACKs are still read until the connection ends."""
        self._tasks[0].cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._tasks[0]

    async def stop(self) -> None:
        """Stop sending, wait for the PUBACKs still due (bounded), and close the connection."""
        await self.halt()
        if self._in_flight:
            waits = [asyncio.ensure_future(self.idle.wait()), asyncio.ensure_future(self.closed.wait())]
            await asyncio.wait(waits, timeout=PUBLISH_TIMEOUT_S + 5, return_when=asyncio.FIRST_COMPLETED)
            for w in waits:
                w.cancel()
        self.client.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._tasks[1], 5)


def published_seqs(events: list[DeviceEvent], device: str) -> list[int]:
    """The sequence numbers in the telemetry of ``device`` found on Kafka, repeats included."""
    return [orjson.loads(e.data)["seq"] for e in events if e.device == device and e.subject == "telemetry"]


def connection_events(events: list[DeviceEvent]) -> list[DeviceEvent]:
    return [e for e in events if e.type == "io.drogue.connection.v1"]


def assert_alternating(device: str, events: list[DeviceEvent]) -> list[tuple[bool, str, str | None]]:
    """The connection events of one device (repeats of an id dropped) strictly alternate connected /
    disconnected, each pair shares a connectionid, and `sequence` strictly increases. Returns
    ``(connected, connectionid, reason)`` per event."""
    story = []
    for e in connection_events(events):
        data = orjson.loads(e.data)
        story.append((bool(data["connected"]), e.extensions["connectionid"], data.get("reason"),
                      e.extensions["sequence"]))
    for i, (connected, cid, _, _) in enumerate(story):
        assert connected == (i % 2 == 0), f"{device}: connection events do not alternate: {story}"
        if not connected:
            assert cid == story[i - 1][1], f"{device}: disconnect of another connection: {story}"
    sequences = [s for *_, s in story]
    assert sequences == sorted(set(sequences)), f"{device}: sequence not strictly increasing: {story}"
    return [(c, cid, reason) for c, cid, reason, _ in story]


async def wait_for_registry_change(bootstrap: str, app: str, device: str, timeout_s: float) -> None:
    """Wait until the `registry` topic holds a change of ``app``/``device`` (read from the start)."""
    import pydantic
    from aiokafka import AIOKafkaConsumer
    from aiokafka.structs import TopicPartition

    from schemas.registry import RegistryChange
    from topology.names import REGISTRY

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest")
    await consumer.start()
    try:
        partitions = consumer.partitions_for_topic(REGISTRY) or set()
        if not partitions:
            await consumer._client.force_metadata_update()
            partitions = consumer.partitions_for_topic(REGISTRY) or set()
        consumer.assign([TopicPartition(REGISTRY, p) for p in sorted(partitions)])
        await consumer.seek_to_beginning()
        seen: list[tuple[str, str | None]] = []
        async with asyncio.timeout(timeout_s):
            while True:
                for records in (await consumer.getmany(timeout_ms=200)).values():
                    for r in records:
                        try:  # the session's tests share the topic; some write bad records on purpose
                            change = RegistryChange.model_validate_json(r.value or b"")
                        except pydantic.ValidationError:
                            continue
                        seen.append((change.app, change.device))
                        if (change.app, change.device) == (app, device):
                            return
    except TimeoutError:
        raise AssertionError(f"no change of {app}/{device} on {REGISTRY} within {timeout_s}s; saw {seen}") from None
    finally:
        await consumer.stop()
