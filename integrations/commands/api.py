"""``POST /api/command/v1alpha1/apps/{app}/devices/{device}?command=<name>`` (reference §7.3, §17 row 14.7).

Body = the command payload (optional), ``Content-Type`` forwarded under the rules of §2.2. Auth: Bearer JWT or
Basic ``<user>:<access token>`` (any form of :meth:`integrations.auth.UserAccess.identify`); the caller needs
Write on the app. Answers (error bodies ``{"error": <Kind>, "message": …}``):

| status | when |
|---|---|
| 202 | accepted: one :class:`~schemas.state.CommandRequest` per target is on ``iot-commands`` |
| 400 | ``command`` missing or empty, invalid ``wait``, several ways of authentication |
| 403 | wrong credentials |
| 404 | the app does not exist or the caller may not Write it (``Not found Application / <app>``, as Drogue) |
| 406 | the device does not exist; the device or its app is disabled (§17 14.7 fixed); invalid JSON body |
| 413 | payload larger than :data:`MAX_PAYLOAD_BYTES` |
| 503 | Kafka (or the user store) is unavailable |

Kedge extension ``?wait=<seconds>`` (0 < wait <= :data:`MAX_WAIT_S`): after sending, wait for the delivery
outcome from the device-state agents / endpoints and answer

* 200 ``{"delivered": true}`` — an endpoint handed the command to the device (or one of its gateways);
* 409 ``{"delivered": false, "reason": "device offline"}`` — every target refused it (reason of the first);
* 202 ``{"delivered": null, "reason": "no delivery outcome in time"}`` — accepted, the outcome is unknown.

Gateways with an ``external`` command endpoint (Drogue's HTTP/TTN forwarding) are not supported.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Final

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.responses import JSONResponse

from integrations.auth import AuthError, AuthUnavailable, UserAccess
from integrations.commands.bus import CommandBus
from integrations.commands.model import DeviceDirectory
from integrations.commands.submit import Refusal, submit_command

log = logging.getLogger(__name__)

__all__ = ["MAX_PAYLOAD_BYTES", "MAX_WAIT_S", "CommandApi", "install", "router"]

MAX_PAYLOAD_BYTES: Final = 256 * 1024
MAX_WAIT_S: Final = 60.0
PATH: Final = "/api/command/v1alpha1/apps/{app}/devices/{device}"

router = APIRouter(tags=["commands"])


@dataclass
class CommandApi:
    """What the route needs; ``kedge`` builds it (adapters over the registry) and :func:`install` s it."""

    access: UserAccess
    directory: DeviceDirectory
    bus: CommandBus


def install(app: FastAPI, api: CommandApi) -> None:
    app.state.command_api = api


_REFUSALS: Final[dict[Refusal, tuple[int, str]]] = {
    Refusal.NO_ACCESS: (404, "NotFound"),
    Refusal.NO_DEVICE: (406, "NotAcceptable"),
    Refusal.DISABLED: (406, "NotAcceptable"),
    Refusal.BAD_PAYLOAD: (406, "NotAcceptable"),
    Refusal.UNAVAILABLE: (503, "ServiceUnavailable"),
}


def _error(status: int, kind: str, message: str) -> JSONResponse:
    return JSONResponse({"error": kind, "message": message}, status_code=status)


def _wait_param(raw: str | None) -> float | None:
    if raw is None:
        return None
    try:
        wait = float(raw)
    except ValueError:
        raise ValueError(f"wait must be a number of seconds, got {raw!r}") from None
    if not (math.isfinite(wait) and 0 < wait <= MAX_WAIT_S):
        raise ValueError(f"wait must be > 0 and <= {MAX_WAIT_S:g} seconds, got {raw!r}")
    return wait


@router.post(PATH, status_code=202, summary="Send a command to a device (and its gateways)")
async def send_command(app: str, device: str, request: Request) -> Response:
    api: CommandApi = request.app.state.command_api
    command = request.query_params.get("command")
    if not command:
        return _error(400, "BadRequest", "missing query parameter 'command'")
    try:
        wait_s = _wait_param(request.query_params.get("wait"))
    except ValueError as e:
        return _error(400, "BadRequest", str(e))
    try:
        caller = await api.access.identify(request.headers.getlist("authorization"), request.query_params.getlist)
    except AuthError as e:
        return _error(e.status, "BadRequest" if e.status == 400 else "AuthenticationError", e.message)
    except AuthUnavailable as e:
        return _error(503, "ServiceUnavailable", str(e))
    body = await request.body()
    if len(body) > MAX_PAYLOAD_BYTES:
        return _error(413, "PayloadTooLarge", f"command payload larger than {MAX_PAYLOAD_BYTES} bytes")
    done = await submit_command(api.access, api.directory, api.bus, caller, app=app, device=device, command=command,
                                body=body, content_type=request.headers.get("content-type"), wait_s=wait_s)
    if done.refusal is not None:
        status, kind = _REFUSALS[done.refusal]
        return _error(status, kind, done.message)
    outcome = done.outcome
    if outcome is None:
        return Response(status_code=202)
    if outcome.delivered is True:
        return JSONResponse({"delivered": True}, status_code=200)
    status = 409 if outcome.delivered is False else 202
    return JSONResponse({"delivered": outcome.delivered, "reason": outcome.reason}, status_code=status)
