"""Which credentials an HTTP request (or WebSocket upgrade) presents (reference §9, §10). Pure.

Exactly one of: ``Authorization: Basic <user>:<access token>``, ``Authorization: Bearer <jwt>``,
``?token=<jwt>``, ``?username=<user>&api_key=<access token>``. None -> anonymous. Several -> 400
"More than one way of authentication provided". A malformed header -> 403.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from registry.access.errors import AuthenticationFailed, BadRequest

__all__ = ["ApiKeyCredential", "HttpCredential", "JwtCredential", "parse_http_credentials"]

MORE_THAN_ONE = "More than one way of authentication provided"


@dataclass(frozen=True, slots=True)
class ApiKeyCredential:
    username: str
    token: str

    def __repr__(self) -> str:
        return f"ApiKeyCredential(username={self.username!r}, token='***')"


@dataclass(frozen=True, slots=True)
class JwtCredential:
    token: str

    def __repr__(self) -> str:
        return "JwtCredential(token='***')"


HttpCredential = ApiKeyCredential | JwtCredential


def _from_header(value: str) -> HttpCredential:
    scheme, _, param = value.strip().partition(" ")
    param = param.strip()
    match scheme.lower():
        case "bearer" if param:
            return JwtCredential(param)
        case "basic" if param:
            try:
                decoded = base64.b64decode(param, validate=True).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError) as e:
                raise AuthenticationFailed("Malformed Basic authorization header") from e
            user, sep, token = decoded.partition(":")
            if not sep or not user:
                raise AuthenticationFailed("Basic authorization needs <username>:<access token>")
            return ApiKeyCredential(user, token)
        case _:
            raise AuthenticationFailed("Unsupported Authorization header (use Basic or Bearer)")


def parse_http_credentials(
    authorization: Sequence[str], query: Callable[[str], Sequence[str]]
) -> HttpCredential | None:
    """The one credential of a request, or None (anonymous).

    ``authorization``: every ``Authorization`` header value; ``query``: the values of a query parameter
    (e.g. Starlette's ``request.query_params.getlist``).
    """
    found: list[HttpCredential | str] = list(authorization)
    found += [JwtCredential(t) for t in query("token")]
    usernames, api_keys = list(query("username")), list(query("api_key"))
    if usernames or api_keys:
        if len(usernames) > 1 or len(api_keys) > 1:
            raise BadRequest(MORE_THAN_ONE)
        if not (usernames and api_keys):
            raise BadRequest("Query parameters 'username' and 'api_key' must be given together")
        found.append(ApiKeyCredential(usernames[0], api_keys[0]))
    if len(found) > 1:
        raise BadRequest(MORE_THAN_ONE)
    if not found:
        return None
    only = found[0]
    return _from_header(only) if isinstance(only, str) else only
