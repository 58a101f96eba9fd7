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
* command polls (HTTP ``ct`` waiters, also of a gateway on behalf of a device) never produce effects (no
  connection events, kicks or replies) and never change a holder; the holder has priority over polls; without
  a holder a command goes to the oldest live poll of its route for its device, and a consumed, ended or
  expired poll never receives another command (a replayed command goes to the poll it already consumed);
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
    MAX_POLLS,
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
    CommandPoll,
    CommandPollEnd,
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
#: the gateway of polls and commands sent on behalf of another device (None: the device itself)
SENDERS = [None, "d0"]
END_REASONS = [Reason.NORMAL, Reason.KEEPALIVE_TIMEOUT, Reason.ERROR, Reason.ENDPOINT_LOST]

op = st.one_of(
    st.tuples(st.just("connect"), st.sampled_from(ENDPOINTS), st.sampled_from(DEVICES), st.booleans()),
    st.tuples(st.just("disconnect"), st.integers(0, 50), st.sampled_from(END_REASONS), st.booleans()),
    # the last element: None, or the slice size the shell ends a lost endpoint's holders in
    st.tuples(st.just("lost"), st.sampled_from([*ENDPOINTS, "h0"]), st.sampled_from([None, 1, 2])),
    st.tuples(st.just("device"), st.sampled_from(DEVICES),
              st.sampled_from(["disable", "enable", "delete", "cascade", "recreate"])),
    st.tuples(st.just("app"), st.sampled_from(["disable", "enable", "delete"])),
    st.tuples(st.just("command"), st.sampled_from(DEVICES), st.sampled_from(SENDERS)),
    st.tuples(st.just("poll"), st.sampled_from(["h0", "h1"]), st.sampled_from(DEVICES), st.sampled_from(SENDERS),
              st.integers(1, 10)),
    st.tuples(st.just("poll-end"), st.integers(0, 50)),
    st.tuples(st.just("replay"), st.integers(0, 200)),
    st.tuples(st.just("rebuild")),
)

_poll = st.tuples(st.just("poll"), st.sampled_from(["h0", "h1"]), st.sampled_from(DEVICES[:2]),
                  st.sampled_from(SENDERS), st.integers(1, 10))
