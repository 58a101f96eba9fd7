"""Drogue error bodies for the whole API host: ``{"error": <Kind>, "message": …}`` (reference §8.1).

FastAPI's own 422 validation answer becomes Drogue's 400 ``BadRequest`` naming the offending fields;
framework HTTP errors (unknown route, wrong method) get the same body shape.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from registry.errors import RegistryError

_KINDS = {400: "BadRequest", 401: "AuthenticationError", 403: "AuthenticationError", 404: "NotFound",
          405: "MethodNotAllowed", 409: "Conflict", 413: "PayloadTooLarge", 415: "UnsupportedMediaType"}


def _where(loc: tuple[object, ...]) -> str:
    parts = [str(p) for p in loc]
    if parts and parts[0] in ("body", "query", "path", "header"):
        kind, rest = parts[0], parts[1:]
        return ".".join(rest) if kind == "body" else f"{kind} parameter {'.'.join(rest)}"
    return ".".join(parts)


def validation_message(exc: RequestValidationError) -> str:
    messages = []
    for error in exc.errors():
        where = _where(tuple(error.get("loc", ())))
        if where == "" and isinstance(error.get("input"), bytes | str):
            messages.append("the body must be a JSON object sent with Content-Type: application/json")
        elif error.get("type") == "json_invalid":
            messages.append(f"malformed JSON: {error.get('ctx', {}).get('error', error.get('msg'))}")
        elif error.get("type") == "extra_forbidden":
            messages.append(f"{where}: unknown field")
        elif error.get("type") == "missing":
            messages.append(f"{where or 'body'}: missing")
        else:
            messages.append(f"{where}: {error.get('msg')}" if where else str(error.get("msg")))
    return "; ".join(dict.fromkeys(messages)) or "bad request"


async def _registry_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RegistryError)
    return JSONResponse(exc.body(), status_code=exc.status)


async def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return JSONResponse({"error": "BadRequest", "message": validation_message(exc)}, status_code=400)


async def _http_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    kind = _KINDS.get(exc.status_code, "Error")
    return JSONResponse({"error": kind, "message": str(exc.detail)}, status_code=exc.status_code,
                        headers=exc.headers)


def install(app: FastAPI) -> None:
    """Install the error handlers on ``app`` (the API host does this once)."""
    app.add_exception_handler(RegistryError, _registry_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
