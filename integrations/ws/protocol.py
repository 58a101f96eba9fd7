"""The client -> server messages and close codes of the WebSocket integration (reference §10). Pure.

The only client message is ``{"RefreshAccessToken": "<jwt>"}`` (serde external tagging), in a text or binary
frame. Anything else is a protocol error: the server closes with 1002 and the reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import orjson

__all__ = [
    "CLOSE_INTERNAL",
    "CLOSE_POLICY",
    "CLOSE_PROTOCOL",
    "EXPIRED",
    "REFRESH_DENIED",
    "REVOKED",
    "ProtocolError",
    "RefreshAccessToken",
    "close_reason",
    "parse_client_message",
]

CLOSE_PROTOCOL: Final = 1002
CLOSE_POLICY: Final = 1008
CLOSE_INTERNAL: Final = 1011

EXPIRED: Final = "JWT token expired"
REFRESH_DENIED: Final = "Failed to refresh token"
#: a session opened with an access token that was deleted, or whose user may no longer read the app
REVOKED: Final = "Access revoked"
#: a close frame's reason is at most 123 bytes of UTF-8 (RFC 6455 §5.5)
_MAX_REASON: Final = 123


class ProtocolError(ValueError):
    """The client sent something that is not a protocol message."""


@dataclass(frozen=True, slots=True)
class RefreshAccessToken:
    token: str


def parse_client_message(data: str | bytes) -> RefreshAccessToken:
    """Parse one client frame; :class:`ProtocolError` with a serde-like message otherwise."""
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError as e:
        raise ProtocolError(f"invalid JSON: {e}") from None
    if not isinstance(doc, dict) or len(doc) != 1:
        raise ProtocolError("expected an object with exactly one key: RefreshAccessToken")
    ((name, value),) = doc.items()
    if name != "RefreshAccessToken":
        raise ProtocolError(f"unknown variant `{name}`, expected `RefreshAccessToken`")
    if not isinstance(value, str):
        raise ProtocolError("RefreshAccessToken: expected a string")
    return RefreshAccessToken(value)


def close_reason(text: str) -> str:
    """``text`` cut to fit a close frame (whole characters, at most 123 bytes of UTF-8)."""
    raw = text.encode()
    if len(raw) <= _MAX_REASON:
        return text
    return raw[:_MAX_REASON].decode(errors="ignore")
