"""Topic names: the internal topics and the ONE per-application topic-name function.

The registry, the endpoints and the integrations may import this module (and only this one of ``topology``).
"""

from __future__ import annotations

import hashlib
import re
from functools import lru_cache
from typing import Final

__all__ = [
    "COMMANDS",
    "DEVICE_STATE",
    "ENDPOINT_CONTROL",
    "ENDPOINT_HEARTBEATS",
    "REGISTRY",
    "app_topic",
]

#: connect/disconnect requests to the device-state agent, keyed by device key
DEVICE_STATE: Final = "device-state"
#: internal registry change records (outbox relay), keyed by device key (app-level: ``pct(app)``)
REGISTRY: Final = "registry"
#: commands to devices, keyed by device key (Drogue's name, reference §1.1)
COMMANDS: Final = "iot-commands"
#: agent -> endpoint instance: replies, kicks, command deliveries; keyed by endpoint instance id
ENDPOINT_CONTROL: Final = "endpoint-control"
#: endpoint instance leases, keyed by endpoint instance id (compacted)
ENDPOINT_HEARTBEATS: Final = "endpoint-heartbeats"

_MAX_LEN: Final = 63
# Drogue's NAME_REGEXP as it was meant (a DNS-1123 subdomain): Drogue's raw string has `\\.` ("backslash, any
# character"), so every app name with a `.` fell through to the hashed name. Kedge fixes that (§17, 14.2).
_NAME: Final = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_NOT_TOPIC_CHAR: Final = re.compile(r"[^-a-z0-9]")


@lru_cache(maxsize=4096)
def app_topic(app: str) -> str:
    """The ``events-<app>`` topic of an application (reference §1.1 with the §17 fix for ``.``).

    ``events-<app>`` when that is shorter than 63 characters and ``app`` is a DNS-1123 subdomain; otherwise
    ``evt-<md5(app)>-<app>``, lowercased, every character outside ``[-a-z0-9]`` replaced by ``-``, cut to 63
    characters and stripped of trailing ``-``. Two distinct apps never share a topic.
    """
    direct = "events-" + app
    if len(direct) < _MAX_LEN and _NAME.fullmatch(app):
        return direct
    hashed = f"evt-{hashlib.md5(app.encode()).hexdigest()}-{app}".lower()
    return _NOT_TOPIC_CHAR.sub("-", hashed)[:_MAX_LEN].rstrip("-")
