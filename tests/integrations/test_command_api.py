"""The command API (`POST /api/command/v1alpha1/...`) of a real `kedge serve api`, read back from `iot-commands`."""

from __future__ import annotations

import asyncio
import base64
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from kedge.broker import free_port
from schemas.keys import device_key
from schemas.state import CommandRequest, decode_state_request
from tests.agents.support import start_worker
from tests.integrations.conftest import Stack
from tests.support.procs import ProcGroup, kedge
from topology.highwater import end_offsets
from topology.names import COMMANDS

pytestmark = [pytest.mark.integration, pytest.mark.slow]

GATEWAY_SPEC: dict[str, object] = {"gatewaySelector": {"matchNames": ["gw", "gw-off", "missing"]}}
DEVICES: dict[str, dict[str, object]] = {
    "d1": GATEWAY_SPEC,
    "gw": {},
    "gw-off": {"core": {"disabled": True}},
    "off": {"core": {"disabled": True}},
}


def path(app: str, device: str) -> str:
    return f"/api/command/v1alpha1/apps/{app}/devices/{device}"


class CommandReader:
    """Reads ``iot-commands`` from its current end (true high watermarks), every partition."""

    def __init__(self, bootstrap: str) -> None:
        self.consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=50)

    async def start(self) -> None:
        await self.consumer.start()
        tps = [TopicPartition(COMMANDS, p) for p in sorted(self.consumer.partitions_for_topic(COMMANDS) or ())]
        assert tps, "iot-commands does not exist"
        self.consumer.assign(tps)
        for tp, offset in (await end_offsets(self.consumer, tps)).items():
            self.consumer.seek(tp, offset)

    async def read(self, app: str, count: int, timeout_s: float = 15.0) -> list[tuple[bytes, CommandRequest]]:
        got: list[tuple[bytes, CommandRequest]] = []
        deadline = time.monotonic() + timeout_s
        while len(got) < count:
            assert time.monotonic() < deadline, f"only {len(got)} of {count} commands for {app} on {COMMANDS}"
            for records in (await self.consumer.getmany(timeout_ms=300)).values():
                for r in records:
                    request = decode_state_request(r.value or b"")
                    if isinstance(request, CommandRequest) and request.app == app:
                        got.append((r.key or b"", request))
        return got


@pytest.fixture
async def commands(bootstrap: str) -> AsyncIterator[CommandReader]:
    reader = CommandReader(bootstrap)
    await reader.start()
    yield reader
    await reader.consumer.stop()


async def new_app(stack: Stack, unique: str) -> tuple[str, str]:
    app = f"cmd-{unique}"
    alice = await stack.jwt("alice")
    await stack.create_app(alice, app, DEVICES)
    return app, alice


async def test_command_is_accepted_and_sent_to_the_device_and_its_gateways(
    stack: Stack, commands: CommandReader, unique: str
) -> None:
    app, alice = await new_app(stack, unique)
    async with stack.client(alice) as client:
        r = await client.post(path(app, "d1"), params={"command": "set-temp"}, content=b'{ "target": 21 }',
                              headers={"Content-Type": "application/json"})
    assert r.status_code == 202, r.text
    got = await commands.read(app, 2)
    by_target = {req.route: (key, req) for key, req in got}
    assert set(by_target) == {"d1", "gw"}, "the disabled and the missing gateway are skipped"
    assert {req.device for _, req in got} == {"d1"}, "every request names the device the command is for"
    for target, (key, req) in by_target.items():
        assert key == device_key(app, target).encode()
        assert (req.command, req.payload, req.content_type, req.reply_to) == (
            "set-temp", b'{"target":21}', "application/json", None)
    assert by_target["d1"][1].request_id != by_target["gw"][1].request_id


