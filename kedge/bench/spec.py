"""What the parent tells a load process (one JSON line), and what one process reports back."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class LoadSpec(BaseModel):
    """The load of one process: its devices, the target and the traffic shape."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    protocol: str  # "mqtt" | "http"
    scenario: str = "publish"  # "publish" | "idle" | "connect-storm"
    host: str
    port: int
    tls: bool = False
    tls_insecure: bool = False
    tls_ca: str | None = None
    #: MQTT: 4 (3.1.1) or 5; QoS 0/1; topic = channel
    version: int = 4
    qos: int = 0
    channel: str = "telemetry"
    app: str
    password: str
    #: (index, device name) pairs; the index goes into the payload
    devices: list[tuple[int, str]]
    #: messages per second for this process; 0: as fast as the server takes them
    rate: float = 0.0
    payload_size: int = 200
    run_id: str
    #: QoS 1 publishes in flight per connection (<= the server's Receive Maximum)
    inflight: int = Field(16, ge=1, le=65535)
    #: connects per second in the connect phase (and for connect-storm); 0: as fast as possible
    connect_rate: float = 0.0
    #: connects awaiting CONNACK at once
    connect_concurrency: int = 256
    connect_timeout_s: float = 30.0
    keepalive: int = 0
    #: QoS 1 / HTTP: how long to wait for outstanding acknowledgements after the run
    drain_s: float = 10.0
