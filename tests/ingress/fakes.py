"""Small hand-written fakes for the ingress component tests: a device authenticator and an event sink."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

from ingress.publish import TopicNotReady
from schemas.auth import (
    AuthOutcome,
    AuthResult,
    AuthUnavailable,
    Credential,
    DeviceIdentity,
    PassCredential,
    UserCredential,
)
from schemas.events import DeviceEvent


@dataclass
class FakeDevice:
    app: str
    name: str
    password: str
    #: a `user` credential (username, password), if any
    user: tuple[str, str] | None = None
    disabled: bool = False
    #: gateways allowed to publish on behalf of this device (spec.gatewaySelector.matchNames)
    gateways: tuple[str, ...] = ()
    topic_ready: bool = True

    @property
    def identity(self) -> DeviceIdentity:
        return DeviceIdentity(app=self.app, app_uid=f"uid-app-{self.app}", device=self.name,
                              device_uid=f"uid-dev-{self.name}", topic_ready=self.topic_ready)


@dataclass
class FakeAuthenticator:
    """Implements schemas.auth.DeviceAuthenticator over an in-memory device list."""

    devices: list[FakeDevice]
    down: bool = False
    calls: list[tuple[str, str, Credential]] = field(default_factory=list)
    as_calls: list[tuple[str, str]] = field(default_factory=list)

    def _find(self, app: str, name: str) -> FakeDevice | None:
        return next((d for d in self.devices if d.app == app and d.name == name), None)

    async def authenticate(self, app: str, device: str, credential: Credential) -> AuthResult:
        self.calls.append((app, device, credential))
        if self.down:
            raise AuthUnavailable("database is down")
        d = self._find(app, device)
        if d is None:
            return AuthResult(AuthOutcome.FAIL)
        match credential:
            case PassCredential(password=pw) if pw == d.password:
                pass
            case UserCredential(username=u, password=pw) if d.user == (u, pw):
                pass
            case _:
                return AuthResult(AuthOutcome.FAIL)
        if d.disabled:
            return AuthResult(AuthOutcome.DISABLED)
        return AuthResult(AuthOutcome.PASS, d.identity)

    async def authorize_as(self, gateway: DeviceIdentity, as_device: str) -> AuthResult:
        self.as_calls.append((gateway.device, as_device))
        if self.down:
            raise AuthUnavailable("database is down")
        d = self._find(gateway.app, as_device)
        if d is None or gateway.device not in d.gateways or d.disabled:
            return AuthResult(AuthOutcome.FAIL)
        return AuthResult(AuthOutcome.PASS, d.identity)


@dataclass
class RecordingSink:
    """An EventSink that records events; ``fail`` makes every publish raise it."""

    events: list[DeviceEvent] = field(default_factory=list)
    fail: Exception | None = None
    connected: bool = True
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    async def publish(self, event: DeviceEvent, *, topic_ready: bool = True) -> None:
        self.publish_nowait(event, topic_ready=topic_ready)

    def publish_then(self, event: DeviceEvent, done: Callable[[BaseException | None], None], *,
                     topic_ready: bool = True) -> None:
        """Through :meth:`publish` (so a subclass that holds publishes holds these too)."""

        async def run() -> None:
            try:
                await self.publish(event, topic_ready=topic_ready)
            except Exception as exc:
                done(exc)
            else:
                done(None)

        task = asyncio.ensure_future(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @property
    def saturated(self) -> bool:
        return False

    async def wait_room(self) -> None:
        return None

    def publish_nowait(self, event: DeviceEvent, *, topic_ready: bool = True) -> None:
        if not topic_ready:
            raise TopicNotReady("Kafka topic is not ready")
        if self.fail is not None:
            raise self.fail
        self.events.append(event)
