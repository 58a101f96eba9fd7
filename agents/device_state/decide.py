"""The pure core of the device-state agent: ``decide(state, request, now) -> (state, effects)``.

Invariants (DESIGN.md "Device state: the invariants"), per device:

* last connect wins: a connect while another connection holds the device records the new holder and, in
  this one step, emits the old holder's Will (takeover is an abnormal end, reference §4.4), then
  ``disconnected(old, taken_over)``, then ``connected(new)``, and kicks the old connection;
* ``connected``/``disconnected`` strictly alternate and each pair shares a ``connectionid``;
* ``sequence`` strictly increases over all connection events of the device (the Will takes none);
* a disconnect whose ``connection_id`` is not the holder's is stale and changes nothing (it only remembers
  the id, so that a connect of that id arriving later is refused);
* a connect of an ended connection (replaced, disconnected, refused) is refused with ``superseded``: a
  replay never resurrects a connection;
* the Will precedes ``connected:false`` on every end except a normal disconnect with ``skip_will``;
* event ids are deterministic (``<connectionid>:connected|disconnected|will``), and a replayed request changes
  nothing: a replay of the holder's own connect answers "accepted" again and re-emits the same ``connected``
  event (same id and sequence), covering a crash between the table write and the event's ack;
* a registry change that deletes/disables the device (or its application) ends the holder with that reason
  and refuses later connects of that incarnation (``uid``) while blocked; changes of one uid apply in
  ``revision`` order (0 = unknown, always applies).

Command routing (DESIGN.md: routed to the holder, never broadcast; offline answered with a failure):

* a command goes to the connection holding its route (the device, or the ``sender`` gateway) if there is one:
  the holder has priority over every poll;
* else to the oldest *live* poll (HTTP ``ct`` waiter, :class:`~schemas.state.CommandPoll`) of the route whose
  ``device`` is the command's device (a gateway's poll on behalf of a device answers commands for that
  device only). The poll is consumed: one command answers one poll, as a ``DeliverCommand`` with
  ``connection_id = poll_id``;
* else ``CommandOutcome(delivered=False, "device offline")`` to the requester.

Polls are not connections: registering or ending one emits nothing (no connection events, no kick, no reply)
and never touches the holder. At most :data:`~agents.device_state.model.MAX_POLLS` are live per route (a new
one ends the oldest live one); a poll is live until its ``until`` (the agent's ``now``), its
:class:`~schemas.state.CommandPollEnd`, or its command. Spent polls are remembered until their ``until``
(dropped lazily; at most :data:`~agents.device_state.model.POLL_MEMORY` per route), so a replayed poll is not
revived and a replayed command is re-sent to the poll it already consumed instead of consuming another one
(replays span the records since the last commit, seconds; a replay after the poll's ``until`` is routed like
a new command).

When an endpoint's lease ends, :func:`end_polls_of` ends its polls (the shell finds them by an index), so a
command is not routed to a request that died with its process.

Application-level changes are ordered per partition by :func:`decide_app`; the shell then calls
:func:`decide` for each device of the app it holds, with the change narrowed to that device.
"""

from __future__ import annotations

import dataclasses

from agents.device_state.model import (
    ENDED_MEMORY,
    MARK_MEMORY,
    MAX_POLLS,
    POLL_MEMORY,
    CommandFailed,
    DeviceState,
    Effect,
    EmitConnection,
    EmitEvent,
    Holder,
    Marks,
    Poll,
    RegistryMark,
    SendCommand,
    SendKick,
    SendReply,
    event_id,
)
from schemas.state import (
    DEVICE_OFFLINE,
    CommandOutcome,
    CommandPoll,
    CommandPollEnd,
    CommandRequest,
    ConnectRequest,
    DeliverCommand,
    DisconnectRequest,
    Kick,
    Operation,
    Reason,
    RegistryChangeView,
    Reply,
    Scope,
)

DeviceRequest = (
    ConnectRequest | DisconnectRequest | RegistryChangeView | CommandRequest | CommandPoll | CommandPollEnd
)

