"""Hostile names in every place a name enters: registry URLs and bodies, HTTP endpoint paths and query
parameters, MQTT usernames and topics, WebSocket integration paths. Each gets a clear refusal (HTTP 4xx with a
JSON body, an MQTT reason code, a WebSocket handshake status), never a 500, and no process dies: every test
ends with :meth:`Stack.assert_alive` (all processes run and serve a good device)."""

from __future__ import annotations

import asyncio
import json
from urllib.parse import quote

import httpx
import pytest
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import InvalidStatus

from protocols.mqtt import Connack, Connect, Disconnect, PubAck, Publish, ReasonCode
from tests.ingress.mqtt_support import RawClient
from tests.security.conftest import MAX_PACKET, REGISTRY, Stack

pytestmark = [pytest.mark.integration, pytest.mark.slow]

HOSTILE = ["a/b", "a#b", "a+b", "+", "#", "a\x00b", "..", "../..", "ünï-cødé", "😀", "x" * 10_240, "%2F", " ",
           "a b", "a\nb", "\ud800"]


def _quoted(name: str) -> str:
    """A URL path segment of ``name``; dots too are escaped (a client resolves a bare ``..`` segment)."""
    return quote(name.encode("utf-8", "surrogatepass"), safe="").replace(".", "%2E")


JSON = {"Content-Type": "application/json"}


def _body(name: str) -> str:
    """A JSON body naming ``name`` (escaped: a lone surrogate travels as ``\\ud800``)."""
    return json.dumps({"metadata": {"name": name}})


def _json_error(r: httpx.Response, *statuses: int) -> None:
    assert r.status_code in statuses, (r.request.url, r.status_code, r.text[:300])
    if r.status_code >= 400 and r.request.method != "HEAD":
        assert "error" in r.json() or "detail" in r.json(), r.text[:300]


async def test_registry_app_names(stack: Stack) -> None:
    async with stack.client() as api:
        for name in HOSTILE:
            r = await api.post(f"{REGISTRY}/apps", content=_body(name), headers=JSON)
            _json_error(r, 400)
            assert "name" in r.json()["message"], r.text
            for method in ("GET", "PUT", "DELETE"):
                body = _body(name) if method == "PUT" else None
                r = await api.request(method, f"{REGISTRY}/apps/{_quoted(name)}", content=body, headers=JSON)
                _json_error(r, 400, 404)
            _json_error(await api.get(f"{REGISTRY}/apps/{_quoted(name)}/devices"), 400, 404)
    await stack.assert_alive()


async def test_registry_device_names(stack: Stack) -> None:
    app = stack.apps["a"]
    async with stack.client("alice") as api:
        for name in HOSTILE:
            r = await api.post(f"{REGISTRY}/apps/{app}/devices", content=_body(name), headers=JSON)
            data = name.encode("utf-8", "surrogatepass")
            if len(data) > 255 or "\x00" in name or "\n" in name or name == "\ud800":
                _json_error(r, 400)
                _json_error(await api.get(f"{REGISTRY}/apps/{app}/devices/{_quoted(name)}"), 400, 404)
                continue
            # Drogue allows any other non-empty name up to 255 bytes: it round-trips exactly
            assert r.status_code == 201, (name, r.text)
            got = await api.get(f"{REGISTRY}/apps/{app}/devices/{_quoted(name)}")
            assert got.status_code == 200 and got.json()["metadata"]["name"] == name, (name, got.text)
            assert (await api.delete(f"{REGISTRY}/apps/{app}/devices/{_quoted(name)}")).status_code == 204
        # an app name that is not an app, with a hostile device part
        for name in HOSTILE[:4]:
            _json_error(await api.get(f"{REGISTRY}/apps/no-such-app/devices/{_quoted(name)}"), 404)
    await stack.assert_alive()


async def test_http_endpoint_paths_and_params(stack: Stack) -> None:
    user, password = stack.device_login("a")
    async with httpx.AsyncClient(base_url=stack.http_url, timeout=10, auth=(user, password)) as http:
        for channel in ("a%2Fb", "a%23b", "a+b", "%00", "..", "%2E%2E", "%C3%BC", "%F0%9F%98%80", "%FF%FE",
                        "%ED%A0%80"):
            r = await http.post(f"/v1/{channel}", content=b"1")
            # a channel is any path segment (percent-decoded); one that is not UTF-8 is a clear 400; a `..`
            # segment is resolved by the client (RFC 3986) and hits no route
            assert r.status_code in (202, 400, 404), (channel, r.status_code, r.text)
            assert r.status_code != 404 or ".." in channel or "%2E" in channel, channel
        r = await http.post("/v1/" + "c" * 10_240, content=b"1")
        assert r.status_code in (202, 400, 414), r.text[:200]
        r = await http.post("/v1/" + "c" * 60_000, content=b"1")
        # no limit of its own: the channel is bounded by the URL limit of the server, like an MQTT topic by the
        # packet limit
        assert r.status_code in (202, 400, 414, 431), r.text[:200]
        for params in ({"as": "a\x00b"}, {"as": "x" * 10_240}, {"as": "../dev"}, {"application": "a/b"},
                       {"device": "\x00"}, {"ct": "1e400"}, {"ct": "-1"}, {"ct": "x" * 1000}):
            r = await http.post("/v1/telemetry", params=params, content=b"1")
            assert 400 <= r.status_code < 500, (params, r.status_code, r.text)
        for login in [("a\x00b@app", "x"), ("x" * 10_240 + "@" + "y" * 10_240, "p"), ("@", ""), ("dev@a/b", "p"),
                      ("dev@" + stack.apps["a"] + "\x00", password)]:
            r = await http.post("/v1/telemetry", content=b"1", auth=login)
            assert r.status_code in (401, 403), (login[0][:40], r.status_code, r.text)
    await stack.assert_alive()


