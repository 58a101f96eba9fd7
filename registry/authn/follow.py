"""Keep an endpoint's verification cache fresh: follow the ``registry`` topic and invalidate.

Each endpoint process runs one :class:`registry.authn.authenticator.RegistryAuthenticator`; ``kedge`` builds
a consumer of ``topology.names.REGISTRY`` (no group: every partition, from the latest offset) and runs
:func:`follow_changes` next to it. The cache is cleared when following starts, since changes made before
the consumer's start offset are not seen.
"""

from __future__ import annotations

import logging
from typing import Protocol

from aiokafka import AIOKafkaConsumer
from pydantic import ValidationError

from schemas.registry import RegistryChange

log = logging.getLogger(__name__)


class Invalidates(Protocol):
    def invalidate(self, change: RegistryChange) -> None: ...

    def clear(self) -> None: ...


async def follow_changes(consumer: AIOKafkaConsumer, target: Invalidates) -> None:
    """Run until cancelled; ``consumer`` must be started and subscribed to the registry topic."""
    target.clear()
    async for record in consumer:
        if record.value is None:
            continue
        try:
            change = RegistryChange.model_validate_json(record.value)
        except ValidationError as exc:
            log.warning("ignoring malformed registry change at %s/%s: %s", record.partition, record.offset,
                        exc)
            continue
        target.invalidate(change)