_command = st.tuples(st.just("command"), st.sampled_from(DEVICES[:2]), st.sampled_from(SENDERS))
#: polls and commands on few devices, so that commands often meet live polls (and holders)
poll_heavy_op = st.sampled_from([
    _poll, _poll, _poll, _command, _command, _command,
    st.tuples(st.just("poll-end"), st.integers(0, 50)),
    st.tuples(st.just("connect"), st.sampled_from(ENDPOINTS), st.sampled_from(DEVICES[:2]), st.booleans()),
    st.tuples(st.just("disconnect"), st.integers(0, 50), st.sampled_from(END_REASONS), st.booleans()),
    st.tuples(st.just("lost"), st.sampled_from(["e0", "h0"])),
    st.tuples(st.just("replay"), st.integers(0, 200)),
    st.tuples(st.just("rebuild")),
]).flatmap(lambda strategy: strategy)


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
        #: the harness's own model of the polls: poll id -> request, and state ("live", "ended", "dropped",
        #: or the request id of the command that consumed it)
        self.polls: dict[str, CommandPoll] = {}
        self.poll_state: dict[str, str] = {}

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
            sender = o[2] if o[2] != o[1] else None
            request = CommandRequest(APP, o[1], "cmd", b"x", None, f"q{len(self.log)}", "requester", sender)
        elif kind == "poll":
            _, endpoint, device, sender, ct = o
            request = CommandPoll(APP, device, endpoint, f"p{len(self.polls)}", self.now + ct,
                                  sender if sender != device else None)
        elif kind == "poll-end":
            if not self.polls:
                return
            p = list(self.polls.values())[o[1] % len(self.polls)]
            request = CommandPollEnd(APP, p.device, p.poll_id, p.sender)
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
        if kind == "lost" and len(o) > 2 and o[2]:  # as the shell does it: in slices of o[2] holders
            effects, more = [], True
            while more:
                part, more = self.core.end_endpoint(o[1], self.now, o[2])
                effects += part
        else:
            effects = self.core.handle(request, self.now)
        self.check_step(request, effects, before)
        self.check_polls(request, effects, before)
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
            state = before.get(device_key(request.app, request.route), DeviceState())
            if state.holder is None:
                pass  # a poll or offline: check_polls
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

    def check_polls(self, request: StateRequest, effects: list[Effect], before: dict[str, DeviceState]) -> None:
        if isinstance(request, CommandPoll | CommandPollEnd):
            after = {k: DeviceState.from_bytes(v) for k, v in self.sessions.items()}
            assert effects == [], f"a poll produced effects: {effects}"
            assert {k: s.holder for k, s in after.items() if s.holder} == {
                k: s.holder for k, s in before.items() if s.holder}, "a poll changed a holder"
            if isinstance(request, CommandPoll) and request.poll_id not in self.polls:
                if request.until > self.now:
                    live = self.live(request.route)
                    if len(live) >= MAX_POLLS:
                        self.poll_state[live[0]] = "dropped"
                    self.poll_state[request.poll_id] = "live"
                else:
                    self.poll_state[request.poll_id] = "expired"
                self.polls[request.poll_id] = request
            elif isinstance(request, CommandPollEnd) and self.poll_state.get(request.poll_id) == "live":
                self.poll_state[request.poll_id] = "ended"
            return
        if isinstance(request, EndpointLost):
            for pid, st_ in self.poll_state.items():
                if st_ == "live" and self.polls[pid].endpoint == request.endpoint:
                    self.poll_state[pid] = "ended"
            assert not any(isinstance(e, SendCommand) for e in effects)
            return
        if not isinstance(request, CommandRequest):
            return
        holder = before.get(device_key(request.app, request.route), DeviceState()).holder
        if holder is not None:
            return  # holder priority: check_step saw it go to the holder
        # a replayed command goes to the poll it consumed while that is remembered (until its ``until``)
        consumed = [pid for pid, st_ in self.poll_state.items()
                    if st_ == request.request_id and self.polls[pid].until > self.now]
        candidates = [pid for pid in self.live(request.route) if self.polls[pid].device == request.device]
        expected = consumed[0] if consumed else (candidates[0] if candidates else None)
        if expected is None:
            (failed,) = effects
            assert isinstance(failed, CommandFailed) and failed.endpoint == "requester"
            assert not failed.record.delivered and failed.record.reason == DEVICE_OFFLINE
            return
        (sent,) = effects
        assert isinstance(sent, SendCommand), f"a live poll was not used: {effects}"
        assert sent.record.connection_id == expected, "not the oldest live poll (or not the consumed one)"
        assert sent.endpoint == self.polls[expected].endpoint and sent.record.device == request.device
        self.poll_state[expected] = request.request_id

    def live(self, route: str) -> list[str]:
        """The live polls of ``route`` in registration order, by the harness's model."""
        return [pid for pid, st_ in self.poll_state.items()
                if st_ == "live" and self.polls[pid].route == route and self.polls[pid].until > self.now]

    def check_index(self) -> None:
        held = {k: DeviceState.from_bytes(v).holder for k, v in self.sessions.items()}
        by_endpoint = {(ep, k, c) for ep, d in self.core.by_endpoint.items() for k, c in d.items()}
        assert by_endpoint == {(h.endpoint, k, h.connection_id) for k, h in held.items() if h}
        by_app = {(a, k) for a, ks in self.core.by_app.items() for k in ks}
        assert by_app == {(h.app, k) for k, h in held.items() if h}
        polls = {(ep, k) for ep, ks in self.core.polls_by_endpoint.items() for k in ks}
        assert polls == {(p.endpoint, k) for k, v in self.sessions.items() for p in DeviceState.from_bytes(v).polls}

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


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(poll_heavy_op, min_size=10, max_size=60))
def test_poll_invariants_hold_for_random_interleavings(ops: list[tuple[Any, ...]]) -> None:
    h = Harness()
    for o in ops:
        h.run(o)
    h.check_streams()


