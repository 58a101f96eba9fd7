"""Kafka offset helpers for the services (``integrations``, ``ingress`` may use ``kedge`` runtime helpers but
only ``topology.names`` of ``topology``): the true end offsets of :mod:`topology.highwater`."""

from __future__ import annotations

from topology.highwater import end_offsets

__all__ = ["end_offsets"]
