"""Run the HTTP endpoint with uvicorn (uvloop + httptools) until SIGTERM/SIGINT.

The listening socket is bound before uvicorn starts, so port 0 works and the real address is known. On
SIGTERM uvicorn stops accepting, finishes the requests in flight (those waiting for a command with ``ct`` are
answered 202 at once), then the lifespan shutdown flushes and closes the producer: an accepted (202) event is
never dropped by a clean stop.

With ``tls_cert``/``tls_key`` the listener speaks HTTPS only; with ``tls_client_ca`` it also asks for (optional)
client certificates and hands the verified one to the app as the ASGI TLS extension, where it is a device
credential like on the MQTT endpoint.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import signal
import socket
import ssl
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from types import FrameType

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from ingress.http.app import HttpEndpoint, Resources
from ingress.metrics import IngressMetrics
from kedge.settings import Settings
from kedge.tls import listener_context

__all__ = ["bind", "build_app", "run", "tls_context"]


def tls_context(settings: Settings) -> ssl.SSLContext | None:
    """The HTTPS context of the endpoint, None for plain HTTP (:class:`~kedge.tls.TlsSettingsError` if bad)."""
    h = settings.http
    return listener_context(h.tls_cert, h.tls_key, h.tls_client_ca, setting="KEDGE_HTTP__TLS")


def bind(host: str, port: int, *, reuse_port: bool = False) -> socket.socket:
    """A listening TCP socket on ``host:port`` (``port`` 0: a free one).

    With ``reuse_port`` several processes can listen on the same port (``SO_REUSEPORT``): the way to scale the
    endpoint over cores is to run more `kedge serve http` processes, each with its own producer.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise OSError(e.errno, f"cannot listen on {host}:{port}: {e.strerror}") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def build_app(
    settings: Settings,
    metrics: IngressMetrics,
    resources: Callable[[], AbstractAsyncContextManager[Resources]],
    on_ready: Callable[[], None] | None = None,
) -> HttpEndpoint:
    def ready() -> None:
        # Everything loaded by now (libraries, settings, the registry's models) lives as long as the process:
        # keep it out of the cyclic GC's generations so collections only walk per-request garbage.
        gc.freeze()
        if on_ready is not None:
            on_ready()

    return HttpEndpoint(
        instance=settings.instance,
        max_payload_bytes=settings.http.max_payload_bytes,
        max_command_timeout_s=settings.http.max_command_timeout_s,
        metrics=metrics,
        resources=resources,
        on_ready=ready,
    )


class _Server(uvicorn.Server):
    """SIGTERM is the normal way to stop an endpoint: after the graceful shutdown the process exits 0.

    (uvicorn re-raises a captured signal after shutting down, which would make the exit status -15.)
    """

    def __init__(self, config: uvicorn.Config, on_exit: Callable[[], None] | None = None) -> None:
        super().__init__(config)
        self._on_exit = on_exit

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        super().handle_exit(sig, frame)
        if self._on_exit is not None:
            self._on_exit()
        if sig == signal.SIGTERM:
            with contextlib.suppress(AttributeError, ValueError):
                self._captured_signals.remove(sig)


class _TlsHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol plus the ASGI TLS extension (``scope["extensions"]["tls"]``) on TLS
    connections, carrying the client certificate the handshake verified (PEM, leaf only: Python 3.11 cannot
    hand out the verified chain)."""

    _tls: dict[object, object] | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        obj = transport.get_extra_info("ssl_object")
        if obj is not None:
            leaf = obj.getpeercert(binary_form=True)
            self._tls = {"server_cert": None, "client_cert_chain": [ssl.DER_cert_to_PEM_cert(leaf)] if leaf else [],
                         "client_cert_name": None, "client_cert_error": None, "tls_version": None,
                         "cipher_suite": None}

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._tls is not None:
            self.scope["extensions"] = {"tls": self._tls}


def run(app: HttpEndpoint, sock: socket.socket, *, log_level: str = "info", access_log: bool = False,
        ssl_context: ssl.SSLContext | None = None) -> None:
    """Serve ``app`` on ``sock`` in this thread until a stop signal (uvicorn installs the handlers); with
    ``ssl_context`` (:func:`tls_context`) HTTPS only."""
    config = uvicorn.Config(
        app, loop="uvloop", http=_TlsHttpToolsProtocol if ssl_context else "httptools", ws="none",
        lifespan="on", interface="asgi3", log_level=log_level, access_log=access_log, proxy_headers=False,
        server_header=False, timeout_graceful_shutdown=10,
        ssl_context_factory=None if ssl_context is None else (lambda _config, _default: ssl_context),
    )
    _Server(config, on_exit=app.shutdown_requested).run(sockets=[sock])
