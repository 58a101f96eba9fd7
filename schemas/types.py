"""CloudEvent type, subject, extension and content-type constants (reference §2, §3, §17)."""

from __future__ import annotations

from typing import Final

SPEC_VERSION: Final = "1.0"

# --- event types visible to applications (events-<app>)
EVENT_TYPE: Final = "io.drogue.event.v1"
CONNECTION_TYPE: Final = "io.drogue.connection.v1"
REGISTRY_TYPE: Final = "io.drogue.registry.v1"

# --- internal registry change events (topic `registry`, §3.3); never visible to applications
REGISTRY_CHANGE_APP: Final = "io.drogue.registry.change.application"
REGISTRY_CHANGE_DEVICE: Final = "io.drogue.registry.change.device"

# --- subjects (the "channel")
SUBJECT_CONNECTION: Final = "connection"
SUBJECT_DEVICES: Final = "devices"
SUBJECT_APPLICATIONS: Final = "applications"

# --- source scheme: drogue://<app>/<pct(device)>
SOURCE_PREFIX: Final = "drogue://"

# --- extension names set by the device-event builder (§2.1)
EXT_APPLICATION: Final = "application"
EXT_APPLICATION_UID: Final = "applicationuid"
EXT_DEVICE: Final = "device"
EXT_DEVICE_UID: Final = "deviceuid"
EXT_SENDER: Final = "sender"
EXT_SENDER_UID: Final = "senderuid"
EXT_PARTITION_KEY: Final = "partitionkey"
EXT_INSTANCE: Final = "instance"
# Kedge connection events (DESIGN.md "Device state")
EXT_CONNECTION_ID: Final = "connectionid"
EXT_SEQUENCE: Final = "sequence"

# --- content types
CONTENT_TYPE_JSON: Final = "application/json"
CONTENT_TYPE_OCTET_STREAM: Final = "application/octet-stream"
CONTENT_TYPE_TEXT: Final = "text/plain"
CONTENT_TYPE_CLOUDEVENTS_JSON: Final = "application/cloudevents+json"

# --- registry event operations (§17 row 14.10)
OPERATION_CREATED: Final = "created"
OPERATION_UPDATED: Final = "updated"
OPERATION_DELETED: Final = "deleted"


def is_json_content_type(content_type: str) -> bool:
    """Drogue's JSON test (case-sensitive, as in Rust): ``application/json*``, ``text/json*`` or ``*+json``."""
    return (
        content_type.startswith("application/json")
        or content_type.startswith("text/json")
        or content_type.endswith("+json")
    )
