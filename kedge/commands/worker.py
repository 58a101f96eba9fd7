"""`kedge worker`: the Faust worker running the device-state agents."""

from __future__ import annotations

from typing import TYPE_CHECKING

from kedge.settings import Settings

if TYPE_CHECKING:  # imported where used: Faust alone takes ~0.4 s, and every `kedge` command loads this module
    from agents.config import AgentConfig
    from topology.faust_app import FaustConfig


def faust_config(settings: Settings) -> FaustConfig:
    from kedge.kafka import security_options
    from topology.faust_app import FaustConfig

    w = settings.worker
    return FaustConfig(
        app_id=w.app_id,
        bootstrap_servers=settings.kafka.bootstrap_servers,
        data_dir=settings.data_dir / "worker",
        partitions=settings.topology.device_partitions,
        replication=settings.topology.replication_factor,
        session_timeout_s=w.session_timeout_s,
        heartbeat_interval_s=w.heartbeat_interval_s,
        rebalance_timeout_s=w.rebalance_timeout_s,
        web_enabled=w.web_enabled,
        web_port=w.web_port,
        fetch_highwater_workaround=w.fetch_highwater_workaround,
        fetch_max_wait_ms=w.fetch_max_wait_ms,
        standby_replicas=w.table_standby_replicas,
        security=security_options(settings.kafka),
    )


def agent_config(settings: Settings) -> AgentConfig:
    from agents.config import AgentConfig

    return AgentConfig(
        instance=settings.instance,
        device_partitions=settings.topology.device_partitions,
        endpoint_partitions=settings.topology.endpoint_partitions,
        lease_check_interval_s=settings.lease.check_interval_s,
        lease_s=settings.lease.lease_s,
    )


def worker() -> None:
    """Run the Faust worker (device state, leases, registry events, command routing) until Ctrl-C.

    Run several to split the partitions; RocksDB tables live under KEDGE_DATA_DIR/worker (per worker: give
    each worker on one host its own KEDGE_DATA_DIR). Topics must exist first (`kedge topology apply`).
    """
    from faust import Worker

    from agents.app import create_app
    from kedge.kafka import fail_fast_on_security

    settings = Settings.load()
    fail_fast_on_security(settings.kafka)  # an untrusted broker or a refused login: one line, not a hang
    built = create_app(faust_config(settings), agent_config(settings))
    runner = Worker(built.app, loglevel=settings.log_level, quiet=True)
    # Faust's progress spinner sets the root logger to DEBUG whenever the level is WARN or above, so every
    # debug() call of aiokafka builds a log record (a quarter of the worker's CPU at log level warning)
    runner.spinner = None
    runner.execute_from_commandline()
