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

import time
from bisect import bisect_left
from collections.abc import Iterator

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.metrics_core import CounterMetricFamily, HistogramMetricFamily, Metric

__all__ = ["CONTENT_TYPE_LATEST", "IngressMetrics"]

OUTCOMES = ("accepted", "rejected", "queue_full", "not_ready", "unavailable", "error")
_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class IngressMetrics:
    """The metrics of one endpoint (``endpoint`` = ``"http"``, ``"mqtt"``); children are bound once."""

    def __init__(self, endpoint: str, registry: CollectorRegistry | None = None) -> None:
        self.endpoint = endpoint
        self.registry = registry if registry is not None else CollectorRegistry()
        self._events = _OutcomeCounter(endpoint)
        self.registry.register(self._events)
        self._auth = Counter("kedge_auth_failures", "Device authentication failures by reason",
                             ["endpoint", "reason"], registry=self.registry)
        self.latency = _Latency(endpoint)
        self.registry.register(self.latency)
        self.connections = Gauge("kedge_connections", "Open device connections", ["endpoint"],
                                 registry=self.registry).labels(endpoint)
        self._auth_children = {
            r: self._auth.labels(endpoint, r)
            for r in ("fail", "disabled", "unavailable", "as_refused", "missing")
        }

    def outcome(self, outcome: str) -> None:
        """Count one publish outcome (the :class:`ingress.publish.Publisher` ``on_outcome`` callback)."""
        counts = self._events.counts
        if outcome in counts:
            counts[outcome] += 1
        else:
            self._events.add(outcome)

    def auth_failure(self, reason: str) -> None:
        child = self._auth_children.get(reason)
        if child is None:
            child = self._auth_children[reason] = self._auth.labels(self.endpoint, reason)
        child.inc()

    def events(self, outcome: str) -> float:
        """Current count of ``outcome`` (for tests and the benchmark)."""
        return float(self._events.counts.get(outcome, 0))

    def render(self) -> bytes:
        """The text exposition format of this registry plus the process-wide default one (process and GC
        metrics, and what in-process libraries count there, e.g. the registry's ``kedge_device_auth``)."""
        own = generate_latest(self.registry)
        return own if self.registry is REGISTRY else own + generate_latest(REGISTRY)


class _OutcomeCounter:
    """``kedge_downstream_events_total{endpoint,outcome}`` kept as plain integers and exposed by ``collect``.

    It is counted once per device event: a ``prometheus_client`` counter child takes a lock and checks its
    state on every ``inc``, a measurable share of the per-message CPU. The exposition is the same as the
    counter's (``_total`` and ``_created`` samples, every known outcome from the start). Event-loop use only.
    """

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        now = time.time()
        self.counts: dict[str, int] = dict.fromkeys(OUTCOMES, 0)
        self.created: dict[str, float] = dict.fromkeys(OUTCOMES, now)

    def add(self, outcome: str) -> None:
        """Count the first event of an outcome not in :data:`OUTCOMES`."""
        self.created.setdefault(outcome, time.time())
        self.counts[outcome] = self.counts.get(outcome, 0) + 1

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily("kedge_downstream_events", "Device events by publish outcome",
                                     labels=["endpoint", "outcome"])
        for outcome, count in list(self.counts.items()):
            family.add_metric([self.endpoint, outcome], float(count), created=self.created[outcome])
        yield family


#: the ``le`` labels of _BUCKETS as prometheus_client writes them (``floatToGoString``)
_BUCKET_LABELS = (*(repr(b) for b in _BUCKETS), "+Inf")


class _Latency:
    """``kedge_request_duration_seconds{endpoint}``: a histogram observed once per publish (MQTT QoS 1, HTTP),
    kept as plain numbers like :class:`_OutcomeCounter` (a ``prometheus_client`` histogram takes a lock and
    walks its buckets in Python per observation). Same exposition as the library's histogram."""

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self.created = time.time()
        #: per bucket of _BUCKETS, then +Inf: observations that fell into it (not cumulative)
        self.counts = [0] * (len(_BUCKETS) + 1)
        self.sum = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect_left(_BUCKETS, seconds)] += 1
        self.sum += seconds

    def collect(self) -> Iterator[Metric]:
        family = HistogramMetricFamily("kedge_request_duration_seconds", "Request latency", labels=["endpoint"])
        cumulative, buckets = 0, []
        for bound, count in zip(_BUCKET_LABELS, self.counts, strict=True):
            cumulative += count
            buckets.append((bound, float(cumulative)))
        family.add_metric([self.endpoint], buckets, self.sum)
        family.add_sample("kedge_request_duration_seconds_created", {"endpoint": self.endpoint}, self.created)
        yield family
