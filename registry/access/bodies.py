"""Request bodies of the access API (strict: unknown fields are a 400 that names them)."""

from __future__ import annotations

import json
from typing import Any, TypeVar
from urllib.parse import parse_qsl

from fastapi import Request
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from registry.access.authz import Role
from registry.errors import BadRequest
from registry.resources import describe

__all__ = ["MembersIn", "TokenRequest", "TransferIn", "UserIn", "parse_body", "parse_token_request"]

M = TypeVar("M", bound=BaseModel)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


def _username(value: str) -> str:
    if not value or len(value.encode()) > 255 or ":" in value or value != value.strip():
        raise ValueError("user names are 1..255 bytes, without ':' or surrounding spaces")
    return value


class UserIn(_Strict):
    """``POST /api/admin/v1alpha1/users``; without ``password`` one is generated and returned once."""

    username: str
    password: str | None = Field(None, min_length=8)
    roles: list[str] = []

    _check_name = field_validator("username")(_username)

    @field_validator("password")
    @classmethod
    def _bcrypt_limit(cls, value: str | None) -> str | None:
        if value is not None and len(value.encode()) > 72:
            raise ValueError("passwords are at most 72 bytes (bcrypt)")
        return value


class MemberIn(_Strict):
    role: Role


class MembersIn(_Strict):
    """Drogue's ``Members``: ``{"resourceVersion"?, "members": {"<userId>": {"role": …}}}``."""

    resource_version: str | None = Field(None, alias="resourceVersion")
    members: dict[str, MemberIn] = {}


class TransferIn(_Strict):
    new_user: str = Field(alias="newUser", min_length=1)


class TokenRequest(_Strict):
    """``POST /api/token``: resource-owner password grant (form or JSON)."""

    grant_type: str = "password"
    username: str
    password: str
    #: lifetime in seconds, 1..``jwt_ttl_s`` (default: ``jwt_ttl_s``)
    expires_in: int | None = Field(None, ge=1)
    client_id: str | None = None
    scope: str | None = None

    @field_validator("grant_type")
    @classmethod
    def _password_grant(cls, value: str) -> str:
        if value != "password":
            raise ValueError("only grant_type=password is supported")
        return value


async def _raw_json(request: Request) -> Any:
    raw = await request.body()
    if not raw.strip():
        raise BadRequest("Missing JSON body")
    try:
        return json.loads(raw)
    except ValueError as e:
        raise BadRequest(f"Malformed JSON: {e}") from e


async def parse_body(request: Request, model: type[M]) -> M:
    """Validate a JSON body against ``model`` with the registry's error message style."""
    data = await _raw_json(request)
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise BadRequest(describe(e)) from e


async def parse_token_request(request: Request) -> TokenRequest:
    """Form (``application/x-www-form-urlencoded``, as OAuth2 clients send it) or JSON."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "application/x-www-form-urlencoded":
        text = (await request.body()).decode("utf-8", errors="replace")
        fields = parse_qsl(text, keep_blank_values=True)
        if len({k for k, _ in fields}) != len(fields):
            raise BadRequest("Repeated form field")
        data: Any = dict(fields)
    elif content_type in ("application/json", ""):
        data = await _raw_json(request)
    else:
        raise BadRequest("Send the credentials as application/x-www-form-urlencoded or application/json")
    try:
        return TokenRequest.model_validate(data)
    except ValidationError as e:
        raise BadRequest(describe(e)) from e
