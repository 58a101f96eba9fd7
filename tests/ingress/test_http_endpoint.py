"""Component tests of the HTTP endpoint: the ASGI app via httpx, a fake authenticator, a recording sink."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import orjson
import pytest

from ingress.http import HttpEndpoint, Resources
from ingress.metrics import IngressMetrics
from ingress.publish import PublishUnavailable, QueueFull
from schemas.auth import PassCredential, UserCredential
from tests.ingress.fakes import FakeAuthenticator, FakeDevice, RecordingSink

FORBIDDEN = {"code": 403, "error": "AuthenticationError", "message": "Authentication failed"}
LIMIT = 1024


def basic(user: str, password: str | None = None) -> dict[str, str]:
    raw = user if password is None else f"{user}:{password}"
    return {"Authorization": "Basic " + base64.b64encode(raw.encode()).decode()}


def devices() -> list[FakeDevice]:
    return [
        FakeDevice("my-app", "dev-1", "secret", user=("alice", "pw-a")),
        FakeDevice("my-app", "gw", "gw-secret"),
        FakeDevice("my-app", "child", "x", gateways=("gw",)),
        FakeDevice("my-app", "off", "secret", disabled=True),
        FakeDevice("my-app", "dev@odd", "secret"),
        FakeDevice("not-ready", "dev-1", "secret", topic_ready=False),
    ]


class Env:
    def __init__(self) -> None:
        self.auth = FakeAuthenticator(devices())
        self.sink = RecordingSink()
        self.metrics = IngressMetrics("http")
        self.app = HttpEndpoint(instance="kedge-test", max_payload_bytes=LIMIT, max_command_timeout_s=60,
                                metrics=self.metrics, ready=Resources(self.auth, self.sink))
        self.client = httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app), base_url="http://test")

    @property
    def event(self):  # type: ignore[no-untyped-def]
        assert len(self.sink.events) == 1, self.sink.events
        return self.sink.events[0]


@pytest.fixture
async def env() -> AsyncIterator[Env]:
    e = Env()
    async with e.client:
        yield e


async def test_root_answers_success(env: Env) -> None:
    r = await env.client.get("/")
    assert r.status_code == 200
    assert r.json() == {"success": True}


# ------------------------------------------------------------------------------------------ auth forms


async def test_scoped_device_password(env: Env) -> None:
    r = await env.client.post("/v1/telemetry", content=b'{"temp": 42}', headers=basic("dev-1@my-app",
                                                                                        "secret"))
    assert r.status_code == 202, r.text
    assert r.content == b""
    assert env.auth.calls == [("my-app", "dev-1", PassCredential("secret"))]
    e = env.event
    assert e.source == "drogue://my-app/dev%2D1"
    assert e.subject == "telemetry"
    assert e.datacontenttype == "application/json"
    assert e.data == b'{"temp":42}'
    assert e.dataschema is None
    assert e.extensions == {
        "application": "my-app", "applicationuid": "uid-app-my-app", "device": "dev-1",
        "deviceuid": "uid-dev-dev-1", "sender": "dev-1", "senderuid": "uid-dev-dev-1",
        "partitionkey": "my%2Dapp/dev%2D1", "instance": "kedge-test",
    }


async def test_device_password_with_application_param(env: Env) -> None:
    r = await env.client.post("/v1/telemetry", params={"application": "my-app"}, content=b"1",
                              headers=basic("dev-1", "secret"))
    assert r.status_code == 202, r.text
    assert env.auth.calls == [("my-app", "dev-1", PassCredential("secret"))]


async def test_username_with_application_and_device_params(env: Env) -> None:
    r = await env.client.post("/v1/telemetry", params={"application": "my-app", "device": "dev-1"},
                              content=b"1", headers=basic("alice", "pw-a"))
    assert r.status_code == 202, r.text
    assert env.auth.calls == [("my-app", "dev-1", UserCredential("alice", "pw-a"))]
    assert env.event.sender == "dev-1"


async def test_scoped_username_with_device_param(env: Env) -> None:
    r = await env.client.post("/v1/telemetry", params={"device": "dev-1"}, content=b"1",
                              headers=basic("alice@my-app", "pw-a"))
    assert r.status_code == 202, r.text
    assert env.auth.calls == [("my-app", "dev-1", UserCredential("alice", "pw-a"))]


async def test_scoped_device_is_percent_decoded(env: Env) -> None:
    r = await env.client.post("/v1/t", content=b"1", headers=basic("dev%40odd@my-app", "secret"))
    assert r.status_code == 202, r.text
    assert env.auth.calls[0][:2] == ("my-app", "dev@odd")


async def test_unscoped_name_with_application_is_kept_as_given(env: Env) -> None:
    """§17 fix of 14.5: `dev@app` with ?application= is the device id `dev@app`, not reversed."""
    r = await env.client.post("/v1/t", params={"application": "my-app"}, content=b"1",
                              headers=basic("dev@odd", "secret"))
    assert r.status_code == 202, r.text
    assert env.auth.calls[0][:2] == ("my-app", "dev@odd")


@pytest.mark.parametrize(
    ("headers", "params"),
    [
        ({}, {}),  # no credentials at all
        (basic("dev-1@my-app", "wrong"), {}),  # wrong password
        (basic("dev-1@no-such-app", "secret"), {}),  # unknown app
        (basic("nobody@my-app", "secret"), {}),  # unknown device
        (basic("off@my-app", "secret"), {}),  # disabled device
        (basic("dev-1@my-app"), {}),  # no password
        (basic("dev-1", "secret"), {}),  # unscoped without ?application=
        (basic("alice", "pw-a"), {"device": "dev-1"}),  # unscoped user with only ?device=
        ({"Authorization": "Basic !!!not-base64"}, {}),
        ({"Authorization": "Bearer abc.def.ghi"}, {}),
        ({"Authorization": "Basic " + base64.b64encode(b"\xff\xfe:x").decode()}, {}),  # not UTF-8
    ],
    ids=["none", "wrong-password", "unknown-app", "unknown-device", "disabled", "no-password", "unscoped",
         "user-without-app", "bad-base64", "bearer", "not-utf8"],
)
async def test_authentication_failures_are_403(
    env: Env, headers: dict[str, str], params: dict[str, str]
) -> None:
    r = await env.client.post("/v1/telemetry", params=params, content=b"{}", headers=headers)
    assert r.status_code == 403
    assert r.json() == FORBIDDEN
    assert env.sink.events == []


async def test_registry_down_is_503(env: Env) -> None:
    env.auth.down = True
    r = await env.client.post("/v1/telemetry", content=b"{}", headers=basic("dev-1@my-app", "secret"))
    assert r.status_code == 503
    assert r.json()["error"] == "ServiceUnavailable"
    assert r.headers["retry-after"] == "1"


# ------------------------------------------------------------------------------------------ on behalf (as)


async def test_gateway_publishes_as_device(env: Env) -> None:
    r = await env.client.post("/v1/telemetry", params={"as": "child"}, content=b"{}",
                              headers=basic("gw@my-app", "gw-secret"))
    assert r.status_code == 202, r.text
    e = env.event
    assert (e.device, e.sender, e.partitionkey) == ("child", "gw", "my%2Dapp/gw")
    assert e.source == "drogue://my-app/child"
    assert e.extensions["deviceuid"] == "uid-dev-child"
    assert e.extensions["senderuid"] == "uid-dev-gw"


async def test_as_refused_is_403(env: Env) -> None:
    r = await env.client.post("/v1/telemetry", params={"as": "child"}, content=b"{}",
                              headers=basic("dev-1@my-app", "secret"))
    assert r.status_code == 403
    assert r.json() == FORBIDDEN
    assert env.auth.as_calls == [("dev-1", "child")]


async def test_as_self_needs_no_authorization(env: Env) -> None:
    r = await env.client.post("/v1/telemetry", params={"as": "dev-1"}, content=b"{}",
                              headers=basic("dev-1@my-app", "secret"))
    assert r.status_code == 202
    assert env.auth.as_calls == []


# ------------------------------------------------------------------------------------------ payloads


@pytest.mark.parametrize("content_type", ["application/json", "text/json", "application/vnd.foo+json"])
async def test_invalid_json_is_406_with_empty_body(env: Env, content_type: str) -> None:
    r = await env.client.post("/v1/telemetry", content=b"{not json", headers={
        **basic("dev-1@my-app", "secret"), "Content-Type": content_type})
    assert r.status_code == 406
    assert r.content == b""
    assert env.sink.events == []


async def test_content_type_rules(env: Env) -> None:
    auth = basic("dev-1@my-app", "secret")
    await env.client.post("/v1/a", content=b"\x00\x01", headers=auth)
    await env.client.post("/v1/b", content=b'{ "a" : 1 }', headers={**auth, "Content-Type": "text/json"})
    await env.client.post("/v1/c", content=b"{bad", headers={**auth, "Content-Type": "text/plain"})
    got = [(e.subject, e.datacontenttype, e.data) for e in env.sink.events]
    assert got == [("a", "application/octet-stream", b"\x00\x01"), ("b", "application/json", b'{"a":1}'),
                   ("c", "text/plain", b"{bad")]


async def test_oversized_content_length_is_413_before_authentication(env: Env) -> None:
    r = await env.client.post("/v1/telemetry", content=b"x" * (LIMIT + 1),
                              headers=basic("dev-1@my-app", "secret"))
    assert r.status_code == 413
    assert r.json()["error"] == "PayloadTooLarge"
    assert env.auth.calls == []


async def test_payload_at_the_limit_is_accepted(env: Env) -> None:
    r = await env.client.post("/v1/telemetry", content=b"x" * LIMIT, headers=basic("dev-1@my-app", "secret"))
    assert r.status_code == 202


async def test_oversized_chunked_body_is_413_without_reading_it_all(env: Env) -> None:
    sent = 0

    async def chunks() -> AsyncIterator[bytes]:
        nonlocal sent
        for _ in range(100):
            sent += 1
            yield b"y" * 256

    r = await env.client.post("/v1/telemetry", content=chunks(), headers=basic("dev-1@my-app", "secret"))
    assert r.status_code == 413
    assert sent <= LIMIT // 256 + 1
    assert env.sink.events == []


async def test_chunked_body_within_the_limit_is_joined(env: Env) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for part in (b'{"a":', b" 1", b"}"):
            yield part

    r = await env.client.post("/v1/telemetry", content=chunks(), headers=basic("dev-1@my-app", "secret"))
    assert r.status_code == 202
    assert env.event.data == b'{"a":1}'


# ------------------------------------------------------------------------------------------ paths, params


async def test_suffix_is_ignored_and_data_schema_set(env: Env) -> None:
    r = await env.client.post("/v1/telemetry/some/sub/path", params={"data_schema": "urn:temp"}, content=b"1",
                              headers=basic("dev-1@my-app", "secret"))
    assert r.status_code == 202
    assert (env.event.subject, env.event.dataschema) == ("telemetry", "urn:temp")


async def test_channel_is_percent_decoded(env: Env) -> None:
    r = await env.client.post("/v1/a%2Fb%20c/x", content=b"1", headers=basic("dev-1@my-app", "secret"))
    assert r.status_code == 202
    assert env.event.subject == "a/b c"


@pytest.mark.parametrize("params", [{"ct": "5"}, {"commandTimeout": "3"}, {"ct": "0"}])
async def test_command_timeout_is_accepted_without_waiting(env: Env, params: dict[str, str]) -> None:
    r = await asyncio.wait_for(env.client.post("/v1/telemetry", params=params, content=b"1",
                                               headers=basic("dev-1@my-app", "secret")), 2)
    assert r.status_code == 202


@pytest.mark.parametrize("query", ["ct=abc", "ct=-1", "ct=1.5", "ct=61", "ct=1&commandTimeout=2", "ct=",
                                   "device=a&device=b", "application=%ff"])
async def test_bad_query_is_400(env: Env, query: str) -> None:
    r = await env.client.post("/v1/telemetry?" + query, content=b"1", headers=basic("dev-1@my-app", "secret"))
    assert r.status_code == 400
    assert r.json()["error"] == "BadRequest"
    assert env.sink.events == []


@pytest.mark.parametrize(("method", "path", "status"),
                         [("GET", "/v1/telemetry", 405), ("POST", "/v1/", 404), ("POST", "/v2/x", 404),
                          ("GET", "/nope", 404)])
async def test_unknown_routes(env: Env, method: str, path: str, status: int) -> None:
    r = await env.client.request(method, path, headers=basic("dev-1@my-app", "secret"))
    assert r.status_code == status
    assert "error" in r.json()


# ------------------------------------------------------------------------------------------ publish outcomes


@pytest.mark.parametrize("failure", [QueueFull("full"), PublishUnavailable("kafka down")])
async def test_publish_failures_are_503(env: Env, failure: Exception) -> None:
    env.sink.fail = failure
    r = await env.client.post("/v1/telemetry", content=b"1", headers=basic("dev-1@my-app", "secret"))
    assert r.status_code == 503
    assert r.json()["error"] == "ServiceUnavailable"


async def test_topic_not_ready_is_503(env: Env) -> None:
    r = await env.client.post("/v1/telemetry", content=b"1", headers=basic("dev-1@not-ready", "secret"))
    assert r.status_code == 503
    assert "not ready" in r.json()["message"]


async def test_unexpected_error_is_500_without_details(env: Env, caplog: pytest.LogCaptureFixture) -> None:
    env.sink.fail = RuntimeError("secret internals")
    r = await env.client.post("/v1/telemetry", content=b"1", headers=basic("dev-1@my-app", "secret"))
    assert r.status_code == 500
    assert r.json() == {"error": "InternalError", "message": "Internal server error"}
    assert "secret internals" not in r.text
    assert "secret internals" in caplog.text  # logged server-side


async def test_not_started_is_503() -> None:
    app = HttpEndpoint(instance="i", max_payload_bytes=10, max_command_timeout_s=1,
                       metrics=IngressMetrics("http"))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        r = await client.post("/v1/x", content=b"1", headers=basic("dev-1@my-app", "secret"))
    assert r.status_code == 503


# ------------------------------------------------------------------------------------------ metrics


async def test_metrics(env: Env) -> None:
    auth = basic("dev-1@my-app", "secret")
    await env.client.post("/v1/t", content=b"1", headers=basic("dev-1@my-app", "wrong"))
    await env.client.post("/v1/t", content=b"1")
    await env.client.post("/v1/t", content=b"{", headers={**auth, "Content-Type": "application/json"})
    await env.client.post("/v1/t", content=b"1", headers=auth)
    r = await env.client.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    text = r.text
    assert 'kedge_auth_failures_total{endpoint="http",reason="fail"} 1.0' in text
    assert 'kedge_auth_failures_total{endpoint="http",reason="missing"} 1.0' in text
    assert 'kedge_downstream_events_total{endpoint="http",outcome="rejected"} 1.0' in text
    assert 'kedge_request_duration_seconds_count{endpoint="http"} 4.0' in text


# ------------------------------------------------------------------------------------------ lifespan


async def test_lifespan_builds_and_closes_resources_once() -> None:
    log: list[str] = []
    auth, sink = FakeAuthenticator(devices()), RecordingSink()

    @asynccontextmanager
    async def resources() -> AsyncIterator[Resources]:
        log.append("enter")
        yield Resources(auth, sink)
        log.append("exit")

    app = HttpEndpoint(instance="i", max_payload_bytes=LIMIT, max_command_timeout_s=1,
                       metrics=IngressMetrics("http"), resources=resources,
                       on_ready=lambda: log.append("ready"))
    inbox: asyncio.Queue[dict[str, object]] = asyncio.Queue()
    outbox: asyncio.Queue[dict[str, object]] = asyncio.Queue()
    task = asyncio.create_task(app({"type": "lifespan"}, inbox.get, outbox.put))  # type: ignore[arg-type]
    await inbox.put({"type": "lifespan.startup"})
    assert (await asyncio.wait_for(outbox.get(), 5))["type"] == "lifespan.startup.complete"
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        for _ in range(3):
            r = await client.post("/v1/x", content=b"1", headers=basic("dev-1@my-app", "secret"))
            assert r.status_code == 202
    await inbox.put({"type": "lifespan.shutdown"})
    assert (await asyncio.wait_for(outbox.get(), 5))["type"] == "lifespan.shutdown.complete"
    await asyncio.wait_for(task, 5)
    assert log == ["enter", "ready", "exit"]
    assert len(sink.events) == 3


async def test_lifespan_startup_failure_is_reported() -> None:
    @asynccontextmanager
    async def resources() -> AsyncIterator[Resources]:
        raise RuntimeError("no database")
        yield  # pragma: no cover

    app = HttpEndpoint(instance="i", max_payload_bytes=LIMIT, max_command_timeout_s=1,
                       metrics=IngressMetrics("http"), resources=resources)
    inbox: asyncio.Queue[dict[str, object]] = asyncio.Queue()
    outbox: asyncio.Queue[dict[str, object]] = asyncio.Queue()
    task = asyncio.create_task(app({"type": "lifespan"}, inbox.get, outbox.put))  # type: ignore[arg-type]
    await inbox.put({"type": "lifespan.startup"})
    message = await asyncio.wait_for(outbox.get(), 5)
    assert message["type"] == "lifespan.startup.failed"
    assert "no database" in str(message["message"])
    await asyncio.wait_for(task, 5)


def test_body_of_403_is_exactly_drogues() -> None:
    from ingress.http.app import FORBIDDEN as RESPONSE

    assert orjson.loads(RESPONSE.body) == FORBIDDEN


async def test_tls_client_certificate_reaches_the_authenticator_as_der(env: Env) -> None:
    """Structure for the TLS issue: the ASGI TLS extension's PEM chain becomes a CertCredential (DER)."""
    import ssl

    import trustme

    from schemas.auth import CertCredential

    ca = trustme.CA()
    leaf = ca.issue_cert("dev-1")
    pem = leaf.cert_chain_pems[0].bytes().decode()
    scope = {"type": "http", "method": "POST", "path": "/v1/telemetry", "raw_path": b"/v1/telemetry",
             "query_string": b"", "headers": [], "extensions": {"tls": {"client_cert_chain": [pem]}}}
    sent: list[dict[str, object]] = []

    async def receive() -> dict[str, object]:
        return {"type": "http.request", "body": b"1", "more_body": False}

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    await env.app(scope, receive, send)  # type: ignore[arg-type]
    assert sent[0]["status"] == 403  # the fake knows no certificates
    assert env.auth.calls == [("", "", CertCredential((ssl.PEM_cert_to_DER_cert(pem),)))]
