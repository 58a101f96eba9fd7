"""How long an application connection's credentials hold (issue 9; reference §6, §10 for the WebSocket twin).

A connection is authenticated once, at CONNECT (:mod:`.login`); this watch keeps checking afterwards:

| logged in with | the connection ends | MQTT 5 DISCONNECT | 3.1.1 |
|---|---|---|---|
| a JWT (user name only, or password only) | when the JWT's ``exp`` passes | 0xA0 maximum connect time | close |
| user name + access token | within ``token_check_interval_s`` once the token is deleted | 0x87 not authorized | close |
| nothing (anonymous) | never | | |

0xA0 for an expired JWT: the credential allowed the connection only so long, and the client may simply connect
again with a fresh one (MQTT 5 has no token refresh on a live connection short of enhanced authentication,
which Kedge does not offer). 0x87 for a revoked token: that client is no longer allowed at all. While the user
store cannot be asked, an access-token connection stays (the next check asks again): an outage of the registry
database does not drop every application.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from integrations.auth import Caller, UserAccess
from integrations.mqtt.login import login
from protocols.mqtt import Connect, ReasonCode

__all__ = ["Ending", "watch_credentials", "watched"]

log = logging.getLogger(__name__)

#: an expired JWT ends the connection with this reason (MQTT 5)
JWT_EXPIRED = ReasonCode.MAXIMUM_CONNECT_TIME
#: a deleted access token (or user) ends it with this one
TOKEN_REVOKED = ReasonCode.NOT_AUTHORIZED


@dataclass(frozen=True, slots=True)
class Ending:
    """Why a connection must end now: the MQTT 5 DISCONNECT reason and its reason string."""

    reason: ReasonCode
    message: str


def _api_key(connect: Connect) -> bool:
    return connect.username is not None and connect.password is not None


def watched(connect: Connect, caller: Caller) -> bool:
    """Does this login need :func:`watch_credentials` (a JWT, or an access token)?"""
    return caller.exp is not None or (_api_key(connect) and not caller.anonymous)


async def watch_credentials(access: UserAccess, connect: Connect, caller: Caller, interval_s: float, *,
                            refreshed: Callable[[Caller], None] | None = None,
                            clock: Callable[[], float] = time.time) -> Ending:
    """Return once the credentials of this CONNECT (which authenticated ``caller``) no longer hold.

    A JWT is watched by its ``exp`` (woken at least every ``interval_s`` of monotonic time, so a jump of the
    wall ``clock`` is seen); an access token is checked again every ``interval_s``, and each caller a check
    returns goes to ``refreshed`` (its roles may have changed). For a login that :func:`watched` says needs
    nothing, this never returns.
    """
    exp = caller.exp
    if exp is not None:
        while True:
            left = exp - clock()
            if left < 0:
                return Ending(JWT_EXPIRED, "JWT expired")
            await asyncio.sleep(min(left + 0.001, interval_s))
    if not watched(connect, caller):
        await asyncio.Event().wait()  # never set
    while True:
        await asyncio.sleep(interval_s)
        result = await login(access, connect)
        if result is ReasonCode.BAD_USER_NAME_OR_PASSWORD:
            return Ending(TOKEN_REVOKED, "access token revoked or no longer valid")
        if result is ReasonCode.SERVER_UNAVAILABLE:
            log.warning("cannot re-check the access token of %r now; the connection stays", connect.client_id)
        elif isinstance(result, ReasonCode):  # any other refusal of what was accepted before
            return Ending(TOKEN_REVOKED, "access token no longer accepted")
        elif refreshed is not None:
            refreshed(result)
