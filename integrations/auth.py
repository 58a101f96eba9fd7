"""What the integrations need of user authentication and authorization (reference §9), as a contract.

``integrations`` never imports ``registry``: ``kedge`` (kedge/integration_wiring.py) hands an adapter over
``registry.access.Access`` to the integration processes and to the command API as a :class:`UserAccess`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal, Protocol

__all__ = ["AuthError", "AuthUnavailable", "Caller", "Permission", "UserAccess"]

#: the permissions the integrations ask for: Read (subscribe/stream), Write (commands)
Permission = Literal["Read", "Write"]


class AuthError(Exception):
    """Credentials refused: ``status`` 400 (several ways of authentication given) or 403 (wrong ones)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class AuthUnavailable(Exception):
    """The user store cannot be asked now (fail closed: 503 / "server unavailable", never "accepted")."""


class Caller(Protocol):
    """An authenticated user, or the anonymous caller (``registry.access.Identity`` satisfies it)."""

    @property
    def anonymous(self) -> bool: ...

    @property
    def exp(self) -> int | None:
        """JWT expiry, seconds since the epoch; None for access tokens and anonymous (they never expire)."""
        ...


class UserAccess(Protocol):
    async def identify(
        self, authorization: Sequence[str], query: Callable[[str], Sequence[str]]
    ) -> Caller:
        """The caller of an HTTP request or WebSocket upgrade: exactly one of ``Authorization: Basic
        <user>:<access token>``, ``Authorization: Bearer <jwt>``, ``?token=<jwt>``, ``?username=&api_key=``;
        none -> anonymous. Raises :class:`AuthError` (400 several, 403 wrong) or :class:`AuthUnavailable`."""
        ...

    async def authenticate_jwt(self, token: str) -> Caller:
        """A JWT -> its caller (with ``exp``); :class:`AuthError` (403, the reason) when invalid or expired."""
        ...

    async def may(self, app: str, caller: Caller, permission: Permission) -> bool | None:
        """May ``caller`` do ``permission`` on ``app``? None when the app does not exist."""
        ...
