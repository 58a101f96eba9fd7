"""TLS of every external listener: the ONE function that builds a server ``SSLContext``.

Used by the HTTP endpoint, the MQTT endpoint (TLS and WebSocket-over-TLS), the API host and the WebSocket
integration. A bad certificate setting is a :class:`TlsSettingsError`: one line naming the setting, no traceback.
"""

from __future__ import annotations

import ssl
from pathlib import Path

from kedge.errors import KedgeError

__all__ = ["TlsSettingsError", "listener_context", "server_context"]


class TlsSettingsError(KedgeError):
    """A listener's TLS settings are incomplete, or a PEM file cannot be read or parsed."""


def server_context(cert: Path, key: Path, client_ca: Path | None = None, *,
                   setting: str = "TLS") -> ssl.SSLContext:
    """A TLS (>= 1.2) server context from PEM files (``cert`` may hold the key too: pass it twice).

    With ``client_ca``, client certificates are requested (optional) and verified against it (a device without
    one logs in with a password). ``setting`` is the settings prefix named in errors, e.g. ``KEDGE_HTTP__TLS``.
    """
    for suffix, path in (("CERT", cert), ("KEY", key), ("CLIENT_CA", client_ca)):
        if path is None:
            continue
        try:
            with open(path, "rb") as f:
                f.read(1)
        except OSError as exc:
            raise TlsSettingsError(f"{setting}_{suffix}={path}: cannot read it ({exc.strerror})") from None
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(str(cert), str(key))
    except (ssl.SSLError, ValueError) as exc:
        raise TlsSettingsError(
            f"{setting}_CERT={cert} / {setting}_KEY={key}: not a PEM certificate chain and its private key "
            f"({_reason(exc)})") from None
    if client_ca is not None:
        try:
            ctx.load_verify_locations(cafile=str(client_ca))
        except (ssl.SSLError, ValueError) as exc:
            raise TlsSettingsError(f"{setting}_CLIENT_CA={client_ca}: not a PEM CA certificate ({_reason(exc)})") \
                from None
        ctx.verify_mode = ssl.CERT_OPTIONAL
    return ctx


def listener_context(cert: Path | None, key: Path | None, client_ca: Path | None = None, *,
                     setting: str) -> ssl.SSLContext | None:
    """The server context of a listener whose TLS is optional: None when neither ``cert`` nor ``key`` is set.

    Only one of them set, or ``client_ca`` without them, is a :class:`TlsSettingsError`.
    """
    if cert is None and key is None:
        if client_ca is not None:
            raise TlsSettingsError(f"{setting}_CLIENT_CA is set but {setting}_CERT and {setting}_KEY are not")
        return None
    if cert is None or key is None:
        given, missing = ("CERT", "KEY") if key is None else ("KEY", "CERT")
        raise TlsSettingsError(f"{setting}_{given} is set but {setting}_{missing} is not (set both, or neither)")
    return server_context(cert, key, client_ca, setting=setting)


def _reason(exc: Exception) -> str:
    reason = getattr(exc, "reason", None) or str(exc) or type(exc).__name__
    return str(reason).replace("\n", " ")
