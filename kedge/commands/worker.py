"""`kedge worker`: the Faust worker running the device-state agents."""

from __future__ import annotations

from kedge.settings import Settings
from topology.faust_app import FaustConfig


def faust_config(settings: Settings) -> FaustConfig:
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
        standby_replicas=w.table_standby_replicas,
    )


def worker() -> None:
    """Run the Faust worker (device state, leases, registry events, command routing) until Ctrl-C.

    Run several to split the partitions; RocksDB tables live under KEDGE_DATA_DIR/worker.
    """
    from faust import Worker

    from agents.app import create_app

    settings = Settings.load()
    built = create_app(faust_config(settings))
    Worker(built.app, loglevel=settings.log_level, quiet=True).execute_from_commandline()
