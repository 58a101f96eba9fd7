"""What the agents need besides the Faust app itself; built by ``kedge worker`` from the settings."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class AgentConfig:
    """``instance``: the CloudEvents ``instance`` extension of events the agents emit (Drogue's INSTANCE).

    ``device_partitions`` and ``endpoint_partitions`` must equal the partition counts the topics were
    created with (``kedge topology apply`` uses the same settings).
    """

    instance: str = "drogue"
    device_partitions: int = 4
    endpoint_partitions: int = 1
    lease_check_interval_s: float = 1.0
    #: the endpoints' lease length; also how long a heartbeat partition may make no progress before it is
    #: reported as stalled (and the bound on sending one expiry marker)
    lease_s: float = 6.0
