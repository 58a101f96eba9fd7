"""Pure bookkeeping of a run: delivered sequence numbers per device (loss and duplicates), latency
percentiles, and per-second buckets for the timeline."""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field


def percentiles(values: Sequence[float]) -> dict[str, float | None]:
    """p50/p90/p99/max of ``values`` (None for each when there are none)."""
    if not values:
        return {"p50": None, "p90": None, "p99": None, "max": None}
    ordered = sorted(values)
    n = len(ordered)

    def at(q: float) -> float:
        return ordered[min(n - 1, int(q * n))]

    return {"p50": at(0.50), "p90": at(0.90), "p99": at(0.99), "max": ordered[-1]}


class DeliveryTracker:
    """Which ``(device, seq)`` pairs arrived, and how many arrived more than once."""

    def __init__(self) -> None:
        self._seen: dict[int, bytearray] = {}
        self.delivered = 0
        self.duplicates = 0

    def add(self, device: int, seq: int) -> bool:
        """Record one arrival; False if it is a duplicate."""
        bits = self._seen.get(device)
        if bits is None:
            bits = self._seen[device] = bytearray(max(64, seq + 1))
        elif seq >= len(bits):
            bits.extend(bytes(max(seq + 1 - len(bits), len(bits))))
        if bits[seq]:
            self.duplicates += 1
            return False
        bits[seq] = 1
        self.delivered += 1
        return True

    def seen(self, device: int, seq: int) -> bool:
        bits = self._seen.get(device)
        return bits is not None and seq < len(bits) and bits[seq] == 1

    def missing(self, confirmed: Mapping[int, tuple[int, Iterable[int]]]) -> int:
        """How many confirmed messages never arrived. ``confirmed`` maps a device to (messages sent, the
        sequence numbers among them that were *not* confirmed by the server)."""
        lost = 0
        for device, (sent, unconfirmed) in confirmed.items():
            skip = set(unconfirmed)
            bits = self._seen.get(device, bytearray())
            arrived = sum(1 for s in range(min(sent, len(bits))) if bits[s] and s not in skip)
            lost += sent - len(skip) - arrived
        return lost

    def unexpected(self, confirmed: Mapping[int, tuple[int, Iterable[int]]]) -> int:
        """Arrivals of sequence numbers that were never sent (a corrupted or foreign payload)."""
        extra = 0
        for device, bits in self._seen.items():
            sent = confirmed.get(device, (0, ()))[0]
            extra += sum(bits[sent:])
        return extra


@dataclass
class Bucket:
    sent: int = 0
    confirmed: int = 0
    delivered: int = 0
    latencies_ms: array[float] = field(default_factory=lambda: array("d"))


class Timeline:
    """Per-second buckets from ``t0`` (a ``time.time()`` value)."""

    def __init__(self, t0: float) -> None:
        self.t0 = t0
        self.buckets: dict[int, Bucket] = {}

    def bucket(self, at: float) -> Bucket:
        second = max(0, int(at - self.t0))
        b = self.buckets.get(second)
        if b is None:
            b = self.buckets[second] = Bucket()
        return b

    def rows(self) -> list[dict[str, object]]:
        out: list[dict[str, object]] = []
        for second in range(max(self.buckets, default=-1) + 1):
            b = self.buckets.get(second, Bucket())
            p = percentiles(b.latencies_ms)
            out.append({"second": second, "sent": b.sent, "confirmed": b.confirmed, "delivered": b.delivered,
                        "p50_ms": _r(p["p50"]), "p99_ms": _r(p["p99"])})
        return out


def _r(value: float | None) -> float | None:
    return None if value is None else round(value, 3)