def test_polls_answer_one_command_each_holder_first_gateway_polls_by_device() -> None:
    h = Harness()
    h.run(("poll", "h0", "d1", None, 10))  # p0: d1 itself
    h.run(("poll", "h1", "d1", None, 10))  # p1
    h.run(("poll", "h0", "d2", "d0", 50))  # p2: gateway d0 on behalf of d2
    assert h.log[-1][1] == [] and h.core.holders() == 0
    h.run(("command", "d1", None))
    h.run(("command", "d1", None))
    h.run(("command", "d1", None))
    sent = [e for _, effects in h.log[-3:] for e in effects]
    assert [(type(e).__name__, getattr(e, "endpoint", None)) for e in sent] == [
        ("SendCommand", "h0"), ("SendCommand", "h1"), ("CommandFailed", "requester")]
    assert [e.record.connection_id for e in sent[:2]] == ["p0", "p1"]  # type: ignore[union-attr]
    h.run(("command", "d0", None))  # for the gateway itself: p2 waits for d2's commands only
    assert isinstance(h.log[-1][1][0], CommandFailed)
    h.run(("command", "d2", None))  # d2 directly: its own route has no poll
    assert isinstance(h.log[-1][1][0], CommandFailed)
    h.run(("replay", 0))  # p0 replayed after it was consumed: not revived
    h.run(("connect", "e0", "d0", False))  # the gateway connects over MQTT: it has priority over p2
    h.run(("command", "d2", "d0"))
    (sent_to_holder,) = h.log[-1][1]
    assert isinstance(sent_to_holder, SendCommand) and sent_to_holder.endpoint == "e0"
    h.run(("disconnect", 0, Reason.NORMAL, True))
    h.run(("command", "d2", "d0"))
    (to_poll,) = h.log[-1][1]
    assert isinstance(to_poll, SendCommand) and to_poll.record.connection_id == "p2"
    h.run(("replay", len(h.log) - 1))  # the same command replayed: the same poll again
    (again,) = h.log[-1][1]
    assert isinstance(again, SendCommand) and again.record.connection_id == "p2"
    h.check_streams()


def test_ended_expired_and_overflowing_polls_get_no_command() -> None:
    h = Harness()
    h.run(("poll", "h0", "d1", None, 10))  # p0
    h.run(("poll-end", 0))
    h.run(("command", "d1", None))
    assert isinstance(h.log[-1][1][0], CommandFailed)
    h.run(("poll", "h0", "d1", None, 2))  # p1: until now+2; the next two steps make it expire
    h.run(("command", "d0", None))
    h.run(("command", "d1", None))
    assert isinstance(h.log[-1][1][0], CommandFailed)
    for _ in range(MAX_POLLS + 1):  # p2..p10: the ninth live poll ends the oldest (p2)
        h.run(("poll", "h1", "d1", None, 50))
    h.run(("command", "d1", None))
    (sent,) = h.log[-1][1]
    assert isinstance(sent, SendCommand) and sent.record.connection_id == "p3"


def test_a_lost_endpoints_polls_end_also_after_a_rebuild() -> None:
    h = Harness()
    h.run(("poll", "h0", "d1", None, 50))  # p0
    h.run(("poll", "h1", "d1", None, 50))  # p1
    h.run(("rebuild",))
    h.run(("lost", "h0"))
    assert h.log[-1][1] == []
    h.run(("command", "d1", None))
    (sent,) = h.log[-1][1]
    assert isinstance(sent, SendCommand) and sent.endpoint == "h1" and sent.record.connection_id == "p1"


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


def test_endpoint_lost_in_slices_gives_the_effects_of_one_pass() -> None:
    whole, sliced = Harness(), Harness()
    for h in (whole, sliced):
        for i, d in enumerate(DEVICES):
            h.run(("connect", "e0", d, i % 2 == 0))
        h.run(("connect", "e1", "d1", False))  # d1 taken over: e0 holds d0 and d2
        h.run(("poll", "e0", "d1", None, 5))
    whole.run(("lost", "e0"))
    sliced.run(("lost", "e0", 1))
    assert whole.log[-1][1] == sliced.log[-1][1]
    assert whole.sessions == sliced.sessions
    assert sliced.core.end_endpoint("e0", sliced.now) == ([], False)  # nothing left, also no poll
    for h in (whole, sliced):
        h.check_streams()


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