#: disconnect reasons that come from the watcher rather than the endpoint itself: the endpoint may still be
#: alive (a stalled process), so it is told to close the connection too.
_KICK_ON_DISCONNECT = frozenset({Reason.ENDPOINT_LOST})


def decide(
    state: DeviceState, request: DeviceRequest, now: float, app_marks: Marks = ()
) -> tuple[DeviceState, list[Effect]]:
    """Apply one request to one device's state. ``app_marks`` are the device's application marks
    (from :func:`decide_app`), consulted by connects. Returns ``state`` itself when nothing changed."""
    if isinstance(request, ConnectRequest):
        return _connect(state, request, now, app_marks)
    if isinstance(request, DisconnectRequest):
        return _disconnect(state, request, now)
    if isinstance(request, CommandRequest):
        return _command(state, request, now)
    if isinstance(request, CommandPoll):
        return _poll(state, request, now), []
    if isinstance(request, CommandPollEnd):
        return _poll_end(state, request, now), []
    return _registry(state, request, now)


def end_polls_of(state: DeviceState, endpoint: str, now: float) -> DeviceState:
    """``endpoint`` is lost (its lease ended): its polls end, as if each had sent its
    :class:`~schemas.state.CommandPollEnd` (no effects: the requests are gone with the process)."""
    polls = tuple(
        dataclasses.replace(p, ended=True) if p.endpoint == endpoint and p.live(now) else p
        for p in _prune(state.polls, now)
    )
    return _with_polls(state, polls)


def decide_app(marks: Marks, change: RegistryChangeView) -> tuple[Marks, Reason | None]:
    """Record an application-level change; return the new marks and the reason to end the app's live
    connections with (None: the change is stale, or it does not block)."""
    block = _app_block(change, marks)
    new, applied = apply_mark(marks, change.uid, change.revision, block)
    return new, (block if applied else None)


# ------------------------------------------------------------------------------------------------ marks


def apply_mark(marks: Marks, uid: str, revision: int, block: Reason | None) -> tuple[Marks, bool]:
    """Record ``(uid, revision, block)`` unless a newer revision of ``uid`` is known."""
    for i, m in enumerate(marks):
        if m.uid == uid:
            if revision and m.revision and revision <= m.revision:
                return marks, False
            rest = marks[:i] + marks[i + 1 :]
            return (*rest, RegistryMark(uid, revision, block))[-MARK_MEMORY:], True
    return (*marks, RegistryMark(uid, revision, block))[-MARK_MEMORY:], True


def blocked(marks: Marks, uid: str) -> Reason | None:
    """The block on incarnation ``uid`` (an empty ``uid`` means "the newest one")."""
    if not marks:
        return None
    if not uid:
        return marks[-1].block
    for m in marks:
        if m.uid == uid:
            return m.block
    return None


def _previous_block(marks: Marks, uid: str) -> Reason | None:
    return next((m.block for m in marks if m.uid == uid), None)


def _device_block(change: RegistryChangeView, marks: Marks) -> Reason | None:
    if change.operation is Operation.DELETED:
        return Reason.APP_DELETED if change.cascade else Reason.DEVICE_DELETED
    if change.disabled is None:
        return _previous_block(marks, change.uid)
    return Reason.DEVICE_DISABLED if change.disabled else None


def _app_block(change: RegistryChangeView, marks: Marks) -> Reason | None:
    if change.operation is Operation.DELETED:
        return Reason.APP_DELETED
    if change.disabled is None:
        return _previous_block(marks, change.uid)
    return Reason.APP_DISABLED if change.disabled else None


# --------------------------------------------------------------------------------------------- requests


