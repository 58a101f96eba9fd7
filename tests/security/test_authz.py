"""Authorization across apps and roles, on the real processes, for what tests/registry, tests/integrations and
tests/ingress do not cover already (SECURITY.md lists which test proves which property):

* a device cannot log in to another app with this app's password (MQTT, HTTP, both protocol versions);
* topic and parameter tricks of a device never put an event into another app's stream;
* a device that is not a gateway cannot publish as another device (MQTT 5 PUBACK 0x87, 3.1.1 close);
* a reader member cannot write: no registry PUT (403) or device write, no command (404, as Drogue).
"""

from __future__ import annotations

import httpx
import pytest

from protocols.mqtt import Connect, PubAck, Publish, ReasonCode
from tests.agents.support import EventReader
from tests.ingress.mqtt_support import RawClient
from tests.security.conftest import REGISTRY, Stack
from topology.names import app_topic

pytestmark = [pytest.mark.integration, pytest.mark.slow]


async def test_a_device_cannot_log_in_to_another_app(stack: Stack) -> None:
    _, password_a = stack.device_login("a")
    app_b = stack.apps["b"]
    for version, code in ((4, 4), (5, ReasonCode.BAD_USER_NAME_OR_PASSWORD)):
        for username in (f"dev@{app_b}", f"dev@{stack.apps['a']}@{app_b}", f"dev@{app_b}/../{stack.apps['a']}"):
            client, connack = await RawClient.open(stack.mqtt_port, Connect("x", version, username=username,
                                                                            password=password_a.encode()))
            assert connack.reason_code == code, (username, connack)
            assert await client.closed()
    async with httpx.AsyncClient(base_url=stack.http_url, timeout=10) as http:
        for auth, params in (((f"dev@{app_b}", password_a), {}),
                             (("dev", password_a), {"application": app_b}),
                             ((f"dev@{stack.apps['a']}", password_a), {"application": app_b}),
                             (("dev", password_a), {"application": app_b, "device": "dev"})):
            r = await http.post("/v1/telemetry", params=params, content=b"1", auth=auth)
            assert r.status_code in (401, 403), (auth[0], params, r.status_code, r.text)
    await stack.assert_alive()


async def test_topic_and_parameter_tricks_never_reach_another_app(stack: Stack) -> None:
    app_a, app_b = stack.apps["a"], stack.apps["b"]
    user_a, password_a = stack.device_login("a")
    async with EventReader(stack.bootstrap, app_topic(app_b)) as events_b:
        client, connack = await RawClient.open(stack.mqtt_port, Connect("tricks", 5, username=user_a,
                                                                        password=password_a.encode()))
        assert connack.reason_code == ReasonCode.SUCCESS
        tricks = [f"{app_b}", f"telemetry/{app_b}", f"{app_b}/dev", f"app/{app_b}", f"events-{app_b}",
                  f"telemetry/dev@{app_b}", f"telemetry/..%2F{app_b}"]
        for n, topic in enumerate(tricks, start=1):
            await client.send(Publish(topic, b'{"trick":true}', 1, packet_id=n))
            ack = await client.recv()
            assert isinstance(ack, PubAck) and ack.packet_id == n, (topic, ack)
        client.close()
        async with httpx.AsyncClient(base_url=stack.http_url, timeout=10) as http:
            for path, params in ((f"/v1/{app_b}", {}), ("/v1/telemetry", {"as": f"dev@{app_b}"}),
                                 ("/v1/telemetry", {"as": "dev", "application": app_a})):
                await http.post(path, params=params, content=b"{}", auth=(user_a, password_a))
            # a marker from app b's own device: once it is read, anything sent before it would have been too
            user_b, password_b = stack.device_login("b")
            r = await http.post("/v1/marker", content=b"{}", auth=(user_b, password_b))
            assert r.status_code == 202, r.text
        await events_b.wait(lambda: any(e.subject == "marker" for _, e in events_b.events), 20,
                            "the marker of app b")
        apps = {e.extensions.get("application") for _, e in events_b.events}
        assert apps == {app_b}, apps
        assert not [e for _, e in events_b.events if e.data == b'{"trick":true}']
    await stack.assert_alive()


