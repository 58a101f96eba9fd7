"""Prometheus metrics of the device endpoints (HTTP, MQTT), served on ``/metrics``.

One :class:`IngressMetrics` per endpoint process, on its own registry (so tests and several apps in one
process never collide). Names:

* ``kedge_downstream_events_total{endpoint,outcome}`` — device events by publish outcome (Drogue's
  ``drogue_downstream_events``): ``accepted``, ``rejected`` (payload, 406), ``queue_full``, ``not_ready``,
  ``unavailable``, ``error``.
* ``kedge_auth_failures_total{endpoint,reason}`` — ``fail``, ``disabled``, ``unavailable``, ``as_refused``,
  ``missing`` (no or malformed credentials), ``rate_limited`` (MQTT per-source connect rate).
* ``kedge_request_duration_seconds{endpoint}`` — request (HTTP) / publish (MQTT) latency histogram.
* ``kedge_connections{endpoint}`` — open device connections (MQTT; unused by HTTP).
"""

from __future__ import annotations

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = ["CONTENT_TYPE_LATEST", "IngressMetrics"]

_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class IngressMetrics:
    """The metrics of one endpoint (``endpoint`` = ``"http"``, ``"mqtt"``); children are bound once."""

    def __init__(self, endpoint: str, registry: CollectorRegistry | None = None) -> None:
        self.endpoint = endpoint
        self.registry = registry if registry is not None else CollectorRegistry()
        self._events = Counter("kedge_downstream_events", "Device events by publish outcome",
                               ["endpoint", "outcome"], registry=self.registry)
        self._auth = Counter("kedge_auth_failures", "Device authentication failures by reason",
                             ["endpoint", "reason"], registry=self.registry)
        self.latency = Histogram("kedge_request_duration_seconds", "Request latency",
                                 ["endpoint"], buckets=_BUCKETS, registry=self.registry).labels(endpoint)
        self.connections = Gauge("kedge_connections", "Open device connections", ["endpoint"],
                                 registry=self.registry).labels(endpoint)
        self._event_children = {
            o: self._events.labels(endpoint, o)
            for o in ("accepted", "rejected", "queue_full", "not_ready", "unavailable", "error")
        }
        self._auth_children = {
            r: self._auth.labels(endpoint, r)
            for r in ("fail", "disabled", "unavailable", "as_refused", "missing")
        }

    def outcome(self, outcome: str) -> None:
        """Count one publish outcome (the :class:`ingress.publish.Publisher` ``on_outcome`` callback)."""
        child = self._event_children.get(outcome)
        if child is None:
            child = self._event_children[outcome] = self._events.labels(self.endpoint, outcome)
        child.inc()

    def auth_failure(self, reason: str) -> None:
        child = self._auth_children.get(reason)
        if child is None:
            child = self._auth_children[reason] = self._auth.labels(self.endpoint, reason)
        child.inc()

    def events(self, outcome: str) -> float:
        """Current count of ``outcome`` (for tests and the benchmark)."""
        return float(self._events.labels(self.endpoint, outcome)._value.get())

    def render(self) -> bytes:
        """The text exposition format of this registry plus the process-wide default one (process and GC
        metrics, and what in-process libraries count there, e.g. the registry's ``kedge_device_auth``)."""
        own = generate_latest(self.registry)
        return own if self.registry is REGISTRY else own + generate_latest(REGISTRY)