def _connect(
    state: DeviceState, req: ConnectRequest, now: float, app_marks: Marks
) -> tuple[DeviceState, list[Effect]]:
    holder = state.holder
    if holder is not None and holder.connection_id == req.connection_id:
        # replay of the holder's own connect: same answer, same event (same id and sequence)
        return state, [_connected(holder, holder.sequence, now), _reply(req, True, None)]
    if req.connection_id in state.ended:
        return state, [_reply(req, False, Reason.SUPERSEDED)]
    block = blocked(state.marks, req.device_uid) or blocked(app_marks, req.app_uid)
    if block is not None:
        return _remember(state, req.connection_id), [_reply(req, False, block)]
    effects: list[Effect] = []
    sequence = state.sequence
    ended = state.ended
    if holder is not None:
        sequence += 1
        effects += _end_effects(holder, Reason.TAKEN_OVER, sequence, now, will=True, kick=True)
        ended = _push(ended, holder.connection_id)
    sequence += 1
    new = Holder(
        app=req.app,
        device=req.device,
        connection_id=req.connection_id,
        endpoint=req.endpoint,
        protocol=req.protocol,
        app_uid=req.app_uid,
        device_uid=req.device_uid,
        since=now,
        sequence=sequence,
        will=req.will,
    )
    effects += [_connected(new, sequence, now), _reply(req, True, None)]
    return dataclasses.replace(state, holder=new, sequence=sequence, ended=ended), effects


def _disconnect(state: DeviceState, req: DisconnectRequest, now: float) -> tuple[DeviceState, list[Effect]]:
    holder = state.holder
    if holder is None or holder.connection_id != req.connection_id:
        return _remember(state, req.connection_id), []
    will = not (req.skip_will and req.reason is Reason.NORMAL)
    return _end(state, holder, req.reason, now, will=will, kick=req.reason in _KICK_ON_DISCONNECT)


def _command(state: DeviceState, req: CommandRequest, now: float) -> tuple[DeviceState, list[Effect]]:
    holder = state.holder
    if holder is not None:
        return state, [SendCommand(holder.endpoint, _deliver(req, holder.connection_id))]
    polls = _prune(state.polls, now)
    target = next((p for p in polls if p.command_id == req.request_id), None)  # a replay: the same poll
    if target is None:
        target = next((p for p in polls if p.device == req.device and p.live(now)), None)
        if target is not None:
            polls = tuple(dataclasses.replace(p, command_id=req.request_id) if p is target else p for p in polls)
    new = _with_polls(state, polls)
    if target is None:
        outcome = CommandOutcome(req.request_id, delivered=False, reason=DEVICE_OFFLINE)
        return new, [CommandFailed(req.reply_to, outcome)] if req.reply_to else []
    return new, [SendCommand(target.endpoint, _deliver(req, target.poll_id))]


def _deliver(req: CommandRequest, connection_id: str) -> DeliverCommand:
    return DeliverCommand(
        app=req.app,
        device=req.device,
        connection_id=connection_id,
        command=req.command,
        payload=req.payload,
        content_type=req.content_type,
        request_id=req.request_id,
        reply_to=req.reply_to,
    )


def _poll(state: DeviceState, req: CommandPoll, now: float) -> DeviceState:
    polls = _prune(state.polls, now)
    if req.until <= now or any(p.poll_id == req.poll_id for p in polls):
        return _with_polls(state, polls)  # expired on arrival, or a replay (also of a spent poll)
    live = [p for p in polls if p.live(now)]
    if len(live) >= MAX_POLLS:
        oldest = live[0]
        polls = tuple(dataclasses.replace(p, ended=True) if p is oldest else p for p in polls)
    polls = (*polls, Poll(req.poll_id, req.device, req.endpoint, req.until))
    while len(polls) > POLL_MEMORY:  # forget the oldest spent poll (live ones are at most MAX_POLLS)
        spent = next(i for i, p in enumerate(polls) if not p.live(now))
        polls = polls[:spent] + polls[spent + 1 :]
    return _with_polls(state, polls)


def _poll_end(state: DeviceState, req: CommandPollEnd, now: float) -> DeviceState:
    polls = tuple(
        dataclasses.replace(p, ended=True) if p.poll_id == req.poll_id and p.live(now) else p
        for p in _prune(state.polls, now)
    )
    return _with_polls(state, polls)


