"""Registry errors. Each maps to Drogue's error body ``{"error": <Kind>, "message": …}`` and status (§8.1)."""

from __future__ import annotations


class RegistryError(Exception):
    """Base class: ``kind`` is the wire ``error`` field, ``status`` the HTTP status code."""

    kind = "Internal"
    status = 500

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or self.kind)
        self.message = message or self.kind

    def body(self) -> dict[str, str]:
        return {"error": self.kind, "message": self.message}


class NotFound(RegistryError):
    kind = "NotFound"
    status = 404


class ReferenceNotFound(RegistryError):
    kind = "ReferenceNotFound"
    status = 404


class Conflict(RegistryError):
    kind = "Conflict"
    status = 409


class BadRequest(RegistryError):
    kind = "BadRequest"
    status = 400


class NotAuthorized(RegistryError):
    kind = "AuthenticationError"
    status = 403


class DatabaseError(RegistryError):
    kind = "DatabaseError"
    status = 503
