"""Who an application is, from its CONNECT (reference §6; §17 row 14.8).

| CONNECT carries | means |
|---|---|
| user name + password | an access token (API key) of that user |
| user name only | the user name is a JWT |
| password only (MQTT 5) | the password is a JWT |
| neither | anonymous (what it may do is up to each app's members) |

Wrong credentials -> 0x86 bad user name or password (no user enumeration); the user store unavailable -> 0x88
server unavailable.
"""

from __future__ import annotations

import logging

from integrations.auth import AuthError, AuthUnavailable, Caller, UserAccess
from protocols.mqtt import Connect, ReasonCode

__all__ = ["login"]

log = logging.getLogger(__name__)


async def login(access: UserAccess, connect: Connect) -> Caller | ReasonCode:
    """The caller, or the CONNACK reason refusing it."""
    username, password = connect.username, connect.password
    try:
        if username is not None and password is not None:
            params = {"username": [username], "api_key": [password.decode()]}
            return await access.identify((), lambda name: params.get(name, []))
        if username is not None:
            return await access.authenticate_jwt(username)
        if password is not None:
            return await access.authenticate_jwt(password.decode())
        return await access.identify((), lambda name: [])
    except (AuthError, UnicodeDecodeError) as e:
        log.info("refused application connection %r: %s", connect.client_id, e)
        return ReasonCode.BAD_USER_NAME_OR_PASSWORD
    except AuthUnavailable as e:
        log.warning("user store unavailable: %s", e)
        return ReasonCode.SERVER_UNAVAILABLE
