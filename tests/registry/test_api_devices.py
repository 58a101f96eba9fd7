"""Device routes of ``/api/registry/v1alpha1`` (reference §8), on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

import pytest

from tests.registry.conftest import Api

BASE = "/api/registry/v1alpha1"

pytestmark = pytest.mark.integration

#: the device example of Drogue's docs, with every credential kind and password form
DROGUE_DEVICE: dict[str, Any] = {
    "metadata": {"name": "device1", "labels": {"room": "kitchen"}},
    "spec": {
        "credentials": {"credentials": [
            {"pass": "foobar"},
            {"pass": {"plain": "foobar2"}},
            {"pass": {"bcrypt": "$2a$12$tTk9b0SGBjMKCA1EHbR5/O1p0oTHQeE.Y/WdxASeMNz7pW9cEXyAW"}},
            {"pass": {"sha512": "$6$rounds=10000$saltstringsaltst$OW1/O6BYHV6BcXZu8QVeXbDWra3Oeqh0sbHbbMCVNSnCM"
                                "/UrjmM0Dp8vOuZeHBy/YTBmSK6H9qs/y3RnOaw5v."}},
            {"user": {"username": "foo", "password": "bar", "unique": True}},
            {"cert": "CN=device1"},
        ]},
        "gatewaySelector": {"matchNames": ["gw1"]},
        "alias": ["dev-one", "ALIAS/1"],
        "core": {"disabled": False},
        "mqtt": {"dialect": {"type": "drogue/v1"}},
        "firmware": {"container": {"image": "x"}},
    },
}


def _err(response: Any, status: int, kind: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert body["error"] == kind, body
    return body


async def _app(api: Api, unique: str, prefix: str = "dev") -> str:
    name = f"{prefix}-{unique}"
    r = await api.alice.post(f"{BASE}/apps", json={"metadata": {"name": name}})
    assert r.status_code == 201, r.text
    return name


async def test_device_crud(api: Api, unique: str) -> None:
    app = await _app(api, unique)
    r = await api.alice.post(f"{BASE}/apps/{app}/devices", json=DROGUE_DEVICE)
    assert r.status_code == 201, r.text
    assert r.headers["location"] == f"{BASE}/apps/{app}/devices/device1"
    got = (await api.alice.get(f"{BASE}/apps/{app}/devices/device1")).json()
    assert got["metadata"]["application"] == app and got["metadata"]["generation"] == 1
    assert got["spec"] == DROGUE_DEVICE["spec"]  # passwords kept as given

    got["spec"]["core"] = {"disabled": True}
    assert (await api.alice.put(f"{BASE}/apps/{app}/devices/device1", json=got)).status_code == 204
    after = (await api.alice.get(f"{BASE}/apps/{app}/devices/device1")).json()
    assert after["metadata"]["generation"] == 2
    after["metadata"]["labels"] = {}
    assert (await api.alice.put(f"{BASE}/apps/{app}/devices/device1", json=after)).status_code == 204
    assert (await api.alice.get(f"{BASE}/apps/{app}/devices/device1")).json()["metadata"]["generation"] == 2

    assert (await api.alice.delete(f"{BASE}/apps/{app}/devices/device1")).status_code == 204
    _err(await api.alice.get(f"{BASE}/apps/{app}/devices/device1"), 404, "NotFound")
    _err(await api.alice.delete(f"{BASE}/apps/{app}/devices/device1"), 404, "NotFound")


async def test_device_bad_inputs(api: Api, unique: str) -> None:
    app = await _app(api, unique)
    url = f"{BASE}/apps/{app}/devices"
    _err(await api.alice.post(url, json={"metadata": {"name": ""}}), 400, "BadRequest")
    _err(await api.alice.post(url, json={"metadata": {"name": "x" * 256}}), 400, "BadRequest")
    _err(await api.alice.post(url, json={"metadata": {"name": "é" * 128}}), 400, "BadRequest")  # 256 bytes
    assert (await api.alice.post(url, json={"metadata": {"name": "x" * 255}})).status_code == 201
    _err(await api.alice.post(url, json={"metadata": {"name": "a", "application": "other"}}), 400, "BadRequest")
    r = await api.alice.post(url, json={"metadata": {"name": "a"},
                                        "spec": {"credentials": {"credentials": [{"pass_word": "x"}]}}})
    assert "spec.credentials" in _err(r, 400, "BadRequest")["message"]
    r = await api.alice.post(url, json={"metadata": {"name": "a"}, "spec": {"alias": "not-a-list"}})
    assert "spec.alias" in _err(r, 400, "BadRequest")["message"]
    r = await api.alice.post(url, json={"metadata": {"name": "a"}, "spec": {"gatewaySelector": {"names": []}}})
    assert "gatewaySelector.names: unknown field" in _err(r, 400, "BadRequest")["message"]
    r = await api.alice.post(url, json={"metadata": {"name": "a", "colour": "red"}})
    assert "metadata.colour: unknown field" in _err(r, 400, "BadRequest")["message"]
    _err(await api.alice.post(f"{BASE}/apps/missing-{unique}/devices", json={"metadata": {"name": "a"}}),
         404, "ReferenceNotFound")
    _err(await api.alice.get(f"{BASE}/apps/missing-{unique}/devices"), 404, "NotFound")
    _err(await api.alice.get(f"{BASE}/apps/missing-{unique}/devices/a"), 404, "NotFound")
    assert (await api.alice.post(url, json={"metadata": {"name": "a"}})).status_code == 201
    _err(await api.alice.post(url, json={"metadata": {"name": "a"}}), 409, "Conflict")
    _err(await api.alice.put(f"{url}/a", json={"metadata": {"name": "b"}}), 400, "BadRequest")
    _err(await api.alice.put(f"{url}/zz", json={"metadata": {"name": "zz"}}), 404, "NotFound")


async def test_alias_and_username_uniqueness(api: Api, unique: str) -> None:
    app = await _app(api, unique)
    url = f"{BASE}/apps/{app}/devices"
    one = {"metadata": {"name": "one"}, "spec": {"alias": ["shared"], "credentials": {"credentials": [
        {"user": {"username": "u1", "password": "p", "unique": True}}]}}}
    assert (await api.alice.post(url, json=one)).status_code == 201
    r = await api.alice.post(url, json={"metadata": {"name": "two"}, "spec": {"alias": ["shared"]}})
    assert _err(r, 409, "Conflict")["message"] == "Unique key violation"
    r = await api.alice.post(url, json={"metadata": {"name": "two"}, "spec": {"credentials": {"credentials": [
        {"user": {"username": "u1", "password": "q", "unique": True}}]}}})
    _err(r, 409, "Conflict")
    # a non-unique username may repeat; after "one" drops its alias, "two" may take it
    r = await api.alice.post(url, json={"metadata": {"name": "two"}, "spec": {"credentials": {"credentials": [
        {"user": {"username": "u1", "password": "q"}}]}}})
    assert r.status_code == 201, r.text
    got = (await api.alice.get(f"{url}/one")).json()
    got["spec"]["alias"] = []
    assert (await api.alice.put(f"{url}/one", json=got)).status_code == 204
    two = (await api.alice.get(f"{url}/two")).json()
    two["spec"]["alias"] = ["shared"]
    assert (await api.alice.put(f"{url}/two", json=two)).status_code == 204
    # the same alias in another app is fine
    other = await _app(api, unique, "dev-other")
    assert (await api.alice.post(f"{BASE}/apps/{other}/devices", json=one)).status_code == 201


async def test_device_locking_and_preconditions(api: Api, unique: str) -> None:
    app = await _app(api, unique)
    url = f"{BASE}/apps/{app}/devices"
    await api.alice.post(url, json={"metadata": {"name": "d"}})
    got = (await api.alice.get(f"{url}/d")).json()
    got["metadata"]["labels"] = {"x": "1"}
    assert (await api.alice.put(f"{url}/d", json=got)).status_code == 204
    got["metadata"]["labels"] = {"x": "2"}
    _err(await api.alice.put(f"{url}/d", json=got), 409, "Conflict")  # stale resourceVersion
    _err(await api.alice.request("DELETE", f"{url}/d", json={"preconditions": {"uid": "nope"}}), 409, "Conflict")
    _err(await api.alice.delete(f"{url}/d", params={"resourceVersion": got["metadata"]["resourceVersion"]}),
         409, "Conflict")
    current = (await api.alice.get(f"{url}/d")).json()["metadata"]
    r = await api.alice.request("DELETE", f"{url}/d", json={"preconditions": {
        "uid": current["uid"], "resourceVersion": current["resourceVersion"]}})
    assert r.status_code == 204


async def test_device_finalizers(api: Api, unique: str) -> None:
    app = await _app(api, unique)
    url = f"{BASE}/apps/{app}/devices"
    await api.alice.post(url, json={"metadata": {"name": "d", "finalizers": ["a", "b"]}})
    assert (await api.alice.delete(f"{url}/d")).status_code == 204
    got = (await api.alice.get(f"{url}/d")).json()
    assert "deletionTimestamp" in got["metadata"]
    _err(await api.alice.delete(f"{url}/d"), 404, "NotFound")
    got["metadata"]["finalizers"] = ["b"]
    assert (await api.alice.put(f"{url}/d", json=got)).status_code == 204
    got = (await api.alice.get(f"{url}/d")).json()
    got["metadata"]["finalizers"] = []
    assert (await api.alice.put(f"{url}/d", json=got)).status_code == 204
    _err(await api.alice.get(f"{url}/d"), 404, "NotFound")
    # the app is not deleting: it stays
    assert (await api.alice.get(f"{BASE}/apps/{app}")).status_code == 200


async def test_device_list_selectors(api: Api, unique: str) -> None:
    app = await _app(api, unique)
    url = f"{BASE}/apps/{app}/devices"
    for i, labels in enumerate([{"t": "a"}, {"t": "b"}, {}, {"t": "a", "z": "1"}]):
        await api.alice.post(url, json={"metadata": {"name": f"d{i}", "labels": labels}})

    async def names(**params: Any) -> list[str]:
        r = await api.alice.get(url, params=params)
        assert r.status_code == 200, r.text
        return [d["metadata"]["name"] for d in r.json()]

    assert await names() == ["d0", "d1", "d2", "d3"]
    assert await names(labels="t=a") == ["d0", "d3"]
    assert await names(labels="t=a,!z") == ["d0"]
    assert await names(labels="t in (a,b)", limit=2) == ["d0", "d1"]
    assert await names(labels="t notin (a)") == ["d1", "d2"]
    assert await names(limit=1, offset=2) == ["d2"]
    assert await names(offset=10) == []
    _err(await api.alice.get(url, params={"labels": "=x"}), 400, "BadRequest")


async def test_device_names_with_slashes_and_spaces(api: Api, unique: str) -> None:
    app = await _app(api, unique)
    name = "floor 1/room#2?x"
    r = await api.alice.post(f"{BASE}/apps/{app}/devices", json={"metadata": {"name": name}})
    assert r.status_code == 201, r.text
    location = r.headers["location"]
    assert location == f"{BASE}/apps/{app}/devices/floor%201%2Froom%232%3Fx"
    got = await api.alice.get(location)
    assert got.status_code == 200, got.text
    assert got.json()["metadata"]["name"] == name
    assert (await api.alice.put(location, json=got.json())).status_code == 204
    assert (await api.alice.delete(location)).status_code == 204


async def test_concurrent_writes(api: Api, unique: str) -> None:
    """Concurrent writers serialise: one create wins, blind updates all apply, stale ones get 409."""
    import asyncio

    app = await _app(api, unique)
    url = f"{BASE}/apps/{app}/devices"
    creates = await asyncio.gather(*(api.alice.post(url, json={"metadata": {"name": "race"}}) for _ in range(8)))
    assert sorted(r.status_code for r in creates) == [201] + [409] * 7
    current = (await api.alice.get(f"{url}/race")).json()
    updates = []
    for i in range(8):
        body = {"metadata": {"name": "race", "resourceVersion": current["metadata"]["resourceVersion"]},
                "spec": {"n": i}}
        updates.append(api.alice.put(f"{url}/race", json=body))
    codes = sorted(r.status_code for r in await asyncio.gather(*updates))
    assert codes == [204] + [409] * 7  # same precondition: exactly one wins
    blind = [api.alice.put(f"{url}/race", json={"metadata": {"name": "race"}, "spec": {"m": i}})
             for i in range(8)]
    assert {r.status_code for r in await asyncio.gather(*blind)} == {204}
    final = (await api.alice.get(f"{url}/race")).json()
    assert final["metadata"]["generation"] == 1 + 1 + 8
