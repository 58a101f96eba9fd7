"""The WebSocket integration server, `kedge serve ws-integration` (reference §10).

``GET /{app}`` (app URL-encoded), query ``group_id=`` (default: an ``anonymous.<uuid>`` group, so events are
missed across reconnects, as in Drogue), filters ``type=``/``channel=``/``device=`` (see
:mod:`integrations.filters`), and one of the authentication forms of :meth:`integrations.auth.UserAccess.identify`.
The opening handshake is refused with an HTTP answer and a JSON body ``{"error", "message"}``:

* 400 ``BadRequest``: several ways of authentication, or an invalid filter;
* 403 ``AuthenticationError``: wrong credentials;
* 404 ``NotFound``: the app does not exist or the caller may not Read it (no difference, as in Drogue);
* 503 ``ServiceUnavailable``: the user store cannot be asked.

``GET /health`` (no upgrade) answers 200 ``{"status":"ok"}``. Then :class:`~integrations.ws.session.Session`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import uuid
import weakref
from collections.abc import Callable
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import orjson
from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from integrations.auth import AuthError, AuthUnavailable, Caller, UserAccess
from integrations.filters import FilterError, from_query
from integrations.ws.session import Session, SessionSpec
from kedge.settings import IntegrationSettings, KafkaSettings
from kedge.tls import listener_context

log = logging.getLogger("kedge.ws")

__all__ = ["WsIntegration"]


def _json(status: HTTPStatus, error: str, message: str) -> Response:
    body = orjson.dumps({"error": error, "message": message})
    headers = Headers([("Content-Type", "application/json"), ("Content-Length", str(len(body))),
                       ("Connection", "close")])
    return Response(status.value, status.phrase, headers, body)


class WsIntegration:
    """The server: handshake checks in :meth:`handshake`, one :class:`Session` per accepted connection."""

    def __init__(self, access: UserAccess, integration: IntegrationSettings, kafka_settings: KafkaSettings) -> None:
        self.access = access
        self.settings = integration
        self.kafka_settings = kafka_settings
        self._specs: weakref.WeakKeyDictionary[ServerConnection, SessionSpec] = weakref.WeakKeyDictionary()

    async def handshake(self, connection: ServerConnection, request: Request) -> Response | None:
        """Decide about an upgrade request: None accepts it (the spec is kept for :meth:`handle`)."""
        url = urlsplit(request.path)
        if url.path == "/health" and "upgrade" not in request.headers.get("Connection", "").lower():
            return _json_ok()
        segments = url.path.split("/")
        if len(segments) != 2 or not segments[1]:
            return _json(HTTPStatus.NOT_FOUND, "NotFound", "use GET /{application}")
        app = unquote(segments[1])
        params = parse_qsl(url.query, keep_blank_values=True)

        def query(name: str) -> list[str]:
            return [v for k, v in params if k == name]

        try:
            flt = from_query(params)
        except FilterError as e:
            return _json(HTTPStatus.BAD_REQUEST, "BadRequest", str(e))
        authorization = request.headers.get_all("Authorization")
        try:
            caller = await self.access.identify(authorization, query)
            allowed = await self.access.may(app, caller, "Read")
        except AuthError as e:
            kind = "BadRequest" if e.status == 400 else "AuthenticationError"
            return _json(HTTPStatus(e.status), kind, e.message)
        except AuthUnavailable as e:
            return _json(HTTPStatus.SERVICE_UNAVAILABLE, "ServiceUnavailable", str(e))
        if not allowed:
            return _json(HTTPStatus.NOT_FOUND, "NotFound", f"Not found Application / {app}")
        groups = [g for g in query("group_id") if g]
        group = groups[-1] if groups else f"anonymous.{uuid.uuid4()}"
        access = self.access

        async def recheck() -> Caller:
            return await access.identify(authorization, query)

        token_login = not caller.anonymous and caller.exp is None  # an access token: it may be deleted
        self._specs[connection] = SessionSpec(app, caller, group, not groups, flt,
                                              recheck=recheck if token_login else None)
        log.info("ws session for %s (group %s, filter %s)", app, group, flt.describe())
        return None

    async def handle(self, connection: ServerConnection) -> None:
        spec = self._specs.pop(connection, None)
        if spec is None:  # cannot happen: every accepted handshake stored one
            await connection.close(1011, "no session")
            return
        await Session(connection, spec, self.access, self.settings, self.kafka_settings).run()

    async def serve(self, on_ready: Callable[[str, int], None] | None = None,
                    stop: asyncio.Event | None = None) -> None:
        """Listen on ``ws_host:ws_port`` until ``stop`` is set (default: SIGINT/SIGTERM); wss:// only with
        ``ws_tls_cert``/``ws_tls_key`` (a bad TLS setting: :class:`~kedge.tls.TlsSettingsError`)."""
        tls = listener_context(self.settings.ws_tls_cert, self.settings.ws_tls_key,
                               setting="KEDGE_INTEGRATION__WS_TLS")
        stop = stop or _signal_event()
        kwargs: dict[str, Any] = {
            "process_request": self.handshake,
            "ping_interval": self.settings.ws_ping_interval_s,
            "ping_timeout": self.settings.ws_ping_timeout_s,
            "max_size": 64 * 1024,
            "compression": None,
            "ssl": tls,
        }
        async with serve(self.handle, self.settings.ws_host, self.settings.ws_port, **kwargs) as server:
            host, port = next(iter(server.sockets)).getsockname()[:2]
            log.info("ws integration listening on %s://%s:%s", "wss" if tls else "ws", host, port)
            if on_ready is not None:
                on_ready(host, port)
            await stop.wait()
            server.close(close_connections=True)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(server.wait_closed(), 10.0)


def _json_ok() -> Response:
    body = b'{"status":"ok"}'
    headers = Headers([("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return Response(200, "OK", headers, body)


def _signal_event() -> asyncio.Event:
    event = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, event.set)
    return event
