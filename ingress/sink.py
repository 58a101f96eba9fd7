"""What a device endpoint publishes through (:class:`EventSink`) and the publish errors, mapped to protocol
codes at each endpoint's edge (see :mod:`ingress.publish`, whose :class:`~ingress.publish.Publisher` is the real
sink and which re-exports these names)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from schemas.events import DeviceEvent

__all__ = ["Done", "EventSink", "PublishError", "PublishUnavailable", "QueueFull", "TopicNotReady"]


class PublishError(Exception):
    """Base of every publish failure."""


class QueueFull(PublishError):
    """Too many events are waiting for their Kafka ack in this process; the device should retry later."""


class PublishUnavailable(PublishError):
    """Kafka cannot take the event now (not connected, timed out, topic missing, broker error)."""


class TopicNotReady(PublishUnavailable):
    """The application's topic is not ready (its ``KafkaReady`` condition is false, reference §1.1)."""


#: the callback of :meth:`Publisher.publish_then`: None once Kafka acknowledged the event, else why not
Done = Callable[[BaseException | None], None]


class EventSink(Protocol):
    """What an endpoint needs to publish device events; :class:`Publisher` is the real one."""

    @property
    def connected(self) -> bool: ...

    async def publish(self, event: DeviceEvent, *, topic_ready: bool = True) -> None: ...

    def publish_nowait(self, event: DeviceEvent, *, topic_ready: bool = True) -> None: ...

    def publish_then(self, event: DeviceEvent, done: Done, *, topic_ready: bool = True) -> None:
        """:meth:`publish` without a task: raise admission errors at once, later call ``done`` exactly once."""
        ...

    @property
    def saturated(self) -> bool:
        """Too many events await their ack: a caller that can should stop reading until :meth:`wait_room`."""
        ...

    async def wait_room(self) -> None:
        """Return once the backlog is down to half of its limit."""
        ...
