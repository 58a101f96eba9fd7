"""The declared topology for these settings."""

from __future__ import annotations

from kedge.settings import Settings
from topology.declare import TopicSpec, declared_topics


def declared(settings: Settings) -> list[TopicSpec]:
    t = settings.topology
    return declared_topics(device_partitions=t.device_partitions, endpoint_partitions=t.endpoint_partitions,
                           replication=t.replication_factor)
