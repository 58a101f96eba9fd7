"""Two `kedge worker` processes split the partitions; one is SIGKILLed and the other carries on with the
``sessions`` table recovered from its changelog: disconnects and takeovers after the failover still see the
right holders and sequences (nothing lost, nothing doubled: a repeated event is the same event, same id and
content), and a device connecting during the rebalance is answered once its partition has a new owner."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from ingress.state_client import StateClient
from schemas.state import Kick, Reason
from tests.agents.support import (
    TEST_LEASE,
    EventReader,
    assert_repeats_identical,
    connection_log,
    create_topics,
    kafka_settings,
    start_worker,
)
from tests.support.procs import ProcGroup, eventually
from topology import names

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DEVICES = [f"dev-{i}" for i in range(8)]  # spread over the 4 partitions
LATE = [f"late-{i}" for i in range(6)]  # connect while the group is still rebalancing after the kill


async def test_sessions_survive_a_sigkilled_worker(bootstrap: str, procs: ProcGroup, tmp_path: object) -> None:
    from pathlib import Path

    tmp = Path(str(tmp_path))
    app = f"failover-{uuid.uuid4().hex[:8]}"
    await create_topics(bootstrap, app)
    group_id = f"kedge-worker-{uuid.uuid4().hex[:8]}"
    first = await start_worker(procs, "worker-1", bootstrap, tmp / "w1", group_id)
    second = await start_worker(procs, "worker-2", bootstrap, tmp / "w2", group_id)

    kicks: list[Kick] = []
    client = StateClient(kafka_settings(bootstrap), TEST_LEASE, on_kick=kicks.append)
    other = StateClient(kafka_settings(bootstrap), TEST_LEASE)
    await client.start()
    await other.start()
    try:
        async with EventReader(bootstrap, names.app_topic(app)) as events:
            cids: dict[str, str] = {}
            for d in DEVICES:
                cids[d] = uuid.uuid4().hex
                reply = await client.connect(app, d, cids[d], "mqtt", "app-uid", f"{d}-uid")
                assert reply.accepted, reply
            assert "device-state partition" in first.log() and "device-state partition" in second.log(), (
                "both workers should own device-state partitions before the kill"
            )
            first.kill()  # SIGKILL: no clean leave, the group notices after the session timeout
            # devices that connect during the failover window: answered once their partition has an owner again
            late_cids = {d: uuid.uuid4().hex for d in LATE}
            replies = await asyncio.gather(*(client.connect(app, d, late_cids[d], "mqtt", "app-uid", f"{d}-uid")
                                             for d in LATE))
            assert all(r.accepted for r in replies), replies

            # half of the devices: a normal disconnect; the other half: taken over by another endpoint
            for i, d in enumerate(DEVICES):
                if i % 2 == 0:
                    await client.disconnect(app, d, cids[d], Reason.NORMAL, skip_will=True)
                else:
                    reply = await other.connect(app, d, f"new-{cids[d]}", "mqtt", "app-uid", f"{d}-uid")
                    assert reply.accepted, reply
            await events.wait(
                lambda: all(len(events.unique_of(d)) == (2 if i % 2 == 0 else 3) for i, d in enumerate(DEVICES)),
                60, "the events after the failover",
            )
            for i, d in enumerate(DEVICES):
                want = [("connected", cids[d], None, f"{1:020d}"),
                        ("disconnected", cids[d], "normal" if i % 2 == 0 else "taken_over", f"{2:020d}")]
                if i % 2:
                    want.append(("connected", f"new-{cids[d]}", None, f"{3:020d}"))
                # at-least-once: a record replayed after the failover may repeat an event (same id); what
                # a consumer keeps after dropping repeats is exactly the expected story
                assert connection_log(events.unique_of(d)) == want, f"{d}: {connection_log(events.of(d))}"
                # and a repeat never comes after a later event: raw sequences never go down
                raw = [e.extensions["sequence"] for e in events.of(d)]
                assert raw == sorted(raw), f"{d}: a repeated event came after a later one: {raw}"
                assert_repeats_identical(d, events.of(d))
            await eventually(lambda: len(kicks) == len(DEVICES) // 2, 20, "kicks for the taken-over devices")
            for d in LATE:
                await client.disconnect(app, d, late_cids[d], Reason.NORMAL, skip_will=True)
            await events.wait(lambda: all(len(events.unique_of(d)) == 2 for d in LATE), 30,
                              "the late devices' disconnects")
            for d in LATE:
                assert connection_log(events.unique_of(d)) == [
                    ("connected", late_cids[d], None, f"{1:020d}"),
                    ("disconnected", late_cids[d], "normal", f"{2:020d}")], f"{d}: {connection_log(events.of(d))}"
                assert_repeats_identical(d, events.of(d))

            # the surviving worker rebuilt its endpoint index from the recovered table: releasing the
            # other endpoint's lease ends exactly the devices it holds
            await other.stop()
            taken = [d for i, d in enumerate(DEVICES) if i % 2]
            await events.wait(lambda: all(len(events.unique_of(d)) == 4 for d in taken), 30, "endpoint_lost")
            for d in taken:
                assert connection_log(events.unique_of(d))[3] == (
                    "disconnected", f"new-{cids[d]}", "endpoint_lost", f"{4:020d}")
            assert second.running
    finally:
        await client.stop()
        await other.stop()
