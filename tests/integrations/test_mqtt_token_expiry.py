"""An MQTT integration connection lives only as long as its credentials (integrations/mqtt/expiry.py).

Pure: :func:`watch_credentials` against a small hand-written user store. End to end: real paho-mqtt clients
(MQTT 5 and 3.1.1) against a real `kedge serve mqtt-integration` on the shared stack's `kedge serve api`: a
JWT-authenticated connection is ended when the JWT expires (MQTT 5 DISCONNECT 0xA0), an access-token one when
the token or its user is deleted (0x87), within the token check interval; a valid login stays.
"""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from integrations.auth import AuthError, AuthUnavailable, Caller
from integrations.mqtt.expiry import JWT_EXPIRED, TOKEN_REVOKED, Ending, watch_credentials, watched
from protocols.mqtt import Connect, ReasonCode
from registry.access.tokens import prefix_of
from tests.integrations.conftest import PASSWORD, Stack
from tests.support.api import password_jwt
from tests.support.procs import ProcGroup, eventually, kedge

TIMEOUT = 30.0
#: the mqtt-integration's token check interval in these tests
CHECK_S = 0.3

# ------------------------------------------------------------------------------------------- pure: the watch


@dataclass(frozen=True)
class FakeCaller:
    user: str | None
    exp: int | None = None

    @property
    def anonymous(self) -> bool:
        return self.user is None


class FakeUsers:
    """The access tokens that are valid now; ``down`` makes the store unavailable."""

    def __init__(self, tokens: dict[str, str]) -> None:
        self.tokens = tokens
        self.down = False
        self.checks = 0

    async def identify(self, authorization: Sequence[str], query: Callable[[str], Sequence[str]]) -> Caller:
        self.checks += 1
        if self.down:
            raise AuthUnavailable("database down")
        (user,), (key,) = query("username"), query("api_key")
        if self.tokens.get(key) != user:
            raise AuthError(403, "Unknown user or access token")
        return FakeCaller(user)

    async def authenticate_jwt(self, token: str) -> Caller:
        raise AssertionError("a JWT is never checked again")

    async def may(self, app: str, caller: Caller, permission: Any) -> bool | None:
        raise AssertionError("not asked")


async def _ending(coro: Any, timeout_s: float = 5.0) -> Ending:
    result: Ending = await asyncio.wait_for(coro, timeout_s)
    return result


def test_what_is_watched() -> None:
    api_key = Connect("c", username="alice", password=b"drg_x")
    assert watched(api_key, FakeCaller("alice"))
    assert watched(Connect("c", username="jwt"), FakeCaller("alice", exp=10))
    assert not watched(Connect("c"), FakeCaller(None))  # anonymous: nothing can expire


async def test_a_jwt_ends_when_it_expires_even_after_a_clock_jump() -> None:
    users = FakeUsers({})
    connect = Connect("c", username="a.jwt")
    assert await _ending(watch_credentials(users, connect, FakeCaller("alice", exp=99), 0.01,
                                           clock=lambda: 100.0)) == Ending(JWT_EXPIRED, "JWT expired")
    now = [0.0]

    def clock() -> float:  # the wall clock jumps past exp while the watch sleeps
        now[0] += 50.0
        return now[0]

    ending = await _ending(watch_credentials(users, connect, FakeCaller("alice", exp=120), 0.01,
                                             clock=clock))
    assert ending.reason is ReasonCode.MAXIMUM_CONNECT_TIME and users.checks == 0


async def test_an_access_token_is_checked_again_until_it_is_deleted() -> None:
    users = FakeUsers({"drg_key": "alice"})
    connect = Connect("c", username="alice", password=b"drg_key")
    seen: list[Caller] = []
    task = asyncio.create_task(watch_credentials(users, connect, FakeCaller("alice"), 0.01,
                                                 refreshed=seen.append))
    await eventually(lambda: len(seen) >= 2, 5.0, "two successful re-checks")
    users.down = True  # the store is unavailable: the connection stays
    checks = users.checks
    await eventually(lambda: users.checks >= checks + 2, 5.0, "re-checks while the store is down")
    assert not task.done()
    users.down = False
    del users.tokens["drg_key"]
    assert await _ending(task) == Ending(TOKEN_REVOKED, "access token revoked or no longer valid")
    assert ReasonCode.NOT_AUTHORIZED is TOKEN_REVOKED


