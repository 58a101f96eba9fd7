"""TLS for the MQTT listener: the server context from settings, and the client certificate of a connection."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

__all__ = ["peer_chain", "server_context"]


def server_context(cert: Path, key: Path, client_ca: Path | None = None) -> ssl.SSLContext:
    """A TLS server context; with ``client_ca``, client certificates are requested (optional) and verified
    against it (a device without one logs in with a password)."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(str(cert), str(key))
    if client_ca is not None:
        ctx.load_verify_locations(cafile=str(client_ca))
        ctx.verify_mode = ssl.CERT_OPTIONAL
    return ctx


def peer_chain(transport: asyncio.BaseTransport | None) -> tuple[bytes, ...] | None:
    """The verified client certificate of a TLS connection (leaf only, DER), None without one.

    (Python 3.11 cannot hand out the verified chain; the leaf is what the TLS handshake verified against
    ``client_ca``.)"""
    if transport is None:
        return None
    obj = transport.get_extra_info("ssl_object")
    if obj is None:
        return None
    leaf = obj.getpeercert(binary_form=True)
    return (leaf,) if leaf else None
