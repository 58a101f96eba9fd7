"""Per-source connect rate limit of the MQTT endpoint: one token bucket per source address (pure; the caller
passes the clock).

Each CONNECT takes one token of its source's bucket; a bucket holds at most ``burst`` tokens and refills at
``rate`` tokens per second. An empty bucket refuses the connect (MQTT 5 CONNACK 0x9F "Connection rate
exceeded", 3.1.1 return code 3). Memory is bounded: at most ``max_sources`` buckets are kept; full buckets are
forgotten first (they are the same as a fresh one), then the least recently used.
"""

from __future__ import annotations

from collections import OrderedDict

__all__ = ["ConnectRateLimiter"]


class ConnectRateLimiter:
    """Token buckets by source; ``rate`` None (or 0) disables the limit."""

    def __init__(self, rate: float | None, burst: int, max_sources: int = 65536) -> None:
        if burst < 1:
            raise ValueError("burst must be at least 1")
        self.rate = rate or None
        self.burst = float(burst)
        self.max_sources = max_sources
        #: source -> (tokens, at); most recently used last
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def allow(self, source: str, now: float) -> bool:
        """Take one token of ``source``'s bucket at time ``now``; False when it is empty."""
        if self.rate is None:
            return True
        tokens, at = self._buckets.pop(source, (self.burst, now))
        tokens = min(self.burst, tokens + max(0.0, now - at) * self.rate)
        allowed = tokens >= 1.0
        if allowed:
            tokens -= 1.0
        self._buckets[source] = (tokens, now)
        if len(self._buckets) > self.max_sources:
            self._evict(now)
        return allowed

    def _evict(self, now: float) -> None:
        assert self.rate is not None
        full = [s for s, (t, at) in self._buckets.items() if t + (now - at) * self.rate >= self.burst]
        for source in full:
            del self._buckets[source]
        while len(self._buckets) > self.max_sources:
            self._buckets.popitem(last=False)

    def __len__(self) -> int:
        return len(self._buckets)
