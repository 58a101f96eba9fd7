"""A CloudEvent as an MQTT PUBLISH to an application (reference §2.3), pure.

* structured (default; always on MQTT 3.1.1): payload = the JSON CloudEvent (:func:`schemas.structured.to_structured`);
  MQTT 5: content type ``application/cloudevents+json; charset=utf-8``, payload format indicator 1 (UTF-8);
* binary (MQTT 5 only): payload = the data; content type = ``datacontenttype``; every other attribute
  (``specversion``, ``id``, ``type``, ``source``, ``subject``, ``time``, ``dataschema``) and every extension is
  a user property ``(name, value)``.

A subscription identifier given at SUBSCRIBE is carried by every message of the subscription (MQTT 5).
"""

from __future__ import annotations

from protocols.mqtt import PublishProperties
from schemas.events import DeviceEvent, format_time
from schemas.structured import STRUCTURED_CONTENT_TYPE, to_structured
from schemas.types import SPEC_VERSION

__all__ = ["binary", "structured"]

_EMPTY = PublishProperties()


def structured(event: DeviceEvent, *, v5: bool, subscription_id: int | None = None) -> tuple[bytes, PublishProperties]:
    """Payload and properties of a structured-mode message."""
    if not v5:
        return to_structured(event), _EMPTY
    ids = (subscription_id,) if subscription_id is not None else ()
    props = PublishProperties(payload_format_indicator=1, content_type=STRUCTURED_CONTENT_TYPE,
                              subscription_identifiers=ids)
    return to_structured(event), props


def binary(event: DeviceEvent, *, subscription_id: int | None = None) -> tuple[bytes, PublishProperties]:
    """Payload and properties of a binary-mode message (MQTT 5)."""
    user: list[tuple[str, str]] = [("specversion", SPEC_VERSION), ("id", event.id), ("type", event.type),
                                   ("source", event.source)]
    if event.subject is not None:
        user.append(("subject", event.subject))
    user.append(("time", format_time(event.time, z=True)))
    if event.dataschema is not None:
        user.append(("dataschema", event.dataschema))
    user.extend(event.extensions.items())
    ids = (subscription_id,) if subscription_id is not None else ()
    props = PublishProperties(content_type=event.datacontenttype, user_properties=tuple(user),
                              subscription_identifiers=ids)
    return event.data, props
