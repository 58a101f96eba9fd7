"""Which Kafka offsets a subscription may commit: the highest contiguous *done* offset per partition (pure).

A record is *done* once it needs nothing more from the client: filtered out, malformed, sent at QoS 0, or sent
at QoS 1 **and** acknowledged. A QoS 1 record sent but not acknowledged is *in flight*. The committable offset
of a partition is the offset of its first in-flight record, or (none in flight) the offset after the last done
record: so a client that disconnects without PUBACK gets every unacknowledged record again, and no record is
committed that was never examined.

Offsets are generic (any hashable partition id), so the tracker is tested without Kafka.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

__all__ = ["AckTracker"]

P = TypeVar("P", bound=Hashable)


@dataclass
class _Partition:
    #: offset after the last examined record (the position), None until the first record or start
    next: int | None = None
    #: in-flight offsets, in the order sent (ascending)
    inflight: deque[int] = field(default_factory=deque)
    #: in-flight offsets already acknowledged (removed from the head lazily)
    acked: set[int] = field(default_factory=set)
    committed: int | None = None
    #: which start this is: a partition revoked and assigned again is a new generation
    generation: int = 0

    def committable(self) -> int | None:
        while self.inflight and self.inflight[0] in self.acked:
            self.acked.discard(self.inflight.popleft())
        if self.inflight:
            return self.inflight[0]
        return self.next


class AckTracker(Generic[P]):
    """Per partition: what was examined, what is in flight (by packet id), what may be committed."""

    def __init__(self) -> None:
        self._parts: dict[P, _Partition] = {}
        self._pids: dict[int, tuple[P, int]] = {}
        self._generations = 0

    def start(self, partition: P, offset: int, *, committed: bool) -> None:
        """A partition starts at ``offset`` (``committed``: that offset is already the group's commit)."""
        self._generations += 1
        part = self._parts[partition] = _Partition(next=offset, generation=self._generations)
        if committed:
            part.committed = offset

    def generation(self, partition: P) -> int | None:
        """Changes whenever ``partition`` is started again; None while it is not ours. Records fetched in one
        generation are not examined in another (the consumer was moved back to the committed offset)."""
        part = self._parts.get(partition)
        return None if part is None else part.generation

    def expects(self, partition: P, offset: int) -> bool:
        """Whether ``offset`` of ``partition`` is to be examined: the partition is ours (started) and the
        offset is not behind its position (a record fetched before a seek, or examined already)."""
        part = self._parts.get(partition)
        return part is not None and (part.next is None or offset >= part.next)

    def done(self, partition: P, offset: int) -> None:
        """Record ``offset`` examined and finished (filtered, malformed, QoS 0)."""
        part = self._parts.setdefault(partition, _Partition())
        part.next = offset + 1

    def sent(self, partition: P, offset: int, packet_id: int) -> None:
        """Record ``offset`` sent at QoS 1 as ``packet_id``, awaiting its PUBACK."""
        part = self._parts.setdefault(partition, _Partition())
        part.next = offset + 1
        part.inflight.append(offset)
        self._pids[packet_id] = (partition, offset)

    def acked(self, packet_id: int) -> bool:
        """The PUBACK of ``packet_id``; False when it is not ours (any more: e.g. its partition was revoked)."""
        found = self._pids.pop(packet_id, None)
        if found is None:
            return False
        partition, offset = found
        part = self._parts.get(partition)
        if part is None:
            return False
        part.acked.add(offset)
        return True

    @property
    def inflight(self) -> int:
        """QoS 1 records sent and not acknowledged."""
        return len(self._pids)

    def owns(self, packet_id: int) -> bool:
        return packet_id in self._pids

    def committable(self, partitions: Iterable[P] | None = None) -> dict[P, int]:
        """Offsets to commit now (only those that moved since :meth:`committed`)."""
        out: dict[P, int] = {}
        for p in self._parts if partitions is None else partitions:
            part = self._parts.get(p)
            if part is None:
                continue
            offset = part.committable()
            if offset is not None and offset != part.committed:
                out[p] = offset
        return out

    def committed(self, offsets: dict[P, int]) -> None:
        for p, offset in offsets.items():
            part = self._parts.get(p)
            if part is not None:
                part.committed = offset

    def drop(self, partitions: Iterable[P]) -> None:
        """Forget ``partitions`` (revoked): their in-flight packet ids no longer count."""
        gone = set(partitions)
        for p in gone:
            self._parts.pop(p, None)
        for pid in [pid for pid, (p, _) in self._pids.items() if p in gone]:
            del self._pids[pid]