async def test_basic_access_token_and_raw_payload(stack: Stack, commands: CommandReader, unique: str) -> None:
    app, _ = await new_app(stack, unique)
    key = await stack.api_key("alice")
    auth = "Basic " + base64.b64encode(f"alice:{key}".encode()).decode()
    async with stack.client() as client:
        r = await client.post(path(app, "gw"), params={"command": "reboot"}, content=b"\x00\x01",
                              headers={"Authorization": auth, "Content-Type": "application/x-thing"})
    assert r.status_code == 202, r.text
    [(_, req)] = await commands.read(app, 1)
    assert (req.device, req.command, req.payload, req.content_type) == (
        "gw", "reboot", b"\x00\x01", "application/x-thing")


async def test_bad_requests(stack: Stack, unique: str) -> None:
    app, alice = await new_app(stack, unique)
    bob = await stack.jwt("bob")
    async with stack.client() as client:
        async def post(url: str, token: str | None = alice, params: dict[str, str] | None = None,
                       content: bytes = b"", content_type: str | None = None) -> httpx.Response:
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            if content_type:
                headers["Content-Type"] = content_type
            return await client.post(url, headers=headers, params=params, content=content)

        r = await post(path(f"nope-{unique}", "d1"), params={"command": "x"})
        assert r.status_code == 404 and r.json() == {"error": "NotFound",
                                                      "message": f"Not found Application / nope-{unique}"}
        r = await post(path(app, "d1"), token=bob, params={"command": "x"})
        assert r.status_code == 404 and r.json()["error"] == "NotFound"
        r = await post(path(app, "d1"), token=None, params={"command": "x"})
        assert r.status_code == 404, "anonymous may not write to an owned app"
        r = await post(path(app, "d1"), token="not-a-jwt", params={"command": "x"})
        assert r.status_code == 403 and r.json()["error"] == "AuthenticationError"
        r = await post(path(app, "nobody"), params={"command": "x"})
        assert r.status_code == 406 and "not found" in r.json()["message"]
        r = await post(path(app, "off"), params={"command": "x"})
        assert r.status_code == 406 and r.json()["message"] == "The device is disabled"
        r = await post(path(app, "d1"), params={"command": "x"}, content=b"{not json", content_type="application/json")
        assert r.status_code == 406 and "not valid JSON" in r.json()["message"]
        r = await post(path(app, "d1"))
        assert r.status_code == 400 and "command" in r.json()["message"]
        for wait in ("soon", "0", "-1", "1000", "nan"):
            r = await post(path(app, "d1"), params={"command": "x", "wait": wait})
            assert r.status_code == 400 and "wait" in r.json()["message"], (wait, r.text)


async def test_wait_reports_an_offline_device(stack: Stack, procs: ProcGroup, tmp_path: Path, unique: str) -> None:
    app, alice = await new_app(stack, unique)
    await start_worker(procs, "worker", stack.bootstrap, tmp_path / "worker", f"kedge-worker-{uuid.uuid4().hex[:8]}")
    async with stack.client(alice) as client:
        r = await client.post(path(app, "d1"), params={"command": "ping", "wait": "20"})
    assert r.status_code == 409, r.text
    assert r.json() == {"delivered": False, "reason": "device offline"}


async def test_kafka_unavailable_is_503(stack: Stack, procs: ProcGroup, unique: str) -> None:
    app, alice = await new_app(stack, unique)
    port = free_port()
    api = procs.start("api-nokafka", kedge("serve", "api", "--port", str(port)), env={
        "KEDGE_DATA_DIR": str(stack.data_dir), "KEDGE_KAFKA__BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}",
        "KEDGE_KAFKA__PUBLISH_TIMEOUT_S": "2"})
    await api.wait_for_log("API host ready on", 60.0)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30,
                                 headers={"Authorization": f"Bearer {alice}"}) as client:
        r = await asyncio.wait_for(client.post(path(app, "d1"), params={"command": "x"}), 20)
    assert r.status_code == 503 and r.json()["error"] == "ServiceUnavailable", r.text
