"""Compare declared topics with a cluster and create what is missing.

Never call ``describe_topics`` for a topic that does not exist: Tansu (like Kafka with
``auto.create.topics.enable``) creates it with its default partition count. List first.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from topology.declare import TopicSpec

TOPIC_ALREADY_EXISTS = 36


class TopologyMismatch(Exception):
    """An existing topic disagrees with its declaration."""


class Status(StrEnum):
    OK = "ok"
    MISSING = "missing"
    CREATED = "created"
    MISMATCH = "mismatch"


@dataclass(frozen=True, slots=True)
class TopicState:
    """A declared topic next to what the cluster has."""

    spec: TopicSpec
    status: Status
    actual_partitions: int | None = None
    actual_configs: dict[str, str] | None = None
    problem: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.spec.name,
            "status": self.status.value,
            "declared": {"partitions": self.spec.partitions, "replication": self.spec.replication,
                         "configs": self.spec.configs},
            "actual": None if self.actual_partitions is None
            else {"partitions": self.actual_partitions, "configs": self.actual_configs or {}},
            "problem": self.problem,
            "description": self.spec.description,
        }


async def inspect(admin: AIOKafkaAdminClient, specs: list[TopicSpec]) -> list[TopicState]:
    """Where each declared topic stands on the cluster (read-only)."""
    existing = set(await admin.list_topics())
    present = [s for s in specs if s.name in existing]
    partitions: dict[str, int] = {}
    if present:
        for topic in await admin.describe_topics([s.name for s in present]):
            partitions[topic["topic"]] = len(topic["partitions"])
    configs = await _describe_configs(admin, [s.name for s in present])
    states = []
    for spec in specs:
        if spec.name not in existing:
            states.append(TopicState(spec, Status.MISSING))
            continue
        actual_configs = configs.get(spec.name, {})
        problems = []
        if partitions.get(spec.name) != spec.partitions:
            problems.append(f"has {partitions.get(spec.name)} partitions, declared {spec.partitions}")
        for key, want in spec.configs.items():
            if key in actual_configs and actual_configs[key] != want:
                problems.append(f"{key}={actual_configs[key]}, declared {want}")
        status = Status.MISMATCH if problems else Status.OK
        states.append(TopicState(spec, status, partitions.get(spec.name), actual_configs, "; ".join(problems)))
    return states


async def apply(admin: AIOKafkaAdminClient, specs: list[TopicSpec]) -> list[TopicState]:
    """Create missing topics; idempotent. Raises :class:`TopologyMismatch` if an existing topic disagrees."""
    states = await inspect(admin, specs)
    mismatched = [s for s in states if s.status is Status.MISMATCH]
    if mismatched:
        raise TopologyMismatch("; ".join(f"topic {s.spec.name!r} {s.problem}" for s in mismatched))
    missing = [s.spec for s in states if s.status is Status.MISSING]
    created: set[str] = set()
    if missing:
        response = await admin.create_topics(
            [NewTopic(s.name, s.partitions, s.replication, topic_configs=dict(s.configs)) for s in missing]
        )
        for topic, code, message in _topic_errors(response):
            if code == 0:
                created.add(topic)
            elif code != TOPIC_ALREADY_EXISTS:  # a concurrent apply won the race: fine
                raise TopologyMismatch(f"cannot create topic {topic!r}: error {code} {message or ''}".strip())
        if created:
            states = await inspect(admin, specs)  # verify what the cluster made
            mismatched = [s for s in states if s.status is Status.MISMATCH]
            if mismatched:
                raise TopologyMismatch("; ".join(f"topic {s.spec.name!r} {s.problem}" for s in mismatched))
    return [TopicState(s.spec, Status.CREATED, s.actual_partitions, s.actual_configs)
            if s.spec.name in created else s for s in states]


async def delete(admin: AIOKafkaAdminClient, names: list[str]) -> None:
    """Delete topics that exist (missing ones are ignored)."""
    existing = set(await admin.list_topics())
    doomed = [n for n in names if n in existing]
    if doomed:
        await admin.delete_topics(doomed)


def _topic_errors(response: Any) -> list[tuple[str, int, str | None]]:
    out = []
    for entry in response.topic_errors:
        topic, code = entry[0], entry[1]
        message = entry[2] if len(entry) > 2 else None
        out.append((topic, code, message))
    return out


async def _describe_configs(admin: AIOKafkaAdminClient, topics: list[str]) -> dict[str, dict[str, str]]:
    if not topics:
        return {}
    result: dict[str, dict[str, str]] = {}
    responses = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, t) for t in topics])
    for response in responses:
        for resource in response.resources:
            error_code, _msg, _type, name, entries = resource[:5]
            if error_code == 0:
                result[name] = {e[0]: e[1] for e in entries if e[1] is not None}
    return result
