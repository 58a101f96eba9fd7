"""Property tests of the device-state core (no Faust): random interleavings across several endpoints.

Each example is a random sequence of connects, disconnects (current or stale), lease expiries, device- and
application-level registry changes, commands, replays of earlier records (at-least-once) and partition
reassignments (the core rebuilt from its table). On the emitted effects, for every device:

* deduplicated by event id (duplicates must be identical), connection events strictly alternate
  connected/disconnected, each pair shares a connection id, and ``sequence`` strictly increases;
* a Will precedes ``connected:false`` exactly when the connection had one and did not end with a normal,
  Will-skipping disconnect; a connection id once ended is never connected again;
* every connect gets exactly one reply, an accepting reply comes after its ``connected`` event;
* takeover, lease loss and registry blocks kick the old connection's endpoint;
* a blocked device or app refuses connects; commands reach the holder only, or fail as offline;
* the endpoint/app indexes always agree with the table.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agents.device_state.decide import blocked
from agents.device_state.model import (
    CommandFailed,
    DeviceState,
    Effect,
    EmitConnection,
    EmitEvent,
    SendCommand,
    SendKick,
    SendReply,
    marks_from_bytes,
)
from agents.device_state.partition import PartitionCore
from schemas.keys import app_key, device_key
from schemas.state import (
    DEVICE_OFFLINE,
    CommandRequest,
    ConnectRequest,
    DisconnectRequest,
    EndpointLost,
    Operation,
    Reason,
    RegistryChangeView,
    Scope,
    StateRequest,
    Will,
)

APP, APP_UID = "app", "app-uid"
DEVICES = ["d0", "d1", "d2"]
ENDPOINTS = ["e0", "e1", "e2"]
END_REASONS = [Reason.NORMAL, Reason.KEEPALIVE_TIMEOUT, Reason.ERROR, Reason.ENDPOINT_LOST]

op = st.one_of(
    st.tuples(st.just("connect"), st.sampled_from(ENDPOINTS), st.sampled_from(DEVICES), st.booleans()),
    st.tuples(st.just("disconnect"), st.integers(0, 50), st.sampled_from(END_REASONS), st.booleans()),
    st.tuples(st.just("lost"), st.sampled_from(ENDPOINTS)),
    st.tuples(st.just("device"), st.sampled_from(DEVICES),
              st.sampled_from(["disable", "enable", "delete", "cascade", "recreate"])),
    st.tuples(st.just("app"), st.sampled_from(["disable", "enable", "delete"])),
    st.tuples(st.just("command"), st.sampled_from(DEVICES)),
    st.tuples(st.just("replay"), st.integers(0, 200)),
    st.tuples(st.just("rebuild")),
)


class Harness:
    def __init__(self) -> None:
        self.sessions: dict[str, bytes] = {}
        self.apps: dict[str, bytes] = {}
        self.core = PartitionCore(self.sessions, self.apps)
        self.log: list[tuple[StateRequest, list[Effect]]] = []
        self.cids: list[tuple[str, str, str]] = []  # (connection id, endpoint, device)
        self.revision = 0
        self.incarnation: dict[str, int] = dict.fromkeys(DEVICES, 0)  # device -> uid generation
        self.deleted: set[str] = set()  # device uids whose deletion was processed
        self.now = 1000.0

    def run(self, o: tuple[Any, ...]) -> None:
        kind = o[0]
        request: StateRequest | None = None
        if kind == "connect":
            _, endpoint, device, with_will = o
            cid = f"c{len(self.cids)}"
            self.cids.append((cid, endpoint, device))
            will = Will(f"will/{cid}", cid.encode()) if with_will else None
            request = ConnectRequest(APP, device, cid, endpoint, "mqtt", APP_UID, self.uid(device), f"r-{cid}", will)
        elif kind == "disconnect":
            _, index, reason, skip = o
            if not self.cids:
                return
            cid, endpoint, device = self.cids[index % len(self.cids)]
            request = DisconnectRequest(APP, device, cid, endpoint, reason, skip)
        elif kind == "lost":
            request = EndpointLost(o[1])
        elif kind in ("device", "app"):
            self.revision += 1
            what = o[-1]
            if what == "recreate":  # deleted and created again: a new uid, the old one stays deleted
                self.incarnation[o[1]] += 1
                what = "enable"
            operation = Operation.DELETED if what in ("delete", "cascade") else Operation.UPDATED
            disabled = what == "disable"
            if kind == "device":
                request = RegistryChangeView(APP, o[1], operation, self.uid(o[1]), disabled, Scope.DEVICE,
                                             self.revision, cascade=what == "cascade")
                if operation is Operation.DELETED:  # a deleted uid is never updated again: later ops, new uid
                    self.incarnation[o[1]] += 1
            else:
                request = RegistryChangeView(APP, None, operation, APP_UID, disabled, Scope.APPLICATION,
                                             self.revision)
        elif kind == "command":
            request = CommandRequest(APP, o[1], "cmd", b"x", None, f"q{len(self.log)}", "requester")
        elif kind == "replay":
            if not self.log:
                return
            request = self.log[o[1] % len(self.log)][0]
        elif kind == "rebuild":
            self.core = PartitionCore(self.sessions, self.apps, list(self.sessions.items()))
            return
        assert request is not None
        self.now += 1.0
        before = {k: DeviceState.from_bytes(v) for k, v in self.sessions.items()}
        effects = self.core.handle(request, self.now)
        self.check_step(request, effects, before)
        if isinstance(request, ConnectRequest) and request.device_uid in self.deleted:
            assert not any(isinstance(e, SendReply) and e.record.accepted for e in effects), "deleted uid accepted"
        if isinstance(request, RegistryChangeView) and request.operation is Operation.DELETED and request.device:
            self.deleted.add(request.uid)
        self.log.append((request, effects))
        self.check_index()

    def uid(self, device: str) -> str:
        return f"uid-{device}-{self.incarnation[device]}"

    def check_step(self, request: StateRequest, effects: list[Effect], before: dict[str, DeviceState]) -> None:
        replies = [e for e in effects if isinstance(e, SendReply)]
        if isinstance(request, ConnectRequest):
            assert len(replies) == 1 and replies[0].endpoint == request.endpoint
            reply = replies[0].record
            assert reply.request_id == request.request_id and reply.connection_id == request.connection_id
            key = device_key(request.app, request.device)
            if reply.accepted:
                connected = [i for i, e in enumerate(effects) if isinstance(e, EmitConnection) and e.connected]
                assert connected and connected[-1] < effects.index(replies[0]), "reply before connected"
                assert effects[connected[-1]].connection_id == request.connection_id  # type: ignore[union-attr]
            else:
                old = before.get(key, DeviceState())
                assert self.sessions.get(key) is None or DeviceState.from_bytes(
                    self.sessions[key]).holder == old.holder, "a refused connect changed the holder"
            state = before.get(key, DeviceState())
            block = blocked(state.marks, request.device_uid) or blocked(
                marks_from_bytes(self.apps[app_key(APP)]) if app_key(APP) in self.apps else (), APP_UID)
            if block is not None and not (state.holder and state.holder.connection_id == request.connection_id):
                assert not reply.accepted and reply.reason in (block, Reason.SUPERSEDED), "blocked but accepted"
        else:
            assert not replies
        if isinstance(request, CommandRequest):
            state = before.get(device_key(request.app, request.device), DeviceState())
            if state.holder is None:
                (failed,) = effects
                assert isinstance(failed, CommandFailed) and failed.endpoint == "requester"
                assert not failed.record.delivered and failed.record.reason == DEVICE_OFFLINE
            else:
                assert len(effects) == 1 and isinstance(effects[0], SendCommand)
                assert effects[0].endpoint == state.holder.endpoint
                assert effects[0].record.connection_id == state.holder.connection_id
        # every abnormal end that the endpoint did not report itself kicks the old connection
        kicks = {(e.endpoint, e.record.connection_id) for e in effects if isinstance(e, SendKick)}
        holders = {s.holder.connection_id: s.holder.endpoint for s in before.values() if s.holder}
        for e in effects:
            if isinstance(e, EmitConnection) and not e.connected and e.reason not in (
                Reason.NORMAL, Reason.KEEPALIVE_TIMEOUT, Reason.ERROR
            ):
                assert (holders[e.connection_id], e.connection_id) in kicks, f"no kick for {e}"

    def check_index(self) -> None:
        held = {k: DeviceState.from_bytes(v).holder for k, v in self.sessions.items()}
        by_endpoint = {(ep, k, c) for ep, d in self.core.by_endpoint.items() for k, c in d.items()}
        assert by_endpoint == {(h.endpoint, k, h.connection_id) for k, h in held.items() if h}
        by_app = {(a, k) for a, ks in self.core.by_app.items() for k in ks}
        assert by_app == {(h.app, k) for k, h in held.items() if h}

    def check_streams(self) -> None:
        connects = {r.connection_id: r for r, _ in self.log if isinstance(r, ConnectRequest)}
        seen: dict[str, EmitConnection | EmitEvent] = {}
        streams: dict[str, list[EmitConnection | EmitEvent]] = defaultdict(list)
        for _, effects in self.log:
            for e in effects:
                if isinstance(e, EmitConnection | EmitEvent):
                    if e.event_id in seen:
                        assert _same_event(seen[e.event_id], e), f"duplicate id, different event: {e}"
                        continue
                    seen[e.event_id] = e
                    streams[e.device].append(e)
        disconnects: dict[str, DisconnectRequest] = {}
        for r, effects in self.log:
            if isinstance(r, DisconnectRequest) and any(
                isinstance(e, EmitConnection) and not e.connected for e in effects
            ):
                disconnects[r.connection_id] = r
        for device, stream in streams.items():
            holder: str | None = None
            last_seq = 0
            ended: set[str] = set()
            pending_will: str | None = None
            for e in stream:
                if isinstance(e, EmitEvent):
                    assert holder is not None and e.event_id == f"{holder}:will", f"{device}: stray will {e}"
                    pending_will = holder
                    continue
                assert e.sequence > last_seq, f"{device}: sequence not increasing at {e}"
                last_seq = e.sequence
                if e.connected:
                    assert holder is None, f"{device}: connected while {holder} holds"
                    assert e.connection_id not in ended, f"{device}: ended {e.connection_id} resurrected"
                    holder = e.connection_id
                else:
                    assert holder == e.connection_id, f"{device}: disconnected {e.connection_id} not holder"
                    req = connects[e.connection_id]
                    dreq = disconnects.get(e.connection_id)
                    skip = dreq is not None and dreq.skip_will and dreq.reason is Reason.NORMAL and (
                        e.reason is Reason.NORMAL)
                    want_will = req.will is not None and not skip
                    assert (pending_will == holder) == want_will, f"{device}: will rule broken at {e}"
                    ended.add(holder)
                    holder = None
                    pending_will = None


def _same_event(a: EmitConnection | EmitEvent, b: EmitConnection | EmitEvent) -> bool:
    return type(a) is type(b) and dataclasses.replace(a, time=0.0) == dataclasses.replace(b, time=0.0)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(op, min_size=1, max_size=60))
def test_invariants_hold_for_random_interleavings(ops: list[tuple[Any, ...]]) -> None:
    h = Harness()
    for o in ops:
        h.run(o)
    h.check_streams()


def test_takeover_emits_will_disconnected_connected_and_kicks_in_one_step() -> None:
    h = Harness()
    h.run(("connect", "e0", "d0", True))
    h.run(("connect", "e1", "d0", False))
    _, effects = h.log[-1]
    kinds = [(type(e).__name__, getattr(e, "connected", None), getattr(e, "reason", None)) for e in effects]
    assert kinds == [
        ("SendKick", None, None),
        ("EmitEvent", None, None),
        ("EmitConnection", False, Reason.TAKEN_OVER),
        ("EmitConnection", True, None),
        ("SendReply", None, None),
    ]
    kick = effects[0]
    assert isinstance(kick, SendKick) and kick.endpoint == "e0" and kick.record.reason is Reason.TAKEN_OVER
    seqs = [e.sequence for e in effects if isinstance(e, EmitConnection)]
    assert seqs == [2, 3]


def test_stale_disconnect_and_replayed_connect_change_nothing() -> None:
    h = Harness()
    h.run(("connect", "e0", "d0", False))  # c0
    h.run(("connect", "e1", "d0", False))  # c1 takes over
    before = dict(h.sessions)
    h.run(("disconnect", 0, Reason.NORMAL, True))  # stale: c0 no longer holds
    assert h.log[-1][1] == [] and h.sessions == before
    h.run(("replay", 0))  # c0's connect again: refused, never resurrected
    (reply,) = h.log[-1][1]
    assert isinstance(reply, SendReply) and not reply.record.accepted
    assert reply.record.reason is Reason.SUPERSEDED and h.sessions == before


def test_disabled_device_is_kicked_and_refused_until_enabled() -> None:
    h = Harness()
    h.run(("connect", "e0", "d0", True))
    h.run(("device", "d0", "disable"))
    effects = h.log[-1][1]
    assert [type(e).__name__ for e in effects] == ["SendKick", "EmitEvent", "EmitConnection"]
    h.run(("connect", "e0", "d0", False))
    (reply,) = h.log[-1][1]
    assert isinstance(reply, SendReply) and reply.record.reason is Reason.DEVICE_DISABLED
    h.run(("replay", 1))  # an old "disable" replayed after the enable below must not block again
    h.run(("device", "d0", "enable"))
    h.run(("replay", 1))
    h.run(("connect", "e0", "d0", False))
    (*_, reply) = h.log[-1][1]
    assert isinstance(reply, SendReply) and reply.record.accepted


def test_app_disable_ends_every_held_device_of_the_app_in_the_partition() -> None:
    h = Harness()
    for d in DEVICES:
        h.run(("connect", "e0", d, False))
    h.run(("app", "disable"))
    ends = [e for e in h.log[-1][1] if isinstance(e, EmitConnection)]
    assert sorted(e.device for e in ends) == DEVICES
    assert {e.reason for e in ends} == {Reason.APP_DISABLED}
    assert h.core.holders() == 0


def test_endpoint_lost_ends_only_that_endpoints_devices_after_a_rebuild() -> None:
    h = Harness()
    h.run(("connect", "e0", "d0", True))
    h.run(("connect", "e1", "d1", True))
    h.run(("rebuild",))
    h.run(("lost", "e0"))
    effects = h.log[-1][1]
    assert [type(e).__name__ for e in effects] == ["SendKick", "EmitEvent", "EmitConnection"]
    assert effects[-1].device == "d0" and effects[-1].reason is Reason.ENDPOINT_LOST  # type: ignore[union-attr]
    assert h.core.holders() == 1
    h.check_streams()
