"""Every Kafka topic of DESIGN.md, declared once.

Device-keyed topics share one partition count so that partition *n* of each belongs to the same agent
worker: that worker is the single writer of the state of every device hashed to *n*.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from topology import names

COMPACT = {"cleanup.policy": "compact"}


@dataclass(frozen=True, slots=True)
class TopicSpec:
    """What a topic must look like: name, partitions, replication factor and the configs we set."""

    name: str
    partitions: int
    replication: int
    configs: dict[str, str] = field(default_factory=dict)
    description: str = ""


def declared_topics(*, device_partitions: int, endpoint_partitions: int, replication: int) -> list[TopicSpec]:
    """The internal topics every Kedge installation needs (per-app ``events-<app>`` topics are made per app)."""

    def device_keyed(name: str, description: str) -> TopicSpec:
        return TopicSpec(name, device_partitions, replication, {}, description)

    return [
        device_keyed(names.DEVICE_STATE, "connect/disconnect requests, keyed by device"),
        device_keyed(names.REGISTRY, "registry change records (outbox relay), keyed by device"),
        device_keyed(names.COMMANDS, "commands to devices, keyed by device"),
        TopicSpec(names.ENDPOINT_CONTROL, endpoint_partitions, replication, {},
                  "agent -> endpoint replies, kicks and commands, keyed by endpoint instance"),
        TopicSpec(names.ENDPOINT_HEARTBEATS, endpoint_partitions, replication, dict(COMPACT),
                  "endpoint instance leases, keyed by endpoint instance"),
    ]


def app_topic_spec(app: str, *, partitions: int, replication: int) -> TopicSpec:
    """The declaration of an application's ``events-<app>`` topic."""
    return TopicSpec(names.app_topic(app), partitions, replication, {}, f"events of application {app!r}")
