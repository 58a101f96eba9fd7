"""Prometheus metrics of the registry (default registry; the API host serves ``/metrics``)."""

from __future__ import annotations

from prometheus_client import Counter

OUTBOX_SENT = Counter("kedge_registry_outbox_sent", "Registry change records acknowledged by Kafka")
OUTBOX_FAILURES = Counter("kedge_registry_outbox_failures", "Failed outbox relay rounds (retried)")
DEVICE_AUTH = Counter("kedge_device_auth", "Device authentications answered", ["outcome", "cached"])
