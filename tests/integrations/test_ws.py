"""`kedge serve ws-integration` with a real `websockets` client, the real broker and the real API host."""

from __future__ import annotations

import asyncio
import base64
import time
import uuid
from collections.abc import Sequence
from dataclasses import replace
from urllib.parse import quote

import httpx
import jwt as pyjwt
import orjson
import pytest
from aiokafka import AIOKafkaProducer
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from schemas.binding import to_kafka
from schemas.events import DeviceEvent
from schemas.types import CONNECTION_TYPE, EVENT_TYPE
from tests.integrations.conftest import TOKEN_CHECK_S, Stack, device_event, produce
from tests.support.procs import eventually
from topology.names import app_topic

pytestmark = [pytest.mark.integration, pytest.mark.slow]

RECV_S = 15.0


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def basic(user: str, key: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{key}".encode()).decode()}


async def recv_event(ws: ClientConnection, timeout_s: float = RECV_S) -> dict[str, object]:
    frame = await asyncio.wait_for(ws.recv(), timeout_s)
    assert isinstance(frame, str), "events come as text frames"
    doc = orjson.loads(frame)
    assert isinstance(doc, dict)
    return doc


def marker(app: str, prefix: str) -> DeviceEvent:
    """An event every filter of these tests lets through (type connection, channel telemetry, d2 via gw)."""
    return via(device_event(app, device="d2", type_=CONNECTION_TYPE, id=f"{prefix}-{uuid.uuid4()}"), "gw")


def via(event: DeviceEvent, sender: str) -> DeviceEvent:
    """``event`` as sent by the gateway ``sender``."""
    return replace(event, extensions={**event.extensions, "sender": sender})


async def send_p0(producer: AIOKafkaProducer, app: str, *events: DeviceEvent) -> None:
    """Produce into partition 0 only, so the order of arrival is the order of production."""
    for event in events:
        r = to_kafka(event)
        await producer.send_and_wait(app_topic(app), r.value, key=r.key, headers=r.headers, partition=0)


async def synced(producer: AIOKafkaProducer, app: str, clients: Sequence[ClientConnection],
                 timeout_s: float = 30.0) -> None:
    """Produce markers until every client received one: their consumers are assigned and positioned."""
    pending = list(clients)
    deadline = time.monotonic() + timeout_s
    while pending:
        assert time.monotonic() < deadline, f"{len(pending)} client(s) never received a sync marker"
        await send_p0(producer, app, marker(app, "sync"))
        still = []
        for ws in pending:
            try:
                doc = await recv_event(ws, 0.5)
            except TimeoutError:
                still.append(ws)
                continue
            assert str(doc["id"]).startswith("sync-"), doc
        pending = still


async def collect_until(ws: ClientConnection, end_id: str) -> list[str]:
    """Ids of the non-marker events up to the event ``end_id``."""
    ids: list[str] = []
    while True:
        doc = await recv_event(ws)
        if doc["id"] == end_id:
            return ids
        if not str(doc["id"]).startswith("sync-"):
            ids.append(str(doc["id"]))


async def collect_ids(ws: ClientConnection, want: set[str]) -> list[str]:
    """Receive until every id of ``want`` arrived (markers skipped); the ids in arrival order."""
    got: list[str] = []
    while not want <= set(got):
        doc = await recv_event(ws)
        if not str(doc["id"]).startswith("sync-"):
            got.append(str(doc["id"]))
    return got


async def closed(ws: ClientConnection, timeout_s: float = RECV_S) -> tuple[int | None, str | None]:
    """Wait for the server's close; the close code and reason (frames before it are dropped)."""
    async def drain() -> None:
        try:
            async for _ in ws:
                pass
        except ConnectionClosed:
            pass

    await asyncio.wait_for(drain(), timeout_s)
    return ws.close_code, ws.close_reason


# ------------------------------------------------------------------------------------------------- tests


async def test_structured_events_and_filters(stack: Stack, producer: AIOKafkaProducer, unique: str) -> None:
    app = f"ws-f-{unique}"
    alice = await stack.jwt("alice")
    await stack.create_app(alice, app)
    url = f"{stack.ws_url}/{app}"
    queries = {
        "all": "",
        "type": f"?type={CONNECTION_TYPE}",
        "chan_dev": "?channel=telemetry&device=d2",
        "via_gw": "?device=gw,nobody",
        "types": f"?type={EVENT_TYPE}&type={CONNECTION_TYPE}&channel=state,telemetry",
    }
    clients = {name: await connect(url + q, additional_headers=bearer(alice)) for name, q in queries.items()}
    try:
        await synced(producer, app, list(clients.values()))
        e1 = device_event(app, device="d1")
        e2 = device_event(app, device="d1", channel="connection", type_=CONNECTION_TYPE,
                          payload=b'{"connected":true}')
        e3 = device_event(app, device="d2")
        e4 = via(device_event(app, device="d3"), "gw")
        e5 = device_event(app, device="d2", channel="state", type_=CONNECTION_TYPE)
        end = marker(app, "end")
        await send_p0(producer, app, e1, e2, e3, e4, e5, end)
        got = {name: await collect_until(ws, end.id) for name, ws in clients.items()}
    finally:
        for ws in clients.values():
            await ws.close()
    assert got["all"] == [e1.id, e2.id, e3.id, e4.id, e5.id]
    assert got["type"] == [e2.id, e5.id]
    assert got["chan_dev"] == [e3.id]
    assert got["via_gw"] == [e4.id]
    assert got["types"] == [e1.id, e3.id, e4.id, e5.id]


async def test_event_is_the_structured_cloudevent(stack: Stack, producer: AIOKafkaProducer, unique: str) -> None:
    app = f"ws-s-{unique}"
    alice = await stack.jwt("alice")
    await stack.create_app(alice, app)
    key = await stack.api_key("alice")
    # browser form of an access token: ?username=&api_key=
    async with connect(f"{stack.ws_url}/{app}?username=alice&api_key={quote(key)}") as ws:
        await synced(producer, app, [ws])
        event = device_event(app, device="dev-1")
        await send_p0(producer, app, event)
        doc = await recv_event(ws)
        while str(doc["id"]).startswith("sync-"):
            doc = await recv_event(ws)
    assert doc["id"] == event.id
    assert doc["specversion"] == "1.0" and doc["type"] == EVENT_TYPE and doc["subject"] == "telemetry"
    assert doc["source"] == f"drogue://{app}/dev%2D1"
    assert doc["datacontenttype"] == "application/json" and doc["data"] == {"temp": 42}
    assert doc["application"] == app and doc["device"] == "dev-1" and doc["sender"] == "dev-1"
    assert str(doc["time"]).endswith("Z")


async def test_group_resumes_after_reconnect(stack: Stack, producer: AIOKafkaProducer, unique: str) -> None:
    app = f"ws-g-{unique}"
    alice = await stack.jwt("alice")
    await stack.create_app(alice, app)
    key = await stack.api_key("alice")
    url = f"{stack.ws_url}/{app}?group_id=g-{unique}"
    async with connect(url, additional_headers=basic("alice", key)) as ws:
        await synced(producer, app, [ws])
        first = device_event(app, device="d1")
        await produce(producer, app_topic(app), first)
        assert await collect_ids(ws, {first.id}) == [first.id]
    # produced while nobody is connected, spread over all partitions (one device key each)
    missed = [device_event(app, device=f"dev{i}") for i in range(12)]
    await produce(producer, app_topic(app), *missed)
    async with connect(url, additional_headers=basic("alice", key)) as ws:
        got = await collect_ids(ws, {e.id for e in missed})
    assert first.id not in got, "an event delivered before the disconnect was committed"
    assert sorted(got) == sorted(e.id for e in missed), "each missed event exactly once"


async def test_jwt_expiry_closes_with_1008(stack: Stack, unique: str) -> None:
    app = f"ws-x-{unique}"
    alice = await stack.jwt("alice")
    await stack.create_app(alice, app)
    short = await stack.jwt("alice", ttl_s=2)
    async with connect(f"{stack.ws_url}/{app}?token={short}") as ws:  # browser form of a JWT
        assert await closed(ws) == (1008, "JWT token expired")


async def test_deleted_access_token_closes_with_1008(stack: Stack, producer: AIOKafkaProducer, unique: str) -> None:
    app = f"ws-r-{unique}"
    alice = await stack.jwt("alice")
    await stack.create_app(alice, app)
    keep, gone = await stack.api_key("alice"), await stack.api_key("alice")
    async with connect(f"{stack.ws_url}/{app}", additional_headers=basic("alice", keep)) as kept, \
            connect(f"{stack.ws_url}/{app}", additional_headers=basic("alice", gone)) as ws:
        async with stack.client(alice) as client:
            r = await client.delete(f"/api/tokens/v1alpha1/{gone[:10]}")
        assert r.status_code == 204, r.text
        assert await closed(ws) == (1008, "Access revoked")
        await synced(producer, app, [kept])  # the session of the other token still streams


async def test_refresh_extends_the_session(stack: Stack, producer: AIOKafkaProducer, unique: str) -> None:
    app = f"ws-r-{unique}"
    alice = await stack.jwt("alice")
    await stack.create_app(alice, app)
    short = await stack.jwt("alice", ttl_s=3)
    exp = pyjwt.decode(short, options={"verify_signature": False})["exp"]
    async with connect(f"{stack.ws_url}/{app}", additional_headers=bearer(short)) as ws:
        await ws.send(orjson.dumps({"RefreshAccessToken": await stack.jwt("alice", ttl_s=600)}).decode())
        # the first token's expiry passes and several expiry checks run; the session stays open
        await eventually(lambda: time.time() > exp + 4 * TOKEN_CHECK_S, 10.0, "the first token to expire")
        await synced(producer, app, [ws])
        assert ws.close_code is None


@pytest.mark.parametrize(
    ("message", "code", "reason"),
    [
        ('{"RefreshAccessToken":"not-a-jwt"}', 1011, "Failed to refresh token: "),
        ("hello", 1002, "invalid JSON"),
        ('{"Subscribe":"x"}', 1002, "unknown variant `Subscribe`"),
        (b'{"RefreshAccessToken":42}', 1002, "RefreshAccessToken: expected a string"),
        ("BOB", 1008, "Failed to refresh token"),
    ],
)
async def test_bad_client_messages_close(stack: Stack, unique: str, message: str | bytes, code: int,
                                         reason: str) -> None:
    app = f"ws-m-{unique}"
    alice = await stack.jwt("alice")
    await stack.create_app(alice, app)
    if message == "BOB":  # a valid JWT of a user without Read on the app
        message = orjson.dumps({"RefreshAccessToken": await stack.jwt("bob")}).decode()
    async with connect(f"{stack.ws_url}/{app}", additional_headers=bearer(alice)) as ws:
        await ws.send(message)
        got_code, got_reason = await closed(ws)
    assert got_code == code
    assert got_reason is not None and got_reason.startswith(reason), got_reason
    if code == 1008:
        assert got_reason == reason


async def test_handshake_refusals(stack: Stack, unique: str) -> None:
    app = f"ws-h-{unique}"
    alice = await stack.jwt("alice")
    await stack.create_app(alice, app)
    bob_key = await stack.api_key("bob")

    async def status(path: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, object]]:
        with pytest.raises(InvalidStatus) as info:
            async with connect(stack.ws_url + path, additional_headers=headers or {}):
                pass
        response = info.value.response
        return response.status_code, orjson.loads(response.body)

    assert await status(f"/{app}") == (404, {"error": "NotFound", "message": f"Not found Application / {app}"})
    assert (await status(f"/{app}", basic("bob", bob_key)))[0] == 404
    assert (await status(f"/nope-{unique}", bearer(alice)))[0] == 404
    code, body = await status(f"/{app}", basic("alice", "drg_AAAAAA_" + "A" * 36))
    assert code == 403 and body["error"] == "AuthenticationError"
    code, body = await status(f"/{app}?token={alice}", bearer(alice))
    assert code == 400 and "More than one way" in str(body["message"])
    code, body = await status(f"/{app}?type=", bearer(alice))
    assert code == 400 and "empty type" in str(body["message"])
    assert (await status("/", bearer(alice)))[0] == 404
    async with httpx.AsyncClient(base_url=stack.ws_url.replace("ws://", "http://"), timeout=10) as client:
        r = await client.get("/health")
    assert r.status_code == 200 and r.json() == {"status": "ok"}


async def test_filtered_out_events_count_as_examined(stack: Stack, producer: AIOKafkaProducer, unique: str) -> None:
    """A group's offsets move past the events its filter dropped: they are not sent again without the filter."""
    app = f"ws-c-{unique}"
    alice = await stack.jwt("alice")
    await stack.create_app(alice, app)
    url = f"{stack.ws_url}/{app}?group_id=gf-{unique}"
    async with connect(f"{url}&type={CONNECTION_TYPE}", additional_headers=bearer(alice)) as ws:
        await synced(producer, app, [ws])
        dropped = device_event(app, device="d1")
        passed = device_event(app, device="d1", channel="connection", type_=CONNECTION_TYPE)
        await send_p0(producer, app, dropped, passed)
        assert await collect_ids(ws, {passed.id}) == [passed.id]
    async with connect(url, additional_headers=bearer(alice)) as ws:
        end = marker(app, "end")
        await send_p0(producer, app, end)
        assert await collect_until(ws, end.id) == []
