"""One partition of the device-state agent, without Faust: tables in, effects out.

A :class:`PartitionCore` owns the device states of one partition of the device-keyed topics (the single
writer of those devices) and two in-memory indexes over them, rebuilt from the partition's ``sessions``
table when the partition is (re)assigned and maintained as holders change:

* endpoint instance -> {device key: connection id} — so :class:`~schemas.state.EndpointLost` ends exactly
  the devices that instance holds here, without scanning the table;
* application -> {device keys held} — so an application-level registry change reaches every live
  connection of that app in this partition, without scanning the table;
* endpoint instance -> {device keys with a command poll of it} — so :class:`~schemas.state.EndpointLost`
  also ends the polls (HTTP ``ct`` waiters) of a dead endpoint.

The indexes are derived data, so they live in memory and are rebuilt by one scan of the partition's own
RocksDB store (not of the whole table) on (re)assignment: a Faust table has no prefix scan, and a persisted
per-endpoint or per-app value would be rewritten on every connect (O(sessions) per write). The rebuild
costs well under a second per 100k sessions and happens only after a rebalance.

The Faust agent (``agents.device_state.agent``) is a thin shell around it; the property tests drive it
directly with plain dicts as tables.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Iterable
from typing import Protocol
from urllib.parse import unquote

import orjson

from agents.device_state.decide import DeviceRequest, decide, decide_app, end_polls_of
from agents.device_state.model import DeviceState, Effect, Holder, Marks, marks_from_bytes, marks_to_bytes
from schemas.keys import app_key, device_key
from schemas.state import (
    CommandPoll,
    CommandPollEnd,
    CommandRequest,
    ConnectRequest,
    DisconnectRequest,
    EndpointLost,
    Reason,
    RegistryChangeView,
    Scope,
    StateRequest,
)


def split_device_key(key: str) -> tuple[str, str]:
    """``(app, device)`` of a :func:`schemas.keys.device_key` (``/`` is always encoded inside each part)."""
    app, device = key.split("/")
    return unquote(app, errors="strict"), unquote(device, errors="strict")


class Table(Protocol):
    """What the core needs of a table (a Faust table or a dict): key -> bytes."""

    def get(self, key: str) -> bytes | None: ...
    def __setitem__(self, key: str, value: bytes) -> None: ...


class PartitionCore:
    """Apply requests of one partition; ``sessions`` is keyed by device key, ``apps`` by ``app_key(app)``.

    ``existing`` are the ``(device key, state bytes)`` already in this partition's ``sessions`` table.
    """

    def __init__(self, sessions: Table, apps: Table, existing: Iterable[tuple[str, bytes]] = ()) -> None:
        self.sessions = sessions
        self.apps = apps
        self.by_endpoint: dict[str, dict[str, str]] = defaultdict(dict)
        self.by_app: dict[str, set[str]] = defaultdict(set)
        self.polls_by_endpoint: dict[str, set[str]] = defaultdict(set)
        for key, raw in existing:
            try:
                data = orjson.loads(raw)
                holder = data["holder"]
                poll_endpoints = {str(p["endpoint"]) for p in data.get("polls") or ()}
            except (orjson.JSONDecodeError, KeyError, TypeError):
                continue  # a corrupt entry: the record that touches it next is skipped and logged
            if holder is not None:
                self.by_endpoint[holder["endpoint"]][key] = holder["connection_id"]
                self.by_app[holder["app"]].add(key)
            for endpoint in poll_endpoints:
                self.polls_by_endpoint[endpoint].add(key)

    def handle(self, request: StateRequest, now: float) -> list[Effect]:
        """Apply one record of this partition and return the effects to carry out, in order."""
        if isinstance(request, EndpointLost):
            return self.end_endpoint(request.endpoint, now)[0]
        if isinstance(request, RegistryChangeView) and request.scope is Scope.APPLICATION:
            return self._app_change(request, now)
        assert request.device is not None  # device-scoped records always name their device
        # commands and polls live in the state of the delivering connection (the route)
        device = request.route if isinstance(request, CommandRequest | CommandPoll | CommandPollEnd) else request.device
        return self._apply(device_key(request.app, device), request, now)

    def holders(self) -> int:
        """How many devices of this partition are held (for metrics and tests)."""
        return sum(len(d) for d in self.by_endpoint.values())

    # -------------------------------------------------------------------------------------------- internals

    def _apply(self, key: str, request: DeviceRequest, now: float) -> list[Effect]:
        raw = self.sessions.get(key)
        return self._decided(key, DeviceState() if raw is None else DeviceState.from_bytes(raw), request, now)

    def _decided(self, key: str, state: DeviceState, request: DeviceRequest, now: float) -> list[Effect]:
        """``decide`` on the current ``state`` of ``key``; the new state is written and indexed."""
        app_marks: Marks = ()
        if isinstance(request, ConnectRequest):  # only connects consult the app's marks
            marks_raw = self.apps.get(app_key(request.app))
            app_marks = () if marks_raw is None else marks_from_bytes(marks_raw)
        new, effects = decide(state, request, now, app_marks)
        if new is not state:
            self.sessions[key] = new.to_bytes()
            if new.holder != state.holder:
                if state.holder is not None:
                    self._unindex(key, state.holder)
                if new.holder is not None:
                    self._index(key, new.holder)
            if new.polls != state.polls:
                self._index_polls(key, state, new)
        return effects

    def end_endpoint(self, endpoint: str, now: float, limit: int | None = None) -> tuple[list[Effect], bool]:
        """``endpoint``'s lease ended (:class:`~schemas.state.EndpointLost`): end the connections it holds here
        (``reason=endpoint_lost``) and then its polls. With ``limit``, at most that many holders per call, so
        that the shell can send their effects while it works through thousands; then True means "call again"
        (the effects so far are complete and in order either way)."""
        effects: list[Effect] = []
        held = self.by_endpoint.get(endpoint, {})
        for key, connection_id in list(itertools.islice(held.items(), limit)):
            raw = self.sessions.get(key)
            state = DeviceState() if raw is None else DeviceState.from_bytes(raw)
            holder = state.holder  # names the device as the key does, without decoding the key
            app, device = split_device_key(key) if holder is None else (holder.app, holder.device)
            request = DisconnectRequest(app, device, connection_id, endpoint, Reason.ENDPOINT_LOST)
            effects += self._decided(key, state, request, now)  # stale (index ahead of table) -> no effects
            held.pop(key, None)  # (stale entries too; a holder that ended was unindexed already)
        if held:
            return effects, True
        self.by_endpoint.pop(endpoint, None)
        for key in sorted(self.polls_by_endpoint.get(endpoint, ())):  # (spent polls stay until pruned)
            raw = self.sessions.get(key)
            if raw is None:
                continue
            state = DeviceState.from_bytes(raw)
            new = end_polls_of(state, endpoint, now)
            if new is not state:
                self.sessions[key] = new.to_bytes()
                self._index_polls(key, state, new)
        return effects, False

    def _app_change(self, change: RegistryChangeView, now: float) -> list[Effect]:
        akey = app_key(change.app)
        raw = self.apps.get(akey)
        marks = () if raw is None else marks_from_bytes(raw)
        new_marks, block = decide_app(marks, change)
        if new_marks != marks:
            self.apps[akey] = marks_to_bytes(new_marks)
        if block is None:
            return []
        effects: list[Effect] = []
        for key in sorted(self.by_app.get(change.app, ())):
            effects += self._apply(key, change.for_device(split_device_key(key)[1]), now)
        return effects

    def _index_polls(self, key: str, old: DeviceState, new: DeviceState) -> None:
        """Keep ``polls_by_endpoint`` in step with the polls (live or spent) of ``key``."""
        now_in = {p.endpoint for p in new.polls}
        for endpoint in {p.endpoint for p in old.polls} - now_in:
            keys = self.polls_by_endpoint.get(endpoint)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self.polls_by_endpoint[endpoint]
        for endpoint in now_in:
            self.polls_by_endpoint[endpoint].add(key)

    def _index(self, key: str, holder: Holder) -> None:
        self.by_endpoint[holder.endpoint][key] = holder.connection_id
        self.by_app[holder.app].add(key)

    def _unindex(self, key: str, holder: Holder) -> None:
        held = self.by_endpoint.get(holder.endpoint)
        if held is not None:
            held.pop(key, None)
            if not held:
                del self.by_endpoint[holder.endpoint]
        apps = self.by_app.get(holder.app)
        if apps is not None:
            apps.discard(key)
            if not apps:
                del self.by_app[holder.app]