async def test_anonymous_is_never_ended() -> None:
    users = FakeUsers({})
    task = asyncio.create_task(watch_credentials(users, Connect("c"), FakeCaller(None), 0.001))
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(asyncio.shield(task), 0.05)
    task.cancel()
    assert users.checks == 0


# ------------------------------------------------------------------------------------ end to end (processes)


@dataclass
class Integration:
    stack: Stack
    port: int


@pytest.fixture(scope="module")
async def integration(stack: Stack, tmp_path_factory: pytest.TempPathFactory,
                      request: pytest.FixtureRequest) -> AsyncIterator[Integration]:
    group = ProcGroup(tmp_path_factory.mktemp("mqtt-expiry"))
    failed_before = request.session.testsfailed
    env = {"KEDGE_DATA_DIR": str(stack.data_dir), "KEDGE_KAFKA__BOOTSTRAP_SERVERS": stack.bootstrap,
           "KEDGE_INSTANCE": "expiry", "KEDGE_INTEGRATION__TOKEN_CHECK_INTERVAL_S": str(CHECK_S)}
    try:
        mqtt = group.start("mqtt-integration", kedge("serve", "mqtt-integration", "--port", "0"), env=env)
        await mqtt.wait_for_log("mqtt integration listening on mqtt://", 30.0)
        match = re.search(r"listening on mqtt://127\.0\.0\.1:(\d+)", mqtt.log())
        assert match, mqtt.log()
        yield Integration(stack, int(match.group(1)))
        assert mqtt.stop() == 0, mqtt.log()
        assert "Traceback" not in mqtt.log(), mqtt.log()
    finally:
        group.stop_all()
        if request.session.testsfailed > failed_before:
            print(group.logs())


class Client:
    """A paho-mqtt client on its network thread that records how the server ended the connection."""

    def __init__(self, port: int, username: str | None, password: str | None,
                 protocol: MQTTProtocolVersion = MQTTProtocolVersion.MQTTv5) -> None:
        self.port = port
        self.v5 = protocol == MQTTProtocolVersion.MQTTv5
        self.client = paho.Client(CallbackAPIVersion.VERSION2, protocol=protocol)
        self.client.username_pw_set(username, password)
        self.connack: int | None = None
        self.subacks: dict[int, list[int]] = {}
        self.ended = threading.Event()
        self.disconnect_reason: int | None = None
        self.disconnect_message: str | None = None
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_subscribe = lambda c, u, mid, codes, p: self.subacks.__setitem__(mid, [x.value for x in codes])

    def _on_connect(self, c: object, u: object, flags: object, rc: Any, props: object) -> None:
        self.connack = rc.value

    def _on_disconnect(self, c: object, u: object, flags: object, rc: Any, props: Any) -> None:
        if self.ended.is_set():  # only the first end counts (paho may try to reconnect afterwards)
            return
        self.disconnect_reason = rc.value
        self.disconnect_message = getattr(props, "ReasonString", None) if props is not None else None
        self.ended.set()

    async def connect(self) -> None:
        kwargs: dict[str, Any] = {"keepalive": 30}
        if self.v5:
            kwargs["clean_start"] = True
        await asyncio.to_thread(self.client.connect, "127.0.0.1", self.port, **kwargs)
        self.client.loop_start()
        await eventually(lambda: self.connack is not None, TIMEOUT, "CONNACK")
        assert self.connack == 0, f"CONNACK {self.connack}"

    async def subscribe(self, topic: str) -> list[int]:
        _, mid = self.client.subscribe(topic, qos=1)
        assert mid is not None
        await eventually(lambda: mid in self.subacks, TIMEOUT, f"SUBACK of {topic}")
        return self.subacks[mid]

    async def wait_ended(self, timeout_s: float = TIMEOUT) -> None:
        assert await asyncio.to_thread(self.ended.wait, timeout_s), "the server did not end the connection"

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def clients() -> Iterator[list[Client]]:
    made: list[Client] = []
    yield made
    for c in made:
        c.stop()


