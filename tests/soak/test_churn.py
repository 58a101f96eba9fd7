"""Connection churn with endpoint crashes, checked against the device-state invariants.

Devices connect, publish QoS 1, take each other's sessions over through the other endpoint, disconnect, and
every few seconds one of the two MQTT endpoints is SIGKILLed and replaced. At the end, for every device, on
``events-<app>``: the connection events strictly alternate and end disconnected, share connection ids per pair,
carry an increasing ``sequence``, repeats are identical, every disconnect has a reason that matches what
happened, there is a ``connected`` for every CONNACK 0 the device saw, and every PUBACKed message is there.

CI runs it for ``--soak-seconds`` (default 15); run it longer on demand::

    .venv/bin/python -m pytest tests/soak --soak-seconds 600 --soak-seed 7 -s
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

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
from tests.support.procs import Proc, ProcGroup
from topology import names

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DEVICES = tuple(f"churn-{i}" for i in range(10))
#: one endpoint is killed and replaced this often (at least once per run)
KILL_EVERY_S = 8.0
ENDED = {"normal", "taken_over", "endpoint_lost"}


@dataclass
class Endpoint:
    proc: Proc
    port: int


@dataclass
class Device:
    name: str
    version: int
    publisher: SeqPublisher | None = None
    port: int | None = None
    next_seq: int = 0
    acked: set[int] = field(default_factory=set)
    connacks: Counter[int] = field(default_factory=Counter)

    def settle(self) -> None:
        """Take over what the current connection achieved, once it ended."""
        if self.publisher is not None and self.publisher.closed.is_set():
            self._absorb()

    def _absorb(self) -> None:
        assert self.publisher is not None
        self.acked |= self.publisher.acked
        self.next_seq = max(self.next_seq, self.publisher.next_seq)
        self.publisher = None
        self.port = None

    async def connect(self, port: int, app: str) -> None:
        old = self.publisher
        if old is not None:
            await old.halt()  # a takeover: the old connection sends no more and is kicked once this one is in
            self.next_seq = old.next_seq
        try:
            client, code = await connect(port, app, self.name, self.version)
        except (ConnectionError, OSError, TimeoutError):
            return  # the endpoint is being replaced (the old connection, if any, is settled later)
        self.connacks[code] += 1
        if code != 0:
            client.close()
            return
        self.publisher, self.port = SeqPublisher(client, self.name, self.next_seq).start(), port
        if old is not None:
            await asyncio.wait_for(old.closed.wait(), 15)  # kicked (0x8E / closed)
            self.acked |= old.acked

    async def disconnect(self) -> None:
        if self.publisher is not None:
            await self.publisher.stop()
            self._absorb()


async def _replace(group: ProcGroup, worker: Proc, endpoints: list[Endpoint], i: int, env: dict[str, str]) -> None:
    endpoints[i].proc.kill()
    proc, port = await start_mqtt(group, f"mqtt-{uuid.uuid4().hex[:4]}", env)
    await wait_lease_watched(worker, proc)
    endpoints[i] = Endpoint(proc, port)


async def test_churn_with_endpoint_crashes_keeps_every_invariant(
    kafka_broker: EmbeddedBroker, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    duration = float(request.config.getoption("--soak-seconds"))
    seed = request.config.getoption("--soak-seed")
    seed = time.time_ns() % 1_000_000 if seed is None else seed
    rng = random.Random(seed)
    app = f"soak-{uuid.uuid4().hex[:8]}"
    await seed_registry(tmp_path, app, extra=DEVICES)
    bootstrap = kafka_broker.bootstrap
    await create_topics(bootstrap, app)
    group = ProcGroup(tmp_path)
    ok = False
    try:
        worker = await start_worker(group, "worker", bootstrap, tmp_path / "worker", f"w-{uuid.uuid4().hex[:8]}")
        env = endpoint_env(bootstrap, tmp_path)
        endpoints = [Endpoint(*await start_mqtt(group, f"mqtt-{i}", env)) for i in range(2)]
        for e in endpoints:
            await wait_lease_watched(worker, e.proc)
        devices = [Device(name, 5 if i % 2 else 4) for i, name in enumerate(DEVICES)]
        kills = 0
        async with EventReader(bootstrap, names.app_topic(app)) as events:
            end = time.monotonic() + duration
            next_kill = time.monotonic() + min(KILL_EVERY_S, duration / 2)
            while time.monotonic() < end:
                if time.monotonic() >= next_kill:
                    await _replace(group, worker, endpoints, rng.randrange(2), env)
                    kills += 1
                    next_kill = time.monotonic() + KILL_EVERY_S
                device = rng.choice(devices)
                device.settle()
                roll = rng.random()
                if device.publisher is None or roll < 0.15:  # connect, or take over through either endpoint
                    await device.connect(rng.choice(endpoints).port, app)
                elif roll < 0.35:
                    await device.disconnect()
                await asyncio.sleep(rng.uniform(0.0, 0.1))
            for d in devices:
                await d.disconnect()

            def ended(d: Device) -> bool:
                story = [c for c, _, _ in assert_alternating(d.name, events.unique_of(d.name))]
                return not story or not story[-1]

            await events.wait(lambda: all(ended(d) for d in devices)
                              and all(d.acked <= set(published_seqs(events.of(d.name), d.name)) for d in devices),
                              LEASE_BOUND_S + 20, "every connection ended and every PUBACKed message on Kafka")
            for d in devices:
                story = assert_alternating(d.name, events.unique_of(d.name))
                connected = sum(1 for c, _, _ in story if c)
                assert connected >= d.connacks[0], f"{d.name}: {d.connacks[0]} CONNACK 0 but {connected} connected"
                assert connected <= sum(d.connacks.values()), f"{d.name}: more connected than CONNECTs: {story}"
                reasons = {r for c, _, r in story if not c}
                assert reasons <= ENDED, f"{d.name}: unexpected disconnect reasons {reasons - ENDED}: {story}"
                missing = d.acked - set(published_seqs(events.of(d.name), d.name))
                assert not missing, f"{d.name}: PUBACKed but not on Kafka: {sorted(missing)}"
                assert_repeats_identical(d.name, events.of(d.name))
        assert kills >= 1
        print(f"soak: {duration:g}s, seed {seed}, {kills} endpoint kills, "
              f"{sum(d.connacks[0] for d in devices)} connects, {sum(len(d.acked) for d in devices)} PUBACKed")
        ok = True
    finally:
        group.stop_all()
        if not ok:
            print(f"soak failed with --soak-seed {seed}")
            print(group.logs())