def _prune(polls: tuple[Poll, ...], now: float) -> tuple[Poll, ...]:
    """Drop the polls past their ``until`` (live or spent): nothing can reach or revive them any more."""
    if all(now < p.until for p in polls):
        return polls
    return tuple(p for p in polls if now < p.until)


def _with_polls(state: DeviceState, polls: tuple[Poll, ...]) -> DeviceState:
    return state if polls == state.polls else dataclasses.replace(state, polls=polls)


def _registry(state: DeviceState, change: RegistryChangeView, now: float) -> tuple[DeviceState, list[Effect]]:
    holder = state.holder
    if change.scope is Scope.APPLICATION:
        # ordering and marks were handled per partition by decide_app; here only the live connection
        block = _app_block(change, ())
        if holder is None or block is None or not _same(holder.app_uid, change.uid):
            return state, []
        return _end(state, holder, block, now, will=True, kick=True)
    block = _device_block(change, state.marks)
    marks, applied = apply_mark(state.marks, change.uid, change.revision, block)
    if not applied:
        return state, []
    new = dataclasses.replace(state, marks=marks)
    if holder is None or block is None or not _same(holder.device_uid, change.uid):
        return new, []
    return _end(new, holder, block, now, will=True, kick=True)


# -------------------------------------------------------------------------------------------- helpers


def _same(held_uid: str, change_uid: str) -> bool:
    return not held_uid or not change_uid or held_uid == change_uid


def _push(ended: tuple[str, ...], connection_id: str) -> tuple[str, ...]:
    if connection_id in ended:
        return ended
    return (*ended, connection_id)[-ENDED_MEMORY:]


def _remember(state: DeviceState, connection_id: str) -> DeviceState:
    if connection_id in state.ended or (state.holder and state.holder.connection_id == connection_id):
        return state
    return dataclasses.replace(state, ended=_push(state.ended, connection_id))


def _end(
    state: DeviceState, holder: Holder, reason: Reason, now: float, *, will: bool, kick: bool
) -> tuple[DeviceState, list[Effect]]:
    sequence = state.sequence + 1
    effects = _end_effects(holder, reason, sequence, now, will=will, kick=kick)
    new = DeviceState(holder=None, sequence=sequence, ended=_push(state.ended, holder.connection_id),
                      marks=state.marks, polls=state.polls)  # (dataclasses.replace: 3x the cost, per release)
    return new, effects


def _end_effects(
    holder: Holder, reason: Reason, sequence: int, now: float, *, will: bool, kick: bool
) -> list[Effect]:
    effects: list[Effect] = []
    if kick:
        # first: the kick has no ordering constraint and its latency is the takeover latency
        effects.append(SendKick(holder.endpoint, Kick(holder.app, holder.device, holder.connection_id, reason)))
    if will and holder.will is not None:
        w = holder.will
        effects.append(EmitEvent(
            app=holder.app, device=holder.device, app_uid=holder.app_uid, device_uid=holder.device_uid,
            channel=w.channel, payload=w.payload, content_type=w.content_type,
            event_id=event_id(holder.connection_id, "will"), time=now,
        ))
    effects.append(EmitConnection(
        app=holder.app, device=holder.device, app_uid=holder.app_uid, device_uid=holder.device_uid,
        connected=False, connection_id=holder.connection_id, reason=reason, sequence=sequence,
        event_id=event_id(holder.connection_id, "disconnected"), time=now,
    ))
    return effects


def _connected(holder: Holder, sequence: int, now: float) -> EmitConnection:
    return EmitConnection(
        app=holder.app, device=holder.device, app_uid=holder.app_uid, device_uid=holder.device_uid,
        connected=True, connection_id=holder.connection_id, reason=None, sequence=sequence,
        event_id=event_id(holder.connection_id, "connected"), time=now,
    )


def _reply(req: ConnectRequest, accepted: bool, reason: Reason | None) -> SendReply:
    return SendReply(req.endpoint, Reply(req.request_id, req.connection_id, accepted, reason))
