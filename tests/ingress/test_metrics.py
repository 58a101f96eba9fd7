"""The endpoint metrics keep plain numbers on the hot path; their exposition must be prometheus_client's."""

from __future__ import annotations

import re

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from ingress.metrics import _BUCKETS, OUTCOMES, IngressMetrics

SAMPLES = (0.0001, 0.0005, 0.0007, 0.003, 0.25, 2.5, 20.0)


def _lines(text: bytes, prefix: str) -> list[str]:
    """The samples of the families starting with ``prefix``, without the ``_created`` timestamps."""
    return sorted(line for line in text.decode().splitlines()
                  if line.startswith(prefix) and not re.match(r"\w+_created", line))


def test_outcomes_and_latency_expose_like_prometheus_client() -> None:
    ours = IngressMetrics("mqtt")
    reference = CollectorRegistry()
    events = Counter("kedge_downstream_events", "Device events by publish outcome", ["endpoint", "outcome"],
                     registry=reference)
    latency = Histogram("kedge_request_duration_seconds", "Request latency", ["endpoint"], buckets=_BUCKETS,
                        registry=reference).labels("mqtt")
    for outcome in OUTCOMES:
        events.labels("mqtt", outcome)
    for outcome in ("accepted", "accepted", "queue_full", "an_outcome_of_tomorrow"):
        ours.outcome(outcome)
        events.labels("mqtt", outcome).inc()
    for seconds in SAMPLES:
        ours.latency.observe(seconds)
        latency.observe(seconds)
    mine, theirs = ours.render(), generate_latest(reference)
    for family in ("kedge_downstream_events", "kedge_request_duration_seconds"):
        assert _lines(mine, family) == _lines(theirs, family)
        assert _lines(mine, family)
    assert 'kedge_downstream_events_total{endpoint="mqtt",outcome="accepted"} 2.0' in mine.decode()
    assert re.search(r'kedge_request_duration_seconds_created\{endpoint="mqtt"\} \d', mine.decode())
    assert (ours.events("accepted"), ours.events("an_outcome_of_tomorrow"), ours.events("error")) == (2, 1, 0)