@pytest.mark.integration
@pytest.mark.slow
async def test_a_jwt_connection_ends_when_the_jwt_expires(integration: Integration, clients: list[Client],
                                                          unique: str) -> None:
    stack = integration.stack
    app = f"expiry-{unique}"
    await stack.create_app(await stack.jwt("alice"), app)
    short = await stack.jwt("alice", ttl_s=3)
    v5 = Client(integration.port, short, None)  # the JWT as the user name
    v311 = Client(integration.port, short, None, MQTTProtocolVersion.MQTTv311)
    lasting = Client(integration.port, await stack.jwt("alice"), None)
    clients.extend([v5, v311, lasting])
    for c in clients:
        await c.connect()
    assert await v5.subscribe(f"app/{app}") == [1]
    await v5.wait_ended()
    assert v5.disconnect_reason == 0xA0, v5.disconnect_reason  # MQTT 5 DISCONNECT "maximum connect time"
    assert v5.disconnect_message == "JWT expired"
    await v311.wait_ended()  # 3.1.1 has no server DISCONNECT: the socket is closed
    assert not lasting.ended.is_set()
    assert await lasting.subscribe(f"app/{app}") == [1]  # and it still works
    # an expired JWT cannot connect again
    again = Client(integration.port, short, None)
    clients.append(again)
    await asyncio.to_thread(again.client.connect, "127.0.0.1", integration.port)
    again.client.loop_start()
    await eventually(lambda: again.connack is not None, TIMEOUT, "CONNACK")
    assert again.connack == 0x86


@pytest.mark.integration
@pytest.mark.slow
async def test_an_access_token_connection_ends_when_the_token_or_its_user_is_deleted(
        integration: Integration, clients: list[Client], unique: str) -> None:
    stack = integration.stack
    revoked, kept = await stack.api_key("alice"), await stack.api_key("alice")
    gone_user = f"carol-{unique}"
    admin_jwt = await _admin_jwt(stack)
    async with stack.client(admin_jwt) as client:
        r = await client.post("/api/admin/v1alpha1/users", json={"username": gone_user, "password": PASSWORD})
        assert r.status_code == 201, r.text
    carol_key = await stack.api_key(gone_user)
    by_revoked = Client(integration.port, "alice", revoked)
    by_kept = Client(integration.port, "alice", kept)
    by_carol = Client(integration.port, gone_user, carol_key, MQTTProtocolVersion.MQTTv311)
    clients.extend([by_revoked, by_kept, by_carol])
    for c in clients:
        await c.connect()
    async with stack.client(await stack.jwt("alice")) as client:
        r = await client.delete(f"/api/tokens/v1alpha1/{prefix_of(revoked)}")
        assert r.status_code == 204, r.text
    await by_revoked.wait_ended(10 * CHECK_S + 5)
    assert by_revoked.disconnect_reason == 0x87, by_revoked.disconnect_reason  # not authorized
    assert by_revoked.disconnect_message == "access token revoked or no longer valid"
    async with stack.client(admin_jwt) as client:
        r = await client.delete(f"/api/admin/v1alpha1/users/{gone_user}")
        assert r.status_code == 204, r.text
    await by_carol.wait_ended(10 * CHECK_S + 5)
    assert not by_kept.ended.is_set()  # the other token of the same user keeps its connection


async def _admin_jwt(stack: Stack) -> str:
    return await password_jwt(stack.api_url, *stack.admin)
