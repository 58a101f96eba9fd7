"""The ONE device-event builder (reference §2.1-2.2, §3.1-3.2, §17 row 14.10).

Every event written to ``events-<app>`` is a :class:`DeviceEvent` made here: telemetry by
:func:`build_device_event`, connection events by :func:`connection_event`, registry events by
:func:`registry_event`. Wire encodings live in :mod:`schemas.binding` (Kafka binary mode) and
:mod:`schemas.structured` (structured JSON). This module runs per message: plain slotted dataclasses, orjson.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final, Literal

import orjson

from schemas.attrs import (
    Extensions,
    PayloadRejected,
    _utc,
    format_time,
    new_event_id,
    normalize_payload,
)
from schemas.keys import app_key, device_key, pct
from schemas.types import (
    CONNECTION_TYPE,
    CONTENT_TYPE_JSON,
    EVENT_TYPE,
    EXT_APPLICATION,
    EXT_APPLICATION_UID,
    EXT_CONNECTION_ID,
    EXT_DEVICE,
    EXT_DEVICE_UID,
    EXT_INSTANCE,
    EXT_PARTITION_KEY,
    EXT_SENDER,
    EXT_SENDER_UID,
    EXT_SEQUENCE,
    REGISTRY_TYPE,
    SOURCE_PREFIX,
    SPEC_VERSION,
    SUBJECT_APPLICATIONS,
    SUBJECT_CONNECTION,
    SUBJECT_DEVICES,
)

__all__ = [
    "DeviceEvent",
    "DeviceEventTemplate",
    "Extensions",
    "MalformedEvent",
    "PayloadRejected",
    "build_device_event",
    "connection_event",
    "device_source",
    "format_sequence",
    "format_time",
    "new_event_id",
    "normalize_payload",
    "parse_time",
    "registry_event",
]

RegistryOperation = Literal["created", "updated", "deleted"]

#: Names an extension may never take: CloudEvents context attributes and the structured-mode data members.
RESERVED_NAMES: Final = frozenset(
    {"specversion", "id", "type", "source", "subject", "time", "datacontenttype", "dataschema", "data",
     "data_base64"}
)
_BUILDER_EXTENSIONS: Final = frozenset(
    {EXT_APPLICATION, EXT_APPLICATION_UID, EXT_DEVICE, EXT_DEVICE_UID, EXT_SENDER, EXT_SENDER_UID,
     EXT_PARTITION_KEY, EXT_INSTANCE}
)
_EXTENSION_NAME: Final = re.compile(r"[a-z0-9]+")
_MAX_SEQUENCE: Final = 10**20


class MalformedEvent(ValueError):
    """A record or document is not a valid Kedge CloudEvent (missing/invalid required attribute)."""


@dataclass(frozen=True, slots=True)
class DeviceEvent:
    """A CloudEvents 1.0 event (``specversion`` is always ``1.0``).

    ``time`` is timezone-aware UTC. ``data`` is the raw body (compact JSON when ``datacontenttype`` is
    ``application/json``). ``extensions`` maps extension name to string value and must not be mutated
    (build a new event with :func:`dataclasses.replace`; the builders' :class:`Extensions` refuse it); its
    insertion order is the header order on the wire.
    """

    id: str
    type: str
    source: str
    subject: str | None
    time: datetime
    datacontenttype: str | None
    dataschema: str | None
    data: bytes
    extensions: dict[str, str]

    @property
    def specversion(self) -> str:
        return SPEC_VERSION

    @property
    def partitionkey(self) -> str | None:
        return self.extensions.get(EXT_PARTITION_KEY)

    @property
    def application(self) -> str | None:
        return self.extensions.get(EXT_APPLICATION)

    @property
    def device(self) -> str | None:
        return self.extensions.get(EXT_DEVICE)

    @property
    def sender(self) -> str | None:
        return self.extensions.get(EXT_SENDER)

    @property
    def key(self) -> bytes:
        """Kafka record key: the ``partitionkey`` extension, falling back to the event id (§1.2)."""
        return self.extensions.get(EXT_PARTITION_KEY, self.id).encode()


_SET_FIELDS: Final = tuple(
    DeviceEvent.__dict__[name].__set__
    for name in ("id", "type", "source", "subject", "time", "datacontenttype", "dataschema", "data", "extensions")
)


def _new_event(
    id: str, type_: str, source: str, subject: str | None, time: datetime, datacontenttype: str | None,
    dataschema: str | None, data: bytes, extensions: dict[str, str],
) -> DeviceEvent:
    """``DeviceEvent(...)`` for the per-message path: the same object, built through the slot descriptors (a
    frozen dataclass' ``__init__`` makes one ``object.__setattr__`` call per field, about 3x slower)."""
    event: DeviceEvent = object.__new__(DeviceEvent)
    s_id, s_type, s_source, s_subject, s_time, s_ct, s_schema, s_data, s_ext = _SET_FIELDS
    s_id(event, id)
    s_type(event, type_)
    s_source(event, source)
    s_subject(event, subject)
    s_time(event, time)
    s_ct(event, datacontenttype)
    s_schema(event, dataschema)
    s_data(event, data)
    s_ext(event, extensions)
    return event


# ---------------------------------------------------------------------------------------------- time


def parse_time(s: str) -> datetime:
    """Parse an RFC 3339 timestamp (``Z`` or offset, any fraction length) to an aware UTC datetime."""
    try:
        t = datetime.fromisoformat(s)
    except ValueError:
        raise MalformedEvent(f"invalid time {s!r}") from None
    if t.tzinfo is None:
        raise MalformedEvent(f"time without offset {s!r}")
    return _utc(t)


# ---------------------------------------------------------------------------------------------- builders


def device_source(app: str, device: str | None = None) -> str:
    """``drogue://<app>/<pct(device)>`` — the app is NOT encoded (§17 row 14.3); app-level: ``drogue://<app>``."""
    if device is None:
        return SOURCE_PREFIX + app
    return f"{SOURCE_PREFIX}{app}/{pct(device)}"


def format_sequence(sequence: int) -> str:
    """The ``sequence`` extension: zero-padded to 20 digits so that string order is numeric order."""
    if not 0 <= sequence < _MAX_SEQUENCE:
        raise ValueError(f"sequence out of range: {sequence}")
    return f"{sequence:020d}"


def _device_extensions(
    app: str,
    app_uid: str | None,
    device: str,
    device_uid: str | None,
    sender: str,
    sender_uid: str | None,
    instance: str,
) -> dict[str, str]:
    ext = {EXT_APPLICATION: app}
    if app_uid is not None:
        ext[EXT_APPLICATION_UID] = app_uid
    ext[EXT_DEVICE] = device
    if device_uid is not None:
        ext[EXT_DEVICE_UID] = device_uid
    ext[EXT_SENDER] = sender
    if sender_uid is not None:
        ext[EXT_SENDER_UID] = sender_uid
    ext[EXT_PARTITION_KEY] = device_key(app, sender)
    ext[EXT_INSTANCE] = instance
    return ext


def _add_extra(ext: dict[str, str], extra: Mapping[str, str]) -> None:
    for name, value in extra.items():
        if name in _BUILDER_EXTENSIONS or name in RESERVED_NAMES or not _EXTENSION_NAME.fullmatch(name):
            raise ValueError(f"invalid or reserved extension name {name!r}")
        ext[name] = value


class DeviceEventTemplate:
    """What every device-plane event of one originating device and one sender shares (§2.1): ``source`` and the
    extensions, computed once (per connection and origin, at the MQTT endpoint) instead of once per message.

    :meth:`event` fills in the per-message attributes. Raises ``ValueError`` for an invalid or reserved
    ``extra_extensions`` name. Events share the template's :class:`Extensions` (which cannot be changed).
    """

    __slots__ = ("extensions", "source")

    def __init__(
        self,
        *,
        app: str,
        app_uid: str | None,
        device: str,
        device_uid: str | None,
        sender: str,
        sender_uid: str | None,
        instance: str,
        extra_extensions: Mapping[str, str] | None = None,
    ) -> None:
        ext = _device_extensions(app, app_uid, device, device_uid, sender, sender_uid, instance)
        if extra_extensions:
            _add_extra(ext, extra_extensions)
        self.extensions: Final = Extensions(ext)
        self.source: Final = device_source(app, device)

    def event(
        self,
        channel: str,
        payload: bytes,
        content_type: str | None,
        *,
        data_schema: str | None = None,
        type_: str = EVENT_TYPE,
        id: str | None = None,
        time: datetime | None = None,
    ) -> DeviceEvent:
        """The event of one message on ``channel``; :class:`PayloadRejected` when the payload contradicts a JSON
        content type (§2.2), ``ValueError`` for a naive ``time``. ``id`` defaults to a random UUIDv4, ``time``
        to now."""
        datacontenttype, data = normalize_payload(payload, content_type)
        return _new_event(
            new_event_id() if id is None else id,
            type_,
            self.source,
            channel,
            datetime.now(UTC) if time is None else _utc(time),
            datacontenttype,
            data_schema,
            data,
            self.extensions,
        )


def build_device_event(
    *,
    app: str,
    app_uid: str | None,
    device: str,
    device_uid: str | None,
    sender: str,
    sender_uid: str | None,
    instance: str,
    channel: str,
    payload: bytes,
    content_type: str | None,
    data_schema: str | None = None,
    type_: str = EVENT_TYPE,
    id: str | None = None,
    time: datetime | None = None,
    extra_extensions: Mapping[str, str] | None = None,
) -> DeviceEvent:
    """Build a device-plane event (§2.1): ``device`` originated it, ``sender`` is the connected device/gateway.

    Raises :class:`PayloadRejected` when the payload contradicts a JSON content type, ``ValueError`` for a naive
    ``time`` or an invalid/reserved extra extension name. ``id`` defaults to a random UUIDv4, ``time`` to now.
    A caller that builds many events of the same device keeps a :class:`DeviceEventTemplate` instead.
    """
    template = DeviceEventTemplate(app=app, app_uid=app_uid, device=device, device_uid=device_uid, sender=sender,
                                   sender_uid=sender_uid, instance=instance, extra_extensions=extra_extensions)
    return template.event(channel, payload, content_type, data_schema=data_schema, type_=type_, id=id, time=time)


def connection_event(
    *,
    app: str,
    app_uid: str | None,
    device: str,
    device_uid: str | None,
    instance: str,
    connected: bool,
    connection_id: str,
    sequence: int,
    id: str,
    reason: str | None = None,
    time: datetime | None = None,
) -> DeviceEvent:
    """An ``io.drogue.connection.v1`` event (§3.1): sender = device, data ``{"connected": b, "reason": r}``.

    ``id`` is deterministic (chosen by the caller) so consumers can drop replays; ``sequence`` is the per-device
    counter, rendered by :func:`format_sequence`.
    """
    body: dict[str, object] = {"connected": connected}
    if reason is not None:
        body["reason"] = reason
    ext = _device_extensions(app, app_uid, device, device_uid, device, device_uid, instance)
    ext[EXT_CONNECTION_ID] = connection_id
    ext[EXT_SEQUENCE] = format_sequence(sequence)
    return DeviceEvent(
        id=id,
        type=CONNECTION_TYPE,
        source=device_source(app, device),
        subject=SUBJECT_CONNECTION,
        time=datetime.now(UTC) if time is None else _utc(time),
        datacontenttype=CONTENT_TYPE_JSON,
        dataschema=None,
        data=orjson.dumps(body),
        extensions=ext,
    )


def registry_event(
    *,
    app: str,
    app_uid: str | None,
    instance: str,
    operation: RegistryOperation,
    paths: Sequence[str],
    generation: int,
    resource_version: str,
    uid: str,
    device: str | None = None,
    device_uid: str | None = None,
    id: str | None = None,
    time: datetime | None = None,
) -> DeviceEvent:
    """An ``io.drogue.registry.v1`` event (§3.2 extended by §17 row 14.10).

    With ``device``: subject ``devices``, device = sender = the changed device, keyed by its device key.
    Without: subject ``applications``, source ``drogue://<app>``, keyed by ``pct(app)``, no device extensions.
    Data: ``{"operation","paths","generation","resourceVersion","uid"}`` (``uid`` of the changed resource).
    """
    body = {
        "operation": operation,
        "paths": list(paths),
        "generation": generation,
        "resourceVersion": resource_version,
        "uid": uid,
    }
    if device is not None:
        subject = SUBJECT_DEVICES
        ext = _device_extensions(app, app_uid, device, device_uid, device, device_uid, instance)
    else:
        subject = SUBJECT_APPLICATIONS
        ext = {EXT_APPLICATION: app}
        if app_uid is not None:
            ext[EXT_APPLICATION_UID] = app_uid
        ext[EXT_PARTITION_KEY] = app_key(app)
        ext[EXT_INSTANCE] = instance
    return DeviceEvent(
        id=new_event_id() if id is None else id,
        type=REGISTRY_TYPE,
        source=device_source(app, device),
        subject=subject,
        time=datetime.now(UTC) if time is None else _utc(time),
        datacontenttype=CONTENT_TYPE_JSON,
        dataschema=None,
        data=orjson.dumps(body),
        extensions=ext,
    )