async def test_a_device_that_is_no_gateway_cannot_publish_as_another(stack: Stack) -> None:
    user, password = stack.device_login("a", "lone")
    for version in (4, 5):
        client, connack = await RawClient.open(stack.mqtt_port, Connect("lone", version, username=user,
                                                                        password=password.encode()))
        assert connack.reason_code == ReasonCode.SUCCESS
        await client.send(Publish("telemetry/child", b"1", 1, packet_id=1))
        answer = await client.recv()
        if version == 5:
            assert isinstance(answer, PubAck) and answer.reason_code == ReasonCode.NOT_AUTHORIZED, answer
            await client.send(Publish("telemetry/dev", b"1", 1, packet_id=2))  # same app, still not its gateway
            answer = await client.recv()
            assert isinstance(answer, PubAck) and answer.reason_code == ReasonCode.NOT_AUTHORIZED, answer
            client.close()
        else:
            assert answer is None, answer  # 3.1.1 has no negative PUBACK: the connection is closed
    async with httpx.AsyncClient(base_url=stack.http_url, timeout=10, auth=(user, password)) as http:
        for target in ("child", "dev", "gw"):
            r = await http.post("/v1/telemetry", params={"as": target}, content=b"1")
            assert r.status_code == 403, (target, r.text)
    # the gateway may (the positive control)
    gw, gw_password = stack.device_login("a", "gw")
    async with httpx.AsyncClient(base_url=stack.http_url, timeout=10, auth=(gw, gw_password)) as http:
        assert (await http.post("/v1/telemetry", params={"as": "child"}, content=b"1")).status_code == 202
    await stack.assert_alive()


async def test_a_reader_member_cannot_write_or_command(stack: Stack) -> None:
    app = stack.apps["a"]
    async with stack.client("bob") as bob, stack.client("alice") as alice:
        bob_id = (await bob.get("/api/user/v1alpha1/whoami")).json()["id"]
        r = await alice.put(f"/api/admin/v1alpha1/apps/{app}/members",
                            json={"members": {bob_id: {"role": "reader"}}})
        assert r.status_code == 204, r.text
        try:
            assert (await bob.get(f"{REGISTRY}/apps/{app}")).status_code == 200  # a reader reads
            current = (await bob.get(f"{REGISTRY}/apps/{app}/devices/dev")).json()
            r = await bob.put(f"{REGISTRY}/apps/{app}", json={"metadata": {"name": app}, "spec": {"x": 1}})
            assert r.status_code == 403, r.text
            r = await bob.put(f"{REGISTRY}/apps/{app}/devices/dev", json=current)
            assert r.status_code in (403, 404), r.text
            assert (await bob.delete(f"{REGISTRY}/apps/{app}/devices/dev")).status_code in (403, 404)
            r = await bob.post(f"/api/command/v1alpha1/apps/{app}/devices/dev", params={"command": "reboot"},
                               content=b"{}")
            # Drogue's answer to a caller without write permission on the app is 404 (existence is not told)
            assert (r.status_code, r.json()["error"]) == (404, "NotFound"), r.text
            # with an API key instead of a JWT: the same
            async with stack.client(None) as anon:
                r = await anon.post(f"/api/command/v1alpha1/apps/{app}/devices/dev", params={"command": "reboot"},
                                    content=b"{}", auth=("bob", stack.api_keys["bob"]))
            assert (r.status_code, r.json()["error"]) == (404, "NotFound"), r.text
            # the owner may (the positive control: 202 accepted, or 404/503 if the device is offline)
            r = await alice.post(f"/api/command/v1alpha1/apps/{app}/devices/dev", params={"command": "reboot"},
                                 content=b"{}")
            assert r.status_code == 202, r.text
        finally:
            await alice.put(f"/api/admin/v1alpha1/apps/{app}/members", json={"members": {}})
