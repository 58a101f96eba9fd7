"""The HTTP device endpoint as a plain ASGI application (reference §7.1).

A hand-written ASGI app instead of FastAPI: three routes, the body read in chunks against the payload limit,
and no per-request framework machinery (request/response objects, dependency injection) on the hot path. Run
it with uvicorn on uvloop + httptools (:mod:`ingress.http.server`).

Routes: ``POST /v1/{channel}`` and ``POST /v1/{channel}/{suffix...}`` (suffix ignored, §17 row 14.4);
``GET /`` -> ``{"success":true}``; ``GET /metrics`` (Prometheus).

Status codes (mapped here, the edge, and nowhere else):

* 202, empty: published (Kafka acked); with ``ct``/``commandTimeout`` > 0, no command came within that time.
* 200 + header ``command: <name>`` + the raw command payload (``Content-Type`` of the command, if it had one):
  published, and a command for (app, sender, device) arrived within ``ct`` seconds
  (:mod:`ingress.http.commands`; the wait starts only after the publish was acknowledged).
* 400 ``{"error":"BadRequest","message":…}``: bad query (``ct`` not an integer, repeated parameter).
* 403 ``{"code":403,"error":"AuthenticationError","message":"Authentication failed"}``: no, malformed or wrong
  credentials, disabled app or device, ``as`` refused (one answer for all: no enumeration).
* 406, empty: JSON content type but the body is not JSON.
* 413 ``{"error":"PayloadTooLarge",…}``: body over ``http.max_payload_bytes`` (Content-Length, or read).
* 503 ``{"error":"ServiceUnavailable",…}`` + ``Retry-After``: registry unavailable, too many in flight, Kafka
  unavailable, topic not ready (Drogue: 500 for the last; Kedge: transient, so 503).
* 500 ``{"error":"InternalError","message":"Internal server error"}``: anything else (logged, no traceback).

The authenticator (with its cache), the publisher and the command waits are created once, at startup (ASGI
lifespan), by the ``resources`` factory; tests may pass them ready-made instead. Without command waits
(``Resources.commands`` None) a request with ``ct`` is answered 202 at once.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Awaitable, Callable, MutableMapping
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

import orjson

from ingress.http.commands import CommandWaits
from ingress.http.login import http_login
from ingress.http.params import BadRequest, parse_publish_params
from ingress.metrics import CONTENT_TYPE_LATEST, IngressMetrics
from ingress.publish import EventSink, PublishUnavailable, QueueFull
from schemas.auth import AuthUnavailable, DeviceAuthenticator
from schemas.events import PayloadRejected, build_device_event
from schemas.state import DeliverCommand

__all__ = ["HttpEndpoint", "Resources"]

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Resources:
    """What the endpoint needs, built once per process."""

    authenticator: DeviceAuthenticator
    sink: EventSink
    #: commands to requests waiting with ``ct`` (None: such requests are answered at once)
    commands: CommandWaits | None = None


class _TooLarge(Exception):
    pass


class _ClientGone(Exception):
    pass


@dataclass(frozen=True, slots=True)
class _Response:
    status: int
    body: bytes = b""
    content_type: bytes | None = b"application/json"
    retry_after: bool = False
    #: the command this response carries (200 with the ``command`` header); reported delivered once sent
    command: DeliverCommand | None = None


def _error(status: int, error: str, message: str, *, retry_after: bool = False) -> _Response:
    return _Response(status, orjson.dumps({"error": error, "message": message}), retry_after=retry_after)


ACCEPTED = _Response(202, content_type=None)
FORBIDDEN = _Response(403, b'{"code":403,"error":"AuthenticationError","message":"Authentication failed"}')
NOT_ACCEPTABLE = _Response(406, content_type=None)
SUCCESS = _Response(200, b'{"success":true}')
NOT_FOUND = _error(404, "NotFound", "Not found")
NOT_ALLOWED = _error(405, "MethodNotAllowed", "Method not allowed")
INTERNAL = _error(500, "InternalError", "Internal server error")
NO_REGISTRY = _error(503, "ServiceUnavailable", "The device registry is unavailable", retry_after=True)
STARTING = _error(503, "ServiceUnavailable", "The endpoint is starting", retry_after=True)


class HttpEndpoint:
    """The ASGI application. ``resources`` is entered at lifespan startup and left at shutdown."""

    def __init__(
        self,
        *,
        instance: str,
        max_payload_bytes: int,
        max_command_timeout_s: int,
        metrics: IngressMetrics,
        resources: Callable[[], AbstractAsyncContextManager[Resources]] | None = None,
        ready: Resources | None = None,
        on_ready: Callable[[], None] | None = None,
    ) -> None:
        self.instance = instance
        self.max_payload_bytes = max_payload_bytes
        self.max_command_timeout_s = max_command_timeout_s
        self.metrics = metrics
        self._resources = resources
        self._on_ready = on_ready
        self.authenticator: DeviceAuthenticator | None = ready.authenticator if ready else None
        self.sink: EventSink | None = ready.sink if ready else None
        self.commands: CommandWaits | None = ready.commands if ready else None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    # ------------------------------------------------------------------------------------------ lifespan

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        stack = AsyncExitStack()
        await receive()  # lifespan.startup
        try:
            if self._resources is not None:
                res = await stack.enter_async_context(self._resources())
                self.authenticator, self.sink, self.commands = res.authenticator, res.sink, res.commands
            self._loop = asyncio.get_running_loop()
        except Exception as exc:
            log.exception("http endpoint failed to start")
            await stack.aclose()
            await send({"type": "lifespan.startup.failed", "message": repr(exc)})
            return
        await send({"type": "lifespan.startup.complete"})
        if self._on_ready is not None:
            self._on_ready()
        await receive()  # lifespan.shutdown
        try:
            await stack.aclose()
        except Exception:
            log.exception("http endpoint shutdown failed")
        await send({"type": "lifespan.shutdown.complete"})

    def shutdown_requested(self) -> None:
        """The server is stopping: answer the requests waiting for a command now (202), so the graceful
        shutdown does not wait for their ``ct``. Safe to call from a signal handler."""
        if self.commands is not None and self._loop is not None:
            self._loop.call_soon_threadsafe(self.commands.release)

    # ------------------------------------------------------------------------------------------ routing

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        method: str = scope["method"]
        if path.startswith("/v1/"):
            if method != "POST":
                await _send(send, NOT_ALLOWED)
                return
            started = time.perf_counter()
            try:
                response = await self._publish(scope, receive)
            except _ClientGone:
                return
            finally:
                self.metrics.latency.observe(time.perf_counter() - started)
            await _send(send, response)
            if response.command is not None and self.commands is not None:
                await self.commands.delivered(response.command)
        elif path == "/" and method in ("GET", "HEAD"):
            await _send(send, SUCCESS)
        elif path == "/metrics" and method in ("GET", "HEAD"):
            await _send(send, _Response(200, self.metrics.render(), CONTENT_TYPE_LATEST.encode()))
        else:
            await _send(send, NOT_FOUND)

    # ------------------------------------------------------------------------------------------ publish

    async def _publish(self, scope: Scope, receive: Receive) -> _Response:
        """Run one publish and map every outcome to its response (the only place that does)."""
        try:
            return await self._try_publish(scope, receive)
        except BadRequest as exc:
            return _error(400, "BadRequest", str(exc))
        except _TooLarge:
            return _error(413, "PayloadTooLarge", f"The payload exceeds {self.max_payload_bytes} bytes")
        except PayloadRejected:
            self.metrics.outcome("rejected")
            return NOT_ACCEPTABLE
        except AuthUnavailable as exc:
            self.metrics.auth_failure("unavailable")
            log.warning("device registry unavailable: %s", exc)
            return NO_REGISTRY
        except QueueFull:
            return _error(503, "ServiceUnavailable", "Too many events in flight", retry_after=True)
        except PublishUnavailable as exc:
            return _error(503, "ServiceUnavailable", f"Unable to publish: {exc}", retry_after=True)
        except _ClientGone:
            raise
        except Exception:
            self.metrics.outcome("error")
            log.exception("publish failed")
            return INTERNAL

    async def _try_publish(self, scope: Scope, receive: Receive) -> _Response:
        authenticator, sink = self.authenticator, self.sink
        if authenticator is None or sink is None:
            return STARTING
        channel = _channel(scope)
        if not channel:
            return NOT_FOUND
        params = parse_publish_params(scope.get("query_string", b""), self.max_command_timeout_s)
        authorization = content_type = None
        length: int | None = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                authorization = value.decode("latin-1")
            elif name == b"content-type":
                content_type = value.decode("latin-1")
            elif name == b"content-length":
                if not value.isdigit():
                    raise BadRequest("invalid Content-Length")
                length = int(value)
        if length is not None and length > self.max_payload_bytes:
            raise _TooLarge

        login = http_login(authorization, params.application, params.device, _client_certs(scope))
        if login is None:
            self.metrics.auth_failure("missing")
            return FORBIDDEN
        result = await authenticator.authenticate(login.app, login.device, login.credential)
        if not result.ok or result.identity is None:
            self.metrics.auth_failure(str(result.outcome))
            return FORBIDDEN
        sender = origin = result.identity
        if params.as_device is not None and params.as_device != sender.device:
            as_result = await authenticator.authorize_as(sender, params.as_device)
            if not as_result.ok or as_result.identity is None:
                self.metrics.auth_failure("as_refused")
                return FORBIDDEN
            origin = as_result.identity

        payload = await _read_body(receive, self.max_payload_bytes)
        event = build_device_event(
            app=sender.app, app_uid=sender.app_uid,
            device=origin.device, device_uid=origin.device_uid,
            sender=sender.device, sender_uid=sender.device_uid,
            instance=self.instance, channel=channel, payload=payload,
            content_type=content_type or None, data_schema=params.data_schema,
        )
        await sink.publish(event, topic_ready=sender.topic_ready)
        commands = self.commands
        if not params.command_timeout_s or commands is None:
            return ACCEPTED
        # the publish is acknowledged: now wait for a command for (app, sender, origin device)
        gone = asyncio.ensure_future(receive())  # completes when the client disconnects
        gateway = sender.device if origin.device != sender.device else None
        try:
            command = await commands.wait(sender.app, origin.device, gateway, params.command_timeout_s, gone)
        finally:
            left = gone.done() and not gone.cancelled()
            gone.cancel()
        if command is None:
            if left:
                raise _ClientGone
            return ACCEPTED
        ctype = command.content_type.encode("latin-1", "replace") if command.content_type else None
        return _Response(200, command.payload, ctype, command=command)


def _channel(scope: Scope) -> str:
    """The ``{channel}`` path segment, percent-decoded from the raw path (``%2F`` stays in the channel)."""
    raw: bytes | None = scope.get("raw_path")
    if raw is not None and raw.startswith(b"/v1/"):
        rest = raw.split(b"?", 1)[0][4:]
        segment = rest.split(b"/", 1)[0]
        try:
            return unquote(segment.decode("ascii"), errors="strict")
        except UnicodeDecodeError:
            raise BadRequest("the channel is not valid UTF-8") from None
    path: str = scope["path"]
    return path[4:].split("/", 1)[0]


def _client_certs(scope: Scope) -> tuple[bytes, ...] | None:
    """The verified client certificate chain, when the server provides the ASGI TLS extension (TLS issue)."""
    tls = scope.get("extensions", {}).get("tls") if scope.get("extensions") else None
    if not tls:
        return None
    # the ASGI TLS extension gives PEM strings; the authenticator takes DER
    chain = tls.get("client_cert_chain") or ()
    return tuple(ssl.PEM_cert_to_DER_cert(c) if isinstance(c, str) else c for c in chain) or None


async def _read_body(receive: Receive, limit: int) -> bytes:
    """The whole request body, refusing (before buffering the rest) once it exceeds ``limit`` bytes."""
    first = await receive()
    if first["type"] == "http.disconnect":
        raise _ClientGone
    body: bytes = first.get("body", b"")
    if len(body) > limit:
        raise _TooLarge
    if not first.get("more_body"):
        return body
    chunks = [body]
    size = len(body)
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _ClientGone
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise _TooLarge
        chunks.append(chunk)
        if not message.get("more_body"):
            return b"".join(chunks)


async def _send(send: Send, response: _Response) -> None:
    headers: list[tuple[bytes, bytes]] = [(b"content-length", str(len(response.body)).encode())]
    if response.content_type is not None:
        headers.append((b"content-type", response.content_type))
    if response.retry_after:
        headers.append((b"retry-after", b"1"))
    if response.command is not None:
        headers.append((b"command", response.command.command.encode("utf-8")))
    await send({"type": "http.response.start", "status": response.status, "headers": headers})
    await send({"type": "http.response.body", "body": response.body})
