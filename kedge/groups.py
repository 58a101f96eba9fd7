"""Consumer-group helpers for the integrations' per-client consumers.

:func:`stop_consumer` leaves the group explicitly. aiokafka sends LeaveGroup on stop only when the group
generation is > 0, but the embedded broker (Tansu) numbers the first generation 0, so the first member of a
group never left: the next member (an application reconnecting with the same ``group_id``) then waited a full
session timeout. Harmless on a real Kafka (its generations start at 1, and aiokafka leaves by itself).
"""

from __future__ import annotations

import contextlib
import logging

from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaError
from aiokafka.protocol.group import LeaveGroupRequest

log = logging.getLogger(__name__)

__all__ = ["stop_consumer"]


async def stop_consumer(consumer: AIOKafkaConsumer) -> None:
    """Leave the consumer's group (also at generation 0) and stop the consumer."""
    coordinator = getattr(consumer, "_coordinator", None)
    generation = getattr(coordinator, "generation", None)
    member_id = getattr(coordinator, "member_id", "")
    if coordinator is not None and generation == 0 and member_id:
        with contextlib.suppress(KafkaError, OSError, AttributeError):
            await coordinator._send_req(LeaveGroupRequest(coordinator.group_id, member_id))
            log.debug("left group %s (generation 0)", coordinator.group_id)
    await consumer.stop()
