"""Errors of the access layer, as Drogue error bodies (``{"error": <Kind>, "message": …}``)."""

from __future__ import annotations

from registry.errors import BadRequest, NotAuthorized, RegistryError

__all__ = ["AccessUnavailable", "AuthenticationFailed", "BadRequest", "InvalidJwt", "NotAuthorized"]


class AuthenticationFailed(NotAuthorized):
    """403 ``AuthenticationError``: the presented credentials are wrong, expired or not acceptable."""


class InvalidJwt(Exception):
    """A JWT failed validation (signature, expiry, issuer, audience, shape); the message says which."""


class AccessUnavailable(RegistryError):
    """The back end needed to check credentials (database, the OIDC issuer's JWKS) could not be reached.

    Callers fail closed: HTTP 503, MQTT "server unavailable", WebSocket close 1011.
    """

    kind = "ServiceUnavailable"
    status = 503
