"""The Faust app factory: a Faust app built only from Kedge settings, never from Faust's own environment.

Faust reads ``BROKER_URL``, ``STORE_URL``, ``WEB_PORT`` and friends from the environment and lets them win
over constructor arguments; :func:`make_app` passes ``env={}`` so nothing but :class:`FaustConfig` counts.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faust
from faust.transport.drivers import aiokafka as faust_aiokafka

from topology.highwater import fetch_highwaters


@dataclass(frozen=True, slots=True)
class FaustConfig:
    """Everything the Faust app needs; built by ``kedge`` from its settings."""

    app_id: str
    bootstrap_servers: str
    data_dir: Path
    partitions: int
    replication: int = 1
    session_timeout_s: float = 6.0
    heartbeat_interval_s: float = 1.0
    rebalance_timeout_s: float = 6.0
    web_enabled: bool = False
    web_port: int = 6066
    fetch_highwater_workaround: bool = True
    standby_replicas: int = 0
    producer_acks: int = -1
    producer_linger_s: float = 0.005


class _HighwaterConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    """Recovery high-waters from Fetch responses (see :mod:`topology.highwater`)."""

    async def _highwaters(self, partitions: Any) -> Any:
        listed = await super()._highwaters(partitions)
        if self.consumer.in_transaction:
            return listed
        return await fetch_highwaters(self._ensure_consumer()._client, listed)


class _HighwaterConsumer(faust_aiokafka.Consumer):
    def _new_consumer_thread(self) -> faust_aiokafka.AIOKafkaConsumerThread:
        return _HighwaterConsumerThread(self, loop=self.loop, beacon=self.beacon)


class _HighwaterTransport(faust_aiokafka.Transport):
    Consumer = _HighwaterConsumer


class KedgeFaustApp(faust.App):
    """``faust.App`` whose consumer takes table-recovery high-waters from Fetch responses."""

    fetch_highwater_workaround: bool = True

    def _new_transport(self) -> Any:
        if not self.fetch_highwater_workaround:
            return super()._new_transport()
        return _HighwaterTransport(self.conf.broker_consumer, self)


def make_app(config: FaustConfig, **extra: Any) -> KedgeFaustApp:
    """A Faust app for Kedge agents: RocksDB (rocksdict) tables, at-least-once, short group timeouts."""
    config.data_dir.mkdir(parents=True, exist_ok=True)
    app = KedgeFaustApp(
        config.app_id,
        env={},
        broker=[f"kafka://{server.strip()}" for server in config.bootstrap_servers.split(",")],
        broker_client_id=config.app_id,
        store="rocksdb://",
        datadir=str(config.data_dir),
        processing_guarantee="at_least_once",
        topic_partitions=config.partitions,
        topic_replication_factor=config.replication,
        topic_allow_declare=True,
        table_standby_replicas=config.standby_replicas,
        broker_session_timeout=config.session_timeout_s,
        broker_heartbeat_interval=config.heartbeat_interval_s,
        broker_rebalance_timeout=config.rebalance_timeout_s,
        consumer_auto_offset_reset="earliest",
        producer_acks=config.producer_acks,
        producer_linger=config.producer_linger_s,
        web_enabled=config.web_enabled,
        web_port=config.web_port,
        web_host="127.0.0.1",
        **extra,
    )
    app.fetch_highwater_workaround = config.fetch_highwater_workaround
    return app


#: Table options: pin the rocksdict driver (never python-rocksdb).
ROCKSDB_OPTIONS: dict[str, Any] = {"driver": "rocksdict"}