async def _connack(stack: Stack, username: str | None, password: bytes | None, version: int,
                   client_id: str = "c") -> int | None:
    """The CONNACK code of a refused CONNECT (None: closed without CONNACK); the connection is closed."""
    reader, writer = await asyncio.open_connection("127.0.0.1", stack.mqtt_port)
    client = RawClient(reader, writer, version)
    await client.send(Connect(client_id, version, username=username, password=password))
    connack = await client.recv()
    assert connack is None or isinstance(connack, Connack), connack
    assert await client.closed(), "a refused connection is closed"
    return None if connack is None else connack.reason_code


async def test_mqtt_usernames(stack: Stack) -> None:
    user, password = stack.device_login("a")
    app = stack.apps["a"]
    for version in (4, 5):
        bad_login = ReasonCode.BAD_USER_NAME_OR_PASSWORD if version == 5 else 4
        for username in ("dev@a/b", "dev@#", "dev@+", "+@" + app, "#@" + app, "dev/..@" + app, "..@..",
                         "ünï@cødé", "x" * 10_240 + "@" + app, "dev@" + "y" * 10_240, "@", "dev@", "@" + app):
            code = await _connack(stack, username, password.encode(), version)
            if len(username) > MAX_PACKET:  # CONNECT larger than the endpoint's packet limit
                assert code in ((ReasonCode.PACKET_TOO_LARGE, None) if version == 5 else (None,)), code
            else:
                assert code == bad_login, (username, code)
        # client ids with wildcards or of 10 kB are just ids: the device authenticates by its username
        client, connack = await RawClient.open(stack.mqtt_port, Connect("#/+" * 1000, version, username=user,
                                                                        password=password.encode()))
        assert connack.reason_code == ReasonCode.SUCCESS
        client.close()
    await stack.assert_alive()


async def test_mqtt_nul_in_username_is_a_protocol_error(stack: Stack) -> None:
    """MQTT strings must not hold U+0000: the codec refuses the CONNECT (5: CONNACK 0x81; 3.1.1: close)."""
    user, password = stack.device_login("a")
    for version in (4, 5):
        reader, writer = await asyncio.open_connection("127.0.0.1", stack.mqtt_port)
        from protocols.mqtt import encode

        raw = encode(Connect("c", version, username="dev@x", password=password.encode()), version)
        raw = raw.replace(b"dev@x", b"d\x00v@x")
        writer.write(raw)
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(1024), 10)
        if version == 5 and answer:
            assert answer[0] == 0x20 and answer[3] == ReasonCode.MALFORMED_PACKET, answer
        assert await asyncio.wait_for(reader.read(1024), 10) == b""
        writer.close()
    del user
    await stack.assert_alive()


async def test_mqtt_publish_topics(stack: Stack) -> None:
    user, password = stack.device_login("a")
    client, connack = await RawClient.open(stack.mqtt_port, Connect("topics", 5, username=user,
                                                                    password=password.encode()))
    assert connack.reason_code == ReasonCode.SUCCESS
    topics = ["a/#", "+", "#", "telemetry/+/x", "../..", "ünïcødé", "😀", "x" * 3000, "//", "/", "a//b",
              f"{stack.apps['b']}/dev", "telemetry/../../b"]
    codes: dict[str, int] = {}
    for n, topic in enumerate(topics, start=1):
        await client.send(Publish(topic, b"1", 1, packet_id=n))
        answer = await client.recv()
        if isinstance(answer, Disconnect):  # a wildcard in a topic name is malformed: the connection ends
            assert "#" in topic or "+" in topic, (topic, answer)
            assert answer.reason_code in (ReasonCode.TOPIC_NAME_INVALID, ReasonCode.MALFORMED_PACKET,
                                          ReasonCode.PROTOCOL_ERROR), answer
            assert await client.closed()
            client, connack = await RawClient.open(stack.mqtt_port, Connect("topics", 5, username=user,
                                                                            password=password.encode()))
            codes[topic] = answer.reason_code
            continue
        assert isinstance(answer, PubAck) and answer.packet_id == n, (topic, answer)
        codes[topic] = answer.reason_code
    client.close()
    for topic, code in codes.items():
        assert code in (ReasonCode.SUCCESS, ReasonCode.TOPIC_NAME_INVALID, ReasonCode.NOT_AUTHORIZED,
                        ReasonCode.PROTOCOL_ERROR, ReasonCode.MALFORMED_PACKET), (topic, code)
    await stack.assert_alive()


async def test_websocket_integration_paths(stack: Stack) -> None:
    token = stack.jwts["alice"]
    app = stack.apps["a"]

    async def status(path: str) -> int:
        sep = "&" if "?" in path else "?"
        try:
            async with ws_connect(f"{stack.ws_url}{path}{sep}token={token}", open_timeout=10,
                                  max_size=2**20):
                return 101
        except InvalidStatus as exc:
            return exc.response.status_code

    for path in ("/a%2Fb", "/%23", "/+", "/%00", "/..", "/%2E%2E", "/%C3%BC", "/%FF", "/" + "x" * 10_240,
                 "/a/b/c", f"/{stack.apps['b']}", f"/{app}?group_id=" + "g" * 10_240):
        code = await status(path)
        assert 400 <= code < 500, (path[:60], code)
    # odd but harmless parameters of one's own app: accepted or refused, never a crash
    for path in (f"/{app}?group_id=%00", f"/{app}?group_id=%2B%23", f"/{app}?filter=" + "x" * 4000,
                 f"/{app}?type=%00&channel=%23"):
        assert (await status(path)) in (101, 400), path[:60]
    await stack.assert_alive()
