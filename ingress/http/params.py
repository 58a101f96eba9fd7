"""Query parameters of ``POST /v1/{channel}`` (reference §7.1). Pure; no I/O."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qsl

__all__ = ["BadRequest", "PublishParams", "parse_publish_params"]


class BadRequest(ValueError):
    """The request is malformed (HTTP 400 with this message)."""


@dataclass(frozen=True, slots=True)
class PublishParams:
    application: str | None = None
    device: str | None = None
    #: publish on behalf of this device (gateway); ``as`` on the wire
    as_device: str | None = None
    data_schema: str | None = None
    #: ``ct`` / ``commandTimeout``: seconds to wait for a command after the publish (None: do not wait)
    command_timeout_s: int | None = None


_EMPTY = PublishParams()
_NAMES = {"application": "application", "device": "device", "as": "as_device", "data_schema": "data_schema"}


def parse_publish_params(query: bytes, max_command_timeout_s: int) -> PublishParams:
    """Parse the raw query string; unknown parameters are ignored (as Drogue does).

    Raises :class:`BadRequest` for a query that is not UTF-8, a repeated parameter, or a ``ct`` that is not a
    whole number of seconds in ``0..max_command_timeout_s`` (or both ``ct`` and ``commandTimeout``).
    """
    if not query:
        return _EMPTY
    try:
        pairs = parse_qsl(query.decode("ascii"), keep_blank_values=True, encoding="utf-8", errors="strict")
    except (UnicodeDecodeError, ValueError):
        raise BadRequest("the query string is not valid UTF-8") from None
    values: dict[str, str] = {}
    timeout: str | None = None
    for name, value in pairs:
        if name in ("ct", "commandTimeout"):
            if timeout is not None:
                raise BadRequest("give the command timeout once (ct or commandTimeout)")
            timeout = value
            continue
        field = _NAMES.get(name)
        if field is None:
            continue
        if field in values:
            raise BadRequest(f"query parameter {name!r} given more than once")
        values[field] = value
    command_timeout_s = None
    if timeout is not None:
        if not (timeout.isascii() and timeout.isdigit()) or int(timeout) > max_command_timeout_s:
            raise BadRequest(
                f"ct/commandTimeout must be a whole number of seconds from 0 to {max_command_timeout_s}")
        command_timeout_s = int(timeout)
    return PublishParams(command_timeout_s=command_timeout_s, **values)
