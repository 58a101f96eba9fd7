"""The Faust app factory: a Faust app built only from Kedge settings, never from Faust's own environment.

Faust reads ``BROKER_URL``, ``STORE_URL``, ``WEB_PORT`` and friends from the environment and lets them win
over constructor arguments; :func:`make_app` passes ``env={}`` so nothing but :class:`FaustConfig` counts.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import faust
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types.auth import CredentialsT

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
    #: how long a fetch may wait for data (Faust's own default is 1500 ms: too slow for request/reply hops)
    fetch_max_wait_ms: int = 5
    standby_replicas: int = 0
    producer_acks: int = -1
    #: no linger: the connect-accept path produces twice in a row (``connected``, then the reply once it is
    #: acked), and a linger is paid on each (5 ms: p50 ~25 ms, 0: ~12 ms); bulk effects are batched explicitly
    producer_linger_s: float = 0.0
    #: aiokafka security options (``security_protocol``, ``ssl_context``, ``sasl_mechanism``,
    #: ``sasl_plain_username``, ``sasl_plain_password``), as ``kedge.kafka.security_options`` builds them for
    #: every other client; they become the app's ``broker_credentials`` (its consumers, producer and topic admin).
    #: Holds the SASL password: kept out of ``repr``
    security: Mapping[str, Any] = field(default_factory=dict, repr=False)


#: aiokafka's fetcher sends no fetch to a broker while fetched records of one of its partitions wait to be
#: taken, for up to its "prefetch backoff" (100 ms, not an option of the consumer). Measured in the worker: the
#: first record of each device-state partition after a start (or a rebalance) reached the agent ~100 ms after it
#: was written (connect-accept outliers of ~110 ms, every other record ~5 ms); with 10 ms they are gone, and the
#: guard against re-fetching unconsumed partitions stays.
PREFETCH_BACKOFF_S = 0.01


class _KedgeConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    """Faust's consumer thread with three corrections for Kedge (all harmless on a real Kafka).

    * Recovery high-waters from Fetch responses (see :mod:`topology.highwater`), when the app asks for it.
    * ``fetch_max_wait_ms`` from the config: Faust hard-codes 1500 ms, which on the embedded broker puts up to
      1.5 s on every hop through an agent (connect-accept p50 ~750 ms instead of ~25 ms).
    * aiokafka's prefetch backoff (:data:`PREFETCH_BACKOFF_S`).
    """

    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        consumer._fetch_max_wait_ms = self._kedge_app.fetch_max_wait_ms  # read when the consumer starts
        start = consumer.start

        async def start_with_short_prefetch_backoff() -> None:
            await start()  # builds the Fetcher
            consumer._fetcher._prefetch_backoff = PREFETCH_BACKOFF_S

        consumer.start = start_with_short_prefetch_backoff
        return consumer

    async def _highwaters(self, partitions: Any) -> Any:
        listed = await super()._highwaters(partitions)
        if not self._kedge_app.fetch_highwater_workaround or self.consumer.in_transaction:
            return listed
        return await fetch_highwaters(self._ensure_consumer()._client, listed)

    @property
    def _kedge_app(self) -> KedgeFaustApp:
        app = self.consumer.app
        assert isinstance(app, KedgeFaustApp)
        return app


class _KedgeConsumer(faust_aiokafka.Consumer):
    def _new_consumer_thread(self) -> faust_aiokafka.AIOKafkaConsumerThread:
        return _KedgeConsumerThread(self, loop=self.loop, beacon=self.beacon)


class _KedgeTransport(faust_aiokafka.Transport):
    Consumer = _KedgeConsumer


class KedgeFaustApp(faust.App):
    """``faust.App`` with Kedge's consumer corrections (see :class:`_KedgeConsumerThread`)."""

    fetch_highwater_workaround: bool = True
    fetch_max_wait_ms: int = 5

    def _new_transport(self) -> Any:
        return _KedgeTransport(self.conf.broker_consumer, self)


def make_app(config: FaustConfig, **extra: Any) -> KedgeFaustApp:
    """A Faust app for Kedge agents: RocksDB (rocksdict) tables, at-least-once, short group timeouts."""
    config.data_dir.mkdir(parents=True, exist_ok=True)
    app = KedgeFaustApp(
        config.app_id,
        env={},
        broker=[f"kafka://{server.strip()}" for server in config.bootstrap_servers.split(",")],
        broker_client_id=config.app_id,
        broker_credentials=broker_credentials(config.security),
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
    app.fetch_max_wait_ms = config.fetch_max_wait_ms
    return app


def broker_credentials(security: Mapping[str, Any]) -> CredentialsT | None:
    """Faust credentials for aiokafka security options; Faust maps them back to exactly those options."""
    protocol = security.get("security_protocol", "PLAINTEXT")
    context = security.get("ssl_context")
    if protocol == "PLAINTEXT":
        return None
    if protocol == "SSL":
        if context is None:
            raise ValueError("security_protocol SSL needs an ssl_context")
        return faust.SSLCredentials(context)
    if protocol not in ("SASL_PLAINTEXT", "SASL_SSL"):
        raise ValueError(f"unsupported security_protocol {protocol!r}")
    if (protocol == "SASL_SSL") != (context is not None):
        raise ValueError(f"security_protocol {protocol} and ssl_context {context!r} disagree")
    return faust.SASLCredentials(username=security.get("sasl_plain_username"),
                                 password=security.get("sasl_plain_password"), ssl_context=context,
                                 mechanism=security.get("sasl_mechanism", "PLAIN"))


#: Table options: pin the rocksdict driver (never python-rocksdb).
ROCKSDB_OPTIONS: dict[str, Any] = {"driver": "rocksdict"}
