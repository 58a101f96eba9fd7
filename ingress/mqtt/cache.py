"""A small per-connection LRU cache with a time to live (the ``authorize_as`` results, reference §5:
128 entries, 30 s). Pure: the caller passes the clock."""

from __future__ import annotations

from collections import OrderedDict
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")

__all__ = ["TtlLru"]


class TtlLru(Generic[K, V]):
    """At most ``size`` entries, each valid for ``ttl_s`` after it was stored."""

    __slots__ = ("_data", "size", "ttl_s")

    def __init__(self, size: int, ttl_s: float) -> None:
        self.size = size
        self.ttl_s = ttl_s
        self._data: OrderedDict[K, tuple[float, V]] = OrderedDict()

    def get(self, key: K, now: float) -> V | None:
        item = self._data.get(key)
        if item is None:
            return None
        expires, value = item
        if now >= expires:
            del self._data[key]
            return None
        self._data.move_to_end(key)
        return value

    def put(self, key: K, value: V, now: float) -> None:
        if self.size <= 0:
            return
        self._data[key] = (now + self.ttl_s, value)
        self._data.move_to_end(key)
        while len(self._data) > self.size:
            self._data.popitem(last=False)

    def __len__(self) -> int:
        return len(self._data)
