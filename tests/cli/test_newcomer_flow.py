"""The newcomer flow of the README with the CLI alone: log in, create an app and a device, watch the live stream
while the device publishes over HTTP (`kedge serve http`), send it a command. Real processes throughout:
`kedge serve api`, `kedge serve ws-integration`, `kedge serve http`, on the session's Tansu broker."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest
import yaml

from tests.agents.support import create_topics
from tests.cli.conftest import ApiProc
from tests.cli.support import Cli, Running
from tests.ingress.kafka_support import create_app_topic
from tests.support.procs import eventually, kedge

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PUBLISH_EVERY_S = 0.5
#: how often the WebSocket integration checks JWT expiry here (closes 1008 once a token expired)
TOKEN_CHECK_S = 0.3


@dataclass
class Endpoints:
    ws_url: str
    http_url: str


@pytest.fixture(scope="module")
async def endpoints(api_proc: ApiProc) -> AsyncIterator[Endpoints]:
    await create_topics(api_proc.bootstrap)
    env = {"KEDGE_DATA_DIR": str(api_proc.data_dir), "KEDGE_KAFKA__BOOTSTRAP_SERVERS": api_proc.bootstrap,
           "KEDGE_KAFKA__LINGER_MS": "0", "KEDGE_INTEGRATION__TOKEN_CHECK_INTERVAL_S": str(TOKEN_CHECK_S)}
    ws = api_proc.group.start("ws", kedge("serve", "ws-integration", "--port", "0"), env=env)
    http = api_proc.group.start("http", kedge("serve", "http", "--port", "0"), env=env)
    await ws.wait_for_log("ws integration listening on ws://", 60.0)
    await http.wait_for_log("http endpoint listening on http://", 60.0)
    ws_port = re.search(r"listening on ws://127\.0\.0\.1:(\d+)", ws.log())
    http_port = re.search(r"listening on http://127\.0\.0\.1:(\d+)", http.log())
    assert ws_port and http_port, ws.log() + http.log()
    yield Endpoints(f"ws://127.0.0.1:{ws_port.group(1)}", f"http://127.0.0.1:{http_port.group(1)}")


async def publish_until_received(endpoints: Endpoints, stream: Running, app: str, device: str, password: str,
                                 payload: dict[str, object], timeout_s: float = 60.0) -> int:
    """Publish telemetry over HTTP until the stream process exits (it has its events); how many were sent.

    The stream's consumer group starts at the live end, so events sent before it is positioned are not seen:
    keep publishing instead of guessing when it is ready."""
    auth = "Basic " + base64.b64encode(f"{device}@{app}:{password}".encode()).decode()
    sent = 0
    deadline = time.monotonic() + timeout_s
    async with httpx.AsyncClient(base_url=endpoints.http_url, timeout=10.0) as client:
        while not stream.exited:
            assert time.monotonic() < deadline, f"the stream received nothing within {timeout_s}s"
            r = await client.post("/v1/telemetry", json=payload, headers={"Authorization": auth})
            assert r.status_code in (200, 202), r.text
            sent += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stream.proc.wait(), PUBLISH_EVERY_S)
    return sent


async def test_newcomer_stream_and_command(cli: Cli, api_proc: ApiProc, endpoints: Endpoints, unique: str) -> None:
    app = f"newcomer-{unique}"
    (await cli("login", api_proc.url, "-u", "admin", "-p", api_proc.admin_password,
               "--ws-url", endpoints.ws_url)).ok()
    (await cli("create", "app", app)).ok()
    await create_app_topic(api_proc.bootstrap, app)  # the topic operator's job when a worker runs
    (await cli("context", "default-app", app)).ok()
    (await cli("create", "device", "dev1")).ok()
    (await cli("set", "password", "dev1", "dev1-secret")).ok()

    stream = await cli.spawn("stream", "--channel", "telemetry", "--device", "dev1", "-n", "1", "-o", "json")
    try:
        await publish_until_received(endpoints, stream, app, "dev1", "dev1-secret", {"temp": 21.5})
        result = await stream.result()
    finally:
        stream.kill()
    result.ok()
    [event] = result.lines()
    assert (event["type"], event["subject"], event["application"], event["device"]) == (
        "io.drogue.event.v1", "telemetry", app, "dev1")
    assert event["data"] == {"temp": 21.5}

    sent = (await cli("cmd", "dev1", "set-temp", "-p", '{"target": 20}', "-o", "json")).ok().json()
    assert sent == {"status": "success", "message": "command set-temp sent to device dev1", "http_status": 202}
    unknown, bad, no_stream, human = await asyncio.gather(
        cli("cmd", "nodev", "set-temp", "-p", "{}"), cli("cmd", "dev1", "set-temp", "-p", "{nope"),
        cli("stream", "-a", "no-such-app", "-n", "1"), cli.spawn("stream", "--device", "dev1", "-n", "1"))
    assert unknown.fails() == f"error: Device 'nodev' of application {app!r} not found (HTTP 406)"
    assert bad.fails().startswith("error: --payload is not valid JSON")
    assert no_stream.fails().endswith("(HTTP 404)")
    try:  # the default output: one line per event
        await publish_until_received(endpoints, human, app, "dev1", "dev1-secret", {"temp": 22})
        line = (await human.result()).ok().out.strip()
    finally:
        human.kill()
    assert line.split()[1:5] == ["io.drogue.event.v1", "dev1", "telemetry", '{"temp":22}'], line
    (await cli("delete", "app", app)).ok()


async def test_stream_renews_its_jwt(cli: Cli, api_proc: ApiProc, endpoints: Endpoints, unique: str) -> None:
    """With 5 s JWTs, a stream outlives several tokens: it sends RefreshAccessToken before each expires, so the
    integration (checking every 0.3 s) never closes it with 1008."""
    app = f"refresh-{unique}"
    (await cli("login", api_proc.url, "-u", "admin", "-p", api_proc.admin_password, "--ws-url", endpoints.ws_url,
               "--jwt-ttl", "5", "-a", app)).ok()
    (await cli("create", "app", app)).ok()
    await create_app_topic(api_proc.bootstrap, app)
    spec = json.dumps({"credentials": {"credentials": [{"pass": "pw"}]}})
    (await cli("create", "device", "d", "--spec", spec)).ok()

    def login_state() -> tuple[str, int]:
        auth = yaml.safe_load(cli.config_file.read_text())["contexts"][0]["auth"]
        return auth["token"], auth["exp"]

    first_token, first_exp = login_state()
    stream = await cli.spawn("stream", "-n", "1", "-o", "json")
    try:
        # let the first token expire (and be replaced) while the stream is open
        await eventually(lambda: login_state()[0] != first_token and time.time() > first_exp + 3 * TOKEN_CHECK_S,
                         30.0, "the stream to renew its JWT past the first one's expiry")
        assert not stream.exited, f"the stream ended early:\n{await stream.result()}"
        await publish_until_received(endpoints, stream, app, "d", "pw", {"n": 1})
        result = await stream.result()
    finally:
        stream.kill()
    [event] = result.ok().lines()
    assert event["data"] == {"n": 1}
    (await cli("delete", "app", app)).ok()
