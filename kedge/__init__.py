"""Kedge: an IoT device data plane (entry points and shared runtime)."""

__version__ = "0.1.0"
