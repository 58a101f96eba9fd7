"""Application routes of ``/api/registry/v1alpha1`` (reference §8), on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

import pytest

from tests.registry.conftest import Api

BASE = "/api/registry/v1alpha1"

pytestmark = pytest.mark.integration


def _err(response: Any, status: int, kind: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert body["error"] == kind, body
    assert isinstance(body["message"], str)
    return body


async def test_create_read_update_app(api: Api, unique: str) -> None:
    name = f"app-{unique}"
    r = await api.alice.post(f"{BASE}/apps", json={"metadata": {"name": name, "labels": {"env": "prod"}},
                                                   "spec": {"foo": {"bar": 1}}})
    assert r.status_code == 201, r.text
    assert r.headers["location"] == f"{BASE}/apps/{name}"

    got = (await api.alice.get(f"{BASE}/apps/{name}")).json()
    meta = got["metadata"]
    assert meta["name"] == name and meta["generation"] == 1 and meta["labels"] == {"env": "prod"}
    assert meta["creationTimestamp"].endswith("Z") and len(meta["uid"]) == 36
    assert "deletionTimestamp" not in meta and got["spec"] == {"foo": {"bar": 1}}

    # a status-only change keeps the generation, gets a new resourceVersion
    got["status"] = {"conditions": [{"type": "Ready", "status": "True"}]}
    assert (await api.alice.put(f"{BASE}/apps/{name}", json=got)).status_code == 204
    after = (await api.alice.get(f"{BASE}/apps/{name}")).json()
    assert after["metadata"]["generation"] == 1
    assert after["metadata"]["resourceVersion"] != meta["resourceVersion"]
    assert after["metadata"]["uid"] == meta["uid"]

    # a spec change bumps the generation
    after["spec"]["foo"] = {"bar": 2}
    assert (await api.alice.put(f"{BASE}/apps/{name}", json=after)).status_code == 204
    spec_changed = (await api.alice.get(f"{BASE}/apps/{name}")).json()
    assert spec_changed["metadata"]["generation"] == 2

    # no change: 204, nothing written
    assert (await api.alice.put(f"{BASE}/apps/{name}", json=spec_changed)).status_code == 204
    same = (await api.alice.get(f"{BASE}/apps/{name}")).json()
    assert same["metadata"]["resourceVersion"] == spec_changed["metadata"]["resourceVersion"]


async def test_drogue_example_accepted_as_is(api: Api, unique: str) -> None:
    name = f"example-{unique}"
    app = {
        "metadata": {"name": name, "annotations": {"a": "b"}},
        "spec": {
            "trustAnchors": {"anchors": []},
            "mqtt": {"dialect": {"type": "plainTopic", "devicePrefix": True}},
            "publish": {"rules": [{"when": {"isChannel": "foo"}, "then": ["drop"]}]},
            "core": {"disabled": False},
        },
    }
    assert (await api.alice.post(f"{BASE}/apps", json=app)).status_code == 201
    # a GET result can be PUT back unchanged (server fields are accepted and ignored)
    got = (await api.alice.get(f"{BASE}/apps/{name}")).json()
    assert (await api.alice.put(f"{BASE}/apps/{name}", json=got)).status_code == 204


async def test_optimistic_locking(api: Api, unique: str) -> None:
    name = f"lock-{unique}"
    await api.alice.post(f"{BASE}/apps", json={"metadata": {"name": name}})
    got = (await api.alice.get(f"{BASE}/apps/{name}")).json()
    stale = {**got, "metadata": {**got["metadata"]}}
    got["metadata"]["labels"] = {"a": "1"}
    assert (await api.alice.put(f"{BASE}/apps/{name}", json=got)).status_code == 204
    stale["metadata"]["labels"] = {"a": "2"}
    _err(await api.alice.put(f"{BASE}/apps/{name}", json=stale), 409, "Conflict")
    wrong_uid = {**got, "metadata": {**got["metadata"], "uid": "00000000-0000-4000-8000-000000000000",
                                     "resourceVersion": ""}}
    _err(await api.alice.put(f"{BASE}/apps/{name}", json=wrong_uid), 409, "Conflict")
    # empty uid/resourceVersion: no precondition
    blind = {"metadata": {"name": name, "labels": {"a": "3"}}}
    assert (await api.alice.put(f"{BASE}/apps/{name}", json=blind)).status_code == 204


async def test_bad_inputs(api: Api, unique: str) -> None:
    r = await api.alice.post(f"{BASE}/apps", content=b"{bad", headers={"content-type": "application/json"})
    assert "malformed JSON" in _err(r, 400, "BadRequest")["message"]
    r = await api.alice.post(f"{BASE}/apps", content=b'{"metadata": {"name": "x"}}')  # no content type
    assert "Content-Type" in _err(r, 400, "BadRequest")["message"]
    r = await api.alice.post(f"{BASE}/apps", json={"metadata": {"name": f"u-{unique}", "nmae": 1}, "sepc": {}})
    message = _err(r, 400, "BadRequest")["message"]
    assert "metadata.nmae: unknown field" in message and "sepc: unknown field" in message
    r = await api.alice.post(f"{BASE}/apps", json={"spec": {}})
    assert "metadata" in _err(r, 400, "BadRequest")["message"]
    for bad in ("Bad_Name", "-x", "a" * 64, "", "a..b"):
        r = await api.alice.post(f"{BASE}/apps", json={"metadata": {"name": bad}})
        _err(r, 400, "BadRequest")
    r = await api.alice.post(f"{BASE}/apps", json={"metadata": {"name": f"c-{unique}"},
                                                   "spec": {"core": {"disabled": "maybe"}}})
    assert "spec.core" in _err(r, 400, "BadRequest")["message"]
    r = await api.alice.post(f"{BASE}/apps", json={"metadata": {"name": f"m-{unique}"},
                                                   "spec": {"mqtt": {"dialect": {"type": "nope"}}}})
    assert "spec.mqtt" in _err(r, 400, "BadRequest")["message"]
    r = await api.alice.post(f"{BASE}/apps", json=[1, 2])
    _err(r, 400, "BadRequest")
    name = f"dup-{unique}"
    assert (await api.alice.post(f"{BASE}/apps", json={"metadata": {"name": name}})).status_code == 201
    _err(await api.alice.post(f"{BASE}/apps", json={"metadata": {"name": name}}), 409, "Conflict")
    _err(await api.alice.put(f"{BASE}/apps/{name}", json={"metadata": {"name": "other"}}), 400, "BadRequest")
    _err(await api.alice.get(f"{BASE}/apps/missing-{unique}"), 404, "NotFound")
    _err(await api.alice.put(f"{BASE}/apps/missing-{unique}", json={"metadata": {"name": f"missing-{unique}"}}),
         404, "NotFound")
    _err(await api.alice.delete(f"{BASE}/apps/missing-{unique}"), 404, "NotFound")
    _err(await api.alice.get(f"{BASE}/apps?limit=-1"), 400, "BadRequest")
    _err(await api.alice.get(f"{BASE}/apps?labels=a in (b"), 400, "BadRequest")


async def test_list_labels_limit_offset(api: Api, unique: str) -> None:
    names = [f"l{i}-{unique}" for i in range(4)]
    labels = [{"tier": "a", "u": unique}, {"tier": "b", "u": unique}, {"tier": "a", "x": "1", "u": unique},
              {"u": unique}]
    for name, lab in zip(names, labels, strict=True):
        await api.alice.post(f"{BASE}/apps", json={"metadata": {"name": name, "labels": lab}})

    async def listed(query: str) -> list[str]:
        r = await api.alice.get(f"{BASE}/apps", params={"labels": f"u={unique}," + query} if query
                                else {"labels": f"u={unique}"})
        assert r.status_code == 200, r.text
        return [a["metadata"]["name"] for a in r.json()]

    assert await listed("") == names
    assert await listed("tier=a") == [names[0], names[2]]
    assert await listed("tier!=a") == [names[1], names[3]]
    assert await listed("tier") == names[:3]
    assert await listed("!tier") == [names[3]]
    assert await listed("tier in (a, b),!x") == [names[0], names[1]]
    assert await listed("tier notin (a)") == [names[1], names[3]]
    r = await api.alice.get(f"{BASE}/apps", params={"labels": f"u={unique}", "limit": 2, "offset": 1})
    assert [a["metadata"]["name"] for a in r.json()] == names[1:3]
    # bob sees none of alice's apps; the admin sees them all
    r = await api.bob.get(f"{BASE}/apps", params={"labels": f"u={unique}"})
    assert r.json() == []
    r = await api.admin.get(f"{BASE}/apps", params={"labels": f"u={unique}"})
    assert len(r.json()) == 4


async def test_authorization(api: Api, unique: str) -> None:
    name = f"authz-{unique}"
    _err(await api.anon.post(f"{BASE}/apps", json={"metadata": {"name": name}}), 403, "AuthenticationError")
    await api.alice.post(f"{BASE}/apps", json={"metadata": {"name": name}})
    _err(await api.bob.get(f"{BASE}/apps/{name}"), 403, "AuthenticationError")
    _err(await api.bob.put(f"{BASE}/apps/{name}", json={"metadata": {"name": name}}), 403,
         "AuthenticationError")
    _err(await api.bob.delete(f"{BASE}/apps/{name}"), 403, "AuthenticationError")
    # device routes of an app one cannot see answer 404
    _err(await api.bob.get(f"{BASE}/apps/{name}/devices"), 404, "NotFound")
    _err(await api.bob.post(f"{BASE}/apps/{name}/devices", json={"metadata": {"name": "d"}}), 404, "NotFound")
    # members: bob as reader may read, not write
    r = await api.alice.put(f"/api/admin/v1alpha1/apps/{name}/members",
                            json={"members": {api.ids["bob"]: {"role": "reader"}}})
    assert r.status_code == 204, r.text
    assert (await api.bob.get(f"{BASE}/apps/{name}")).status_code == 200
    assert (await api.bob.get(f"{BASE}/apps/{name}/devices")).status_code == 200
    _err(await api.bob.post(f"{BASE}/apps/{name}/devices", json={"metadata": {"name": "d"}}), 404, "NotFound")
    _err(await api.bob.put(f"{BASE}/apps/{name}", json={"metadata": {"name": name}}), 403,
         "AuthenticationError")
    # manager may write but not delete the app
    r = await api.alice.put(f"/api/admin/v1alpha1/apps/{name}/members",
                            json={"members": {api.ids["bob"]: {"role": "manager"}}})
    assert r.status_code == 204, r.text
    assert (await api.bob.post(f"{BASE}/apps/{name}/devices", json={"metadata": {"name": "d"}})).status_code == 201
    _err(await api.bob.delete(f"{BASE}/apps/{name}"), 403, "AuthenticationError")
    assert (await api.admin.delete(f"{BASE}/apps/{name}")).status_code == 204


async def test_delete_app_rules(api: Api, unique: str) -> None:
    name = f"del-{unique}"
    await api.alice.post(f"{BASE}/apps", json={"metadata": {"name": name}})
    await api.alice.post(f"{BASE}/apps/{name}/devices", json={"metadata": {"name": "plain"}})
    await api.alice.post(f"{BASE}/apps/{name}/devices", json={"metadata": {"name": "held",
                                                                          "finalizers": ["keep"]}})
    assert (await api.alice.delete(f"{BASE}/apps/{name}")).status_code == 204
    app = (await api.alice.get(f"{BASE}/apps/{name}")).json()
    assert app["metadata"]["finalizers"] == ["has-devices"] and "deletionTimestamp" in app["metadata"]
    devices = (await api.alice.get(f"{BASE}/apps/{name}/devices")).json()
    assert [d["metadata"]["name"] for d in devices] == ["held"]
    assert "deletionTimestamp" in devices[0]["metadata"]
    # already deleting -> 404; no new devices under a deleting app
    _err(await api.alice.delete(f"{BASE}/apps/{name}"), 404, "NotFound")
    _err(await api.alice.post(f"{BASE}/apps/{name}/devices", json={"metadata": {"name": "new"}}), 404,
         "ReferenceNotFound")
    # removing the device's last finalizer removes it, and then the app
    held = devices[0]
    held["metadata"]["finalizers"] = []
    assert (await api.alice.put(f"{BASE}/apps/{name}/devices/held", json=held)).status_code == 204
    _err(await api.alice.get(f"{BASE}/apps/{name}"), 404, "NotFound")


async def test_delete_preconditions_body_and_query(api: Api, unique: str) -> None:
    name = f"pre-{unique}"
    await api.alice.post(f"{BASE}/apps", json={"metadata": {"name": name}})
    meta = (await api.alice.get(f"{BASE}/apps/{name}")).json()["metadata"]
    r = await api.alice.request("DELETE", f"{BASE}/apps/{name}",
                                json={"preconditions": {"resourceVersion": "stale"}})
    _err(r, 409, "Conflict")
    _err(await api.alice.delete(f"{BASE}/apps/{name}", params={"uid": "other"}), 409, "Conflict")
    r = await api.alice.request("DELETE", f"{BASE}/apps/{name}", json={"preconditions": {"bogus": 1}})
    _err(r, 400, "BadRequest")
    r = await api.alice.delete(f"{BASE}/apps/{name}", params={"uid": meta["uid"],
                                                              "resourceVersion": meta["resourceVersion"]})
    assert r.status_code == 204
    _err(await api.alice.get(f"{BASE}/apps/{name}"), 404, "NotFound")


async def test_app_finalizers_soft_delete(api: Api, unique: str) -> None:
    name = f"fin-{unique}"
    await api.alice.post(f"{BASE}/apps", json={"metadata": {"name": name, "finalizers": ["ext"]}})
    assert (await api.alice.delete(f"{BASE}/apps/{name}")).status_code == 204
    app = (await api.alice.get(f"{BASE}/apps/{name}")).json()
    assert app["metadata"]["finalizers"] == ["ext"] and "deletionTimestamp" in app["metadata"]
    app["metadata"]["finalizers"] = []
    assert (await api.alice.put(f"{BASE}/apps/{name}", json=app)).status_code == 204
    _err(await api.alice.get(f"{BASE}/apps/{name}"), 404, "NotFound")


async def test_unknown_route_has_drogue_body(api: Api) -> None:
    _err(await api.alice.get("/api/registry/v1alpha1/nothing"), 404, "NotFound")


async def test_trust_anchor_status_is_derived(api: Api, unique: str) -> None:
    name = f"ta-{unique}"
    spec = {"trustAnchors": {"anchors": [{"certificate": "bm90IGEgY2VydA=="}]}}
    body = {"metadata": {"name": name}, "spec": spec, "status": {"trustAnchors": {"forged": True}, "x": 1}}
    assert (await api.alice.post(f"{BASE}/apps", json=body)).status_code == 201
    got = (await api.alice.get(f"{BASE}/apps/{name}")).json()
    assert got["status"]["x"] == 1
    [entry] = got["status"]["trustAnchors"]["anchors"]
    assert entry["invalid"]["error"] == "InvalidCertificate"
    got["spec"] = {}
    assert (await api.alice.put(f"{BASE}/apps/{name}", json=got)).status_code == 204
    assert "trustAnchors" not in (await api.alice.get(f"{BASE}/apps/{name}")).json()["status"]
