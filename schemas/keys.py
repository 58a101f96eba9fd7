"""The ONE partition-key function (reference §1.2, §17 row 14.3).

Every device-keyed Kafka record (``events-<app>``, ``device-state``, ``registry``, ``iot-commands``) is keyed by
:func:`device_key`, so all records of one device land on the same partition of every topic. The encoding is
Rust ``percent_encoding::NON_ALPHANUMERIC``: every byte of the UTF-8 encoding except ASCII ``[A-Za-z0-9]``
becomes ``%XX`` (uppercase hex) — including ``-``, ``_``, ``.`` and ``~`` (unlike :func:`urllib.parse.quote`).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Final

__all__ = ["app_key", "device_key", "pct"]

_ALNUM: Final = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")
_TABLE: Final[tuple[str, ...]] = tuple(chr(b) if b in _ALNUM else f"%{b:02X}" for b in range(256))


@lru_cache(maxsize=1 << 16)
def pct(s: str) -> str:
    """Percent-encode ``s`` like Rust ``NON_ALPHANUMERIC``.

    Raises :class:`UnicodeEncodeError` (a :class:`ValueError`) for strings that are not valid Unicode
    (lone surrogates), which a Rust ``&str`` can never hold.
    """
    if s.isascii() and s.isalnum():
        return s
    table = _TABLE
    return "".join([table[b] for b in s.encode("utf-8")])


def device_key(app: str, device: str) -> str:
    """Partition key of a device: ``pct(app)/pct(device)``. For events it is the *sender* (connected device)."""
    return f"{pct(app)}/{pct(device)}"


def app_key(app: str) -> str:
    """Partition key of application-level records (e.g. app changes on the ``registry`` topic)."""
    return pct(app)
