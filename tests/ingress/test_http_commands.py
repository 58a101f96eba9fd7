"""Component tests of the HTTP command wait (``ct``): the ASGI app via httpx, a recording poll link standing in
for the StateClient (the real one is exercised in tests/ingress/test_http_commands_e2e.py)."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator

import httpx
import pytest

from ingress.http import HttpEndpoint, Resources
from ingress.http.commands import CommandWaits, header_safe
from ingress.metrics import IngressMetrics
from schemas.state import POLL_ENDED, DeliverCommand
from tests.ingress.fakes import FakeAuthenticator, FakeDevice, RecordingSink
from tests.support.procs import eventually


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


class RecordingLink:
    """Records polls, poll ends and outcomes; ``fail`` makes registering a poll raise."""

    def __init__(self) -> None:
        self.polls: list[tuple[str, str, str, float, str | None]] = []
        self.ended: list[str] = []
        self.outcomes: list[tuple[str, bool, str | None]] = []
        self.fail = False

    async def command_poll(self, app: str, device: str, poll_id: str, until: float,
                           sender: str | None = None) -> None:
        if self.fail:
            raise ConnectionError("kafka is down")
        self.polls.append((app, device, poll_id, until, sender))

    async def end_command_poll(self, app: str, device: str, poll_id: str, sender: str | None = None) -> None:
        self.ended.append(poll_id)

    async def command_outcome(self, command: DeliverCommand, delivered: bool, reason: str | None = None) -> None:
        self.outcomes.append((command.request_id, delivered, reason))


class Env:
    def __init__(self, link: RecordingLink | None) -> None:
        self.link = link
        self.waits = CommandWaits(link)
        devices = [FakeDevice("my-app", "dev-1", "secret"), FakeDevice("my-app", "gw", "gw-secret"),
                   FakeDevice("my-app", "child", "x", gateways=("gw",))]
        self.app = HttpEndpoint(instance="kedge-test", max_payload_bytes=1024, max_command_timeout_s=60,
                                metrics=IngressMetrics("http"),
                                ready=Resources(FakeAuthenticator(devices), RecordingSink(), self.waits))
        self.client = httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app), base_url="http://test")

    def post(self, ct: int, user: str = "dev-1@my-app", password: str = "secret",
             **params: str) -> asyncio.Task[httpx.Response]:
        return asyncio.create_task(self.client.post(
            "/v1/telemetry", params={"ct": str(ct), **params}, content=b"1", headers=basic(user, password)))

    async def poll_id(self, index: int = 0) -> str:
        assert self.link is not None
        link = self.link
        await eventually(lambda: len(link.polls) > index, 5, "the poll registration")
        return link.polls[index][2]


def command(poll_id: str, name: str = "set", content_type: str | None = "text/plain") -> DeliverCommand:
    return DeliverCommand("my-app", "dev-1", poll_id, name, b"on", content_type, f"req-{poll_id}", "api")


@pytest.fixture
async def env() -> AsyncIterator[Env]:
    e = Env(RecordingLink())
    async with e.client:
        yield e


async def test_a_command_arriving_while_waiting_is_the_200_response(env: Env) -> None:
    request = env.post(30)
    poll_id = await env.poll_id()
    assert env.link is not None
    app, device, _, until, sender = env.link.polls[0]
    assert (app, device, sender) == ("my-app", "dev-1", None) and until > 0
    await env.waits.on_command(command(poll_id))
    r = await asyncio.wait_for(request, 5)
    assert (r.status_code, r.headers["command"], r.headers["content-type"], r.content) == (
        200, "set", "text/plain", b"on")
    assert env.link.outcomes == [(f"req-{poll_id}", True, None)]
    assert env.link.ended == []  # consumed by the agent: nothing to end
    await env.waits.on_command(command(poll_id))  # a duplicate (replayed) delivery
    assert env.link.outcomes[-1] == (f"req-{poll_id}", False, POLL_ENDED)


async def test_a_command_without_content_type_has_none(env: Env) -> None:
    request = env.post(30)
    await env.waits.on_command(command(await env.poll_id(), content_type=None))
    r = await asyncio.wait_for(request, 5)
    assert r.status_code == 200 and "content-type" not in r.headers and r.content == b"on"


async def test_no_command_answers_202_after_ct_and_ends_the_poll(env: Env) -> None:
    r = await asyncio.wait_for(env.post(1), 10)
    assert r.status_code == 202 and "command" not in r.headers
    assert env.link is not None
    poll_id = env.link.polls[0][2]
    await eventually(lambda: env.link is not None and env.link.ended == [poll_id], 5, "the poll end")
    await env.waits.on_command(command(poll_id))  # raced in after the timeout
    assert env.link.outcomes == [(f"req-{poll_id}", False, POLL_ENDED)]


async def test_a_gateway_waits_for_the_commands_of_the_device_it_publishes_for(env: Env) -> None:
    request = env.post(30, "gw@my-app", "gw-secret", **{"as": "child"})
    poll_id = await env.poll_id()
    assert env.link is not None
    assert [(a, d, s) for a, d, _, _, s in env.link.polls] == [("my-app", "child", "gw")]
    await env.waits.on_command(DeliverCommand("my-app", "child", poll_id, "reboot", b"", None, "r1", None))
    r = await asyncio.wait_for(request, 5)
    assert (r.status_code, r.headers["command"], r.content) == (200, "reboot", b"")


async def test_a_command_name_unfit_for_a_header_is_refused_and_the_wait_goes_on(env: Env) -> None:
    assert header_safe("set temp") and header_safe("grüße") and not header_safe("a\r\nb") and not header_safe("")
    request = env.post(1)
    poll_id = await env.poll_id()
    await env.waits.on_command(command(poll_id, name="evil\r\nx: y"))
    r = await asyncio.wait_for(request, 10)
    assert r.status_code == 202
    assert env.link is not None
    assert env.link.outcomes == [(f"req-{poll_id}", False, "command name not allowed in an HTTP header")]


async def test_release_answers_every_waiting_request_at_once(env: Env) -> None:
    requests = [env.post(60) for _ in range(3)]
    await env.poll_id(2)
    env.waits.release()
    responses = await asyncio.wait_for(asyncio.gather(*requests), 5)
    assert [r.status_code for r in responses] == [202, 202, 202]
    await env.waits.close()
    assert env.link is not None
    assert sorted(env.link.ended) == sorted(p[2] for p in env.link.polls)


async def test_without_a_working_link_the_request_waits_ct_and_answers_202() -> None:
    link = RecordingLink()
    link.fail = True
    for e in (Env(link), Env(None)):
        async with e.client:
            r = await asyncio.wait_for(e.post(1), 10)
            assert r.status_code == 202
    assert link.polls == [] and link.ended == []


async def test_a_client_that_leaves_gets_no_response_and_its_poll_ends(env: Env) -> None:
    scope = {"type": "http", "method": "POST", "path": "/v1/telemetry", "raw_path": b"/v1/telemetry",
             "query_string": b"ct=30", "headers": [(b"authorization", basic("dev-1@my-app", "secret")
                                                     ["Authorization"].encode())]}
    messages = [{"type": "http.request", "body": b"1", "more_body": False}]
    left = asyncio.Event()
    sent: list[dict[str, object]] = []

    async def receive() -> dict[str, object]:
        if messages:
            return messages.pop(0)
        await left.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    call = asyncio.create_task(env.app(scope, receive, send))  # type: ignore[arg-type]
    poll_id = await env.poll_id()
    left.set()
    await asyncio.wait_for(call, 5)
    assert sent == []
    assert env.link is not None
    await eventually(lambda: env.link is not None and env.link.ended == [poll_id], 5, "the poll end")


async def test_a_thousand_concurrent_waits_share_one_link() -> None:
    link = RecordingLink()
    waits = CommandWaits(link)
    never = asyncio.get_running_loop().create_future()  # the clients stay
    tasks = [asyncio.create_task(waits.wait("my-app", f"d{i}", None, 30, never)) for i in range(1000)]
    await eventually(lambda: len(link.polls) == 1000 and waits.waiting == 1000, 10, "1000 registered polls")
    for _, device, poll_id, _, _ in link.polls:
        await waits.on_command(DeliverCommand("my-app", device, poll_id, "go", device.encode(), None, poll_id, None))
    got = await asyncio.wait_for(asyncio.gather(*tasks), 10)
    assert [c.payload for c in got if c is not None] == [f"d{i}".encode() for i in range(1000)]
    assert waits.waiting == 0 and link.ended == []
    never.cancel()
