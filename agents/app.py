"""The Kedge worker's Faust app: tables and agents, registered on an app built by ``topology``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from agents.config import AgentConfig
from topology.faust_app import FaustConfig, KedgeFaustApp, make_app


@dataclass
class WorkerApp:
    """The Faust app plus the handles the agents registered."""

    app: KedgeFaustApp
    parts: dict[str, Any] = field(default_factory=dict)


def create_app(config: FaustConfig, agents: AgentConfig | None = None) -> WorkerApp:
    """Build the worker app with every agent of the device data plane registered."""
    from agents import leases
    from agents.device_state import agent as device_state

    agents = agents or AgentConfig(device_partitions=config.partitions)
    app = make_app(config)
    built = WorkerApp(app)
    built.parts["device_state"] = device_state.register(app, agents)
    built.parts["leases"] = leases.register(app, agents)
    return built
