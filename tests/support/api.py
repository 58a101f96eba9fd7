"""Helpers of tests that talk to a `kedge serve api`: JWTs by password, and where a process listens."""

from __future__ import annotations

import re
import ssl

import httpx

from tests.support.procs import Proc


async def password_jwt(api_url: str, user: str, password: str, *, ttl_s: int | None = None,
                       verify: ssl.SSLContext | bool = True) -> str:
    """A JWT of ``user`` from the API host's password grant (``ttl_s``: ask for that lifetime)."""
    body: dict[str, object] = {"grant_type": "password", "username": user, "password": password}
    if ttl_s is not None:
        body["expires_in"] = ttl_s
    async with httpx.AsyncClient(base_url=api_url, timeout=10, verify=verify) as client:
        r = await client.post("/api/token", json=body)
    assert r.status_code == 200, r.text
    token: str = r.json()["access_token"]
    return token


def listening(proc: Proc, scheme: str) -> str:
    """The ``scheme://127.0.0.1:<port>`` that ``proc`` logged it listens on."""
    match = re.search(rf"listening on ({scheme}://127\.0\.0\.1:\d+)", proc.log())
    assert match, proc.log()
    return match.group(1)
