"""Limits on real processes: oversized HTTP bodies and MQTT packets, idle and slow connections, keepalive
expiry, and a connection flood from one source (the per-source connect rate limit)."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from protocols.mqtt import Connack, Connect, Disconnect, Publish, ReasonCode, encode
from tests.ingress.mqtt_support import RawClient
from tests.security.conftest import CONNECT_S, MAX_PACKET, MAX_PAYLOAD, Stack
from tests.support.procs import ProcGroup, eventually, kedge

pytestmark = [pytest.mark.integration, pytest.mark.slow]

#: a generous bound on "the server closed it", far above CONNECT_S and keepalive * 1.5
CLOSE_WITHIN_S = 10.0


async def test_oversized_http_body_is_413(stack: Stack) -> None:
    user, password = stack.device_login("a")
    async with httpx.AsyncClient(base_url=stack.http_url, timeout=10, auth=(user, password)) as http:
        assert (await http.post("/v1/telemetry", content=b"x" * MAX_PAYLOAD)).status_code == 202
        r = await http.post("/v1/telemetry", content=b"x" * (MAX_PAYLOAD + 1))
        assert r.status_code == 413 and r.json()["error"], r.text
        r = await http.post("/v1/telemetry", content=b"x" * (8 * 1024 * 1024))
        assert r.status_code == 413, r.text
    await stack.assert_alive()


@pytest.mark.parametrize("version", [4, 5])
async def test_oversized_mqtt_publish_is_refused(stack: Stack, version: int) -> None:
    user, password = stack.device_login("a")
    client, connack = await RawClient.open(stack.mqtt_port, Connect("big", version, username=user,
                                                                    password=password.encode()))
    assert connack.reason_code == ReasonCode.SUCCESS
    if version == 5:
        assert connack.properties.maximum_packet_size == MAX_PACKET
    await client.send(Publish("telemetry", b"x" * MAX_PACKET, 1, packet_id=1))
    answer = await client.recv()
    if version == 5:
        assert isinstance(answer, Disconnect) and answer.reason_code == ReasonCode.PACKET_TOO_LARGE, answer
        assert await client.closed()
    else:
        assert answer is None, answer  # 3.1.1: the connection is closed
    await stack.assert_alive()


async def test_oversized_connect_with_a_huge_remaining_length_is_closed(stack: Stack) -> None:
    """A fixed header announcing 268 MB: refused at once, without waiting for (or buffering) the body."""
    reader, writer = await asyncio.open_connection("127.0.0.1", stack.mqtt_port)
    writer.write(b"\x10\xff\xff\xff\x7f")
    await writer.drain()
    data = await asyncio.wait_for(reader.read(1024), CLOSE_WITHIN_S)
    assert data == b"" or (await asyncio.wait_for(reader.read(1024), CLOSE_WITHIN_S)) == b""
    writer.close()
    await stack.assert_alive()


async def test_idle_and_slow_connections_are_closed_after_the_connect_timeout(stack: Stack) -> None:
    idle = await asyncio.open_connection("127.0.0.1", stack.mqtt_port)
    slow = await asyncio.open_connection("127.0.0.1", stack.mqtt_port)
    raw = encode(Connect("slow", 5, username="x@y", password=b"z"), 5)
    slow[1].write(raw[:3])  # the start of a CONNECT, then nothing (slowloris)
    await slow[1].drain()
    loop = asyncio.get_running_loop()
    started = loop.time()
    for reader, writer in (idle, slow):
        assert await asyncio.wait_for(reader.read(1024), CLOSE_WITHIN_S) == b""
        writer.close()
    assert loop.time() - started >= CONNECT_S * 0.9  # not closed before the timeout
    await stack.assert_alive()


async def test_keepalive_expiry_closes_the_connection(stack: Stack) -> None:
    user, password = stack.device_login("a", "lone")
    for version in (4, 5):
        client, connack = await RawClient.open(stack.mqtt_port, Connect("ka", version, username=user,
                                                                        password=password.encode(), keepalive=1))
        assert connack.reason_code == ReasonCode.SUCCESS
        answer = await client.recv(CLOSE_WITHIN_S)  # nothing sent: 1.5 x keepalive later the server ends it
        if version == 5 and answer is not None:
            assert isinstance(answer, Disconnect) and answer.reason_code == ReasonCode.KEEP_ALIVE_TIMEOUT, answer
            answer = await client.recv(CLOSE_WITHIN_S)
        assert answer is None, answer
    await stack.assert_alive()


async def _connect_code(port: int, version: int, user: str, password: str, source: str = "127.0.0.1") -> int | None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
    client = RawClient(reader, writer, version)
    await client.send(Connect(f"flood-{version}", version, username=user, password=password.encode()))
    connack = await client.recv()
    client.close()
    return connack.reason_code if isinstance(connack, Connack) else None


async def test_connect_flood_from_one_source_is_rate_limited(stack: Stack, procs: ProcGroup) -> None:
    """An endpoint with one connect per 5 s and a burst of 4 per source: the 5th quick CONNECT gets 0x9F (3.1.1: 3);
    another source is not affected; the source is served again once its bucket refilled; the process survives."""
    mqtt = procs.start("mqtt-limited", kedge("serve", "mqtt", "--port", "0"), env={
        "KEDGE_DATA_DIR": str(stack.data_dir), "KEDGE_KAFKA__BOOTSTRAP_SERVERS": stack.bootstrap,
        "KEDGE_INSTANCE": "sec", "KEDGE_MQTT__CONNECT_RATE_PER_SOURCE": "0.2",
        "KEDGE_MQTT__CONNECT_BURST_PER_SOURCE": "4"})
    await mqtt.wait_for_log("mqtt endpoint listening on mqtt://", 30)
    port = int(mqtt.log().split("mqtt endpoint listening on mqtt://127.0.0.1:", 1)[1].split()[0])
    user, password = stack.device_login("a", "lone")
    codes = [await _connect_code(port, 5, user, "wrong") for _ in range(4)]
    assert codes == [ReasonCode.BAD_USER_NAME_OR_PASSWORD] * 4  # within the burst: authenticated (and refused)
    flood = await asyncio.gather(*(_connect_code(port, 5, user, password) for _ in range(20)))
    assert ReasonCode.CONNECTION_RATE_EXCEEDED in flood, flood
    assert set(flood) <= {ReasonCode.CONNECTION_RATE_EXCEEDED, ReasonCode.SUCCESS}, flood
    assert await _connect_code(port, 4, user, password) == 3  # 3.1.1: "server unavailable"
    # another source address has its own bucket
    assert await _connect_code(port, 5, user, password, source="127.0.0.2") == ReasonCode.SUCCESS
    assert mqtt.running

    async def served_again() -> bool:
        return await _connect_code(port, 5, user, password) == ReasonCode.SUCCESS

    await eventually(served_again, 20, "the source to be served again after its bucket refilled", 0.5)
    assert mqtt.running
    assert mqtt.stop() == 0, mqtt.log()
    assert "Traceback" not in mqtt.log(), mqtt.log()
