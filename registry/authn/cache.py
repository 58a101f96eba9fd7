"""The verification cache: a reconnect storm must not re-run bcrypt for every connect.

Keyed by a BLAKE2b digest of (app, device, credential kind, username, secret) as presented, so secrets are
never kept in memory in clear. Bounded in size (LRU) and age (TTL). Only positive verifications (PASS, and
DISABLED which also needs the right secret) are cached; each entry is indexed by the *resolved* device name
and by the name it was *presented* with (an alias), so a registry change of either device, or of the
application, drops it (:meth:`invalidate`): also a new device taking a name that used to resolve by alias.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from schemas.auth import AuthResult


def cache_key(app: str, device: str, kind: str, username: str, secret: str) -> bytes:
    h = hashlib.blake2b(digest_size=32, person=b"kedge-authn")
    for part in (app, device, kind, username, secret):
        data = part.encode("utf-8", "surrogatepass")
        h.update(len(data).to_bytes(4, "big"))
        h.update(data)
    return h.digest()


@dataclass(frozen=True, slots=True)
class _Entry:
    result: AuthResult
    app: str
    devices: frozenset[str]
    expires: float


class VerificationCache:
    """LRU + TTL cache of successful verifications, invalidated per resolved device or application."""

    def __init__(self, max_size: int, ttl_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_size = max_size
        self.ttl_s = ttl_s
        self._clock = clock
        self._entries: OrderedDict[bytes, _Entry] = OrderedDict()
        self._by_device: dict[tuple[str, str], set[bytes]] = {}
        self._by_app: dict[str, set[bytes]] = {}
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: bytes) -> AuthResult | None:
        entry = self._entries.get(key)
        if entry is None or entry.expires <= self._clock():
            if entry is not None:
                self._drop(key)
            self.misses += 1
            return None
        self._entries.move_to_end(key)
        self.hits += 1
        return entry.result

    def put(self, key: bytes, result: AuthResult, app: str, device: str, presented: str | None = None) -> None:
        """Cache ``result`` for ``key``; ``device`` is the resolved name, ``presented`` the one used."""
        if self.max_size <= 0 or self.ttl_s <= 0:
            return
        if key in self._entries:
            self._drop(key)
        devices = frozenset({device} if presented is None else {device, presented})
        self._entries[key] = _Entry(result, app, devices, self._clock() + self.ttl_s)
        for name in devices:
            self._by_device.setdefault((app, name), set()).add(key)
        self._by_app.setdefault(app, set()).add(key)
        while len(self._entries) > self.max_size:
            self._drop(next(iter(self._entries)))

    def invalidate(self, app: str, device: str | None = None) -> int:
        """Drop the entries of one device (``device`` given) or of a whole application. Returns how many."""
        index = self._by_app.get(app) if device is None else self._by_device.get((app, device))
        keys = set(index or ())
        for key in keys:
            self._drop(key)
        return len(keys)

    def clear(self) -> None:
        self._entries.clear()
        self._by_device.clear()
        self._by_app.clear()

    def _drop(self, key: bytes) -> None:
        entry = self._entries.pop(key, None)
        if entry is None:
            return
        for name in entry.devices:
            bucket = self._by_device.get((entry.app, name))
            if bucket is not None:
                bucket.discard(key)
                if not bucket:
                    del self._by_device[(entry.app, name)]
        keys = self._by_app.get(entry.app)
        if keys is not None:
            keys.discard(key)
            if not keys:
                del self._by_app[entry.app]
