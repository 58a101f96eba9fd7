"""TLS for the MQTT listener: the client certificate of a connection. (The server context is built by the
one shared :func:`kedge.tls.server_context`, re-exported here.)"""

from __future__ import annotations

import asyncio

from kedge.tls import server_context

__all__ = ["peer_chain", "server_context"]


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
