"""The WebSocket integration client of `kedge stream` (reference §10): one structured JSON CloudEvent per text
frame; a JWT login is renewed before it expires and handed to the server as ``{"RefreshAccessToken": jwt}``.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import quote, urlencode

from kedge.client.api import Session, refresh_margin, unreachable
from kedge.errors import KedgeError

__all__ = ["stream_events", "stream_url"]

OPEN_TIMEOUT_S = 15.0


def stream_url(ws_url: str, app: str, filters: Mapping[str, str | None]) -> str:
    query = urlencode({k: v for k, v in filters.items() if v is not None})
    return f"{ws_url.rstrip('/')}/{quote(app, safe='')}" + (f"?{query}" if query else "")


def _refusal(exc: Exception, url: str) -> KedgeError:
    """A refused WebSocket upgrade as one line, with the API error message when the body has one."""
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None)
    message = ""
    body = getattr(response, "body", b"") or b""
    try:
        data = json.loads(body)
        if isinstance(data, dict):
            message = str(data.get("message") or data.get("error") or "")
    except ValueError:
        message = body.decode("utf-8", "replace").strip()[:200]
    if status is None:
        return KedgeError(f"cannot open {url}: {exc}")
    return KedgeError(f"{message or 'WebSocket upgrade refused'} (HTTP {status})")


async def _keep_fresh(session: Session, ws: Any) -> None:
    """Renew the JWT ahead of its expiry, forever; each new one goes to the server."""
    while True:
        auth = session.context.auth
        assert auth.exp is not None
        await asyncio.sleep(max(0.5, auth.exp - refresh_margin(auth) - time.time()))
        fresh = await asyncio.to_thread(session.fresh_auth, force=True)
        await ws.send(json.dumps({"RefreshAccessToken": fresh.token}))


async def stream_events(session: Session, app: str, filters: Mapping[str, str | None], count: int | None,
                        on_event: Callable[[dict[str, Any]], None]) -> int:
    """Receive events of ``app`` until ``count`` arrived (None: until cancelled); returns how many."""
    import websockets
    from websockets.exceptions import ConnectionClosed, ConnectionClosedOK, InvalidHandshake

    url = stream_url(session.context.ws_url, app, filters)
    received = 0
    try:
        headers = {"Authorization": await asyncio.to_thread(session.authorization)}
        tls = session.ssl if url.startswith("wss://") else None  # (ws:// refuses an ssl context)
        async with websockets.connect(url, additional_headers=headers, open_timeout=OPEN_TIMEOUT_S,
                                      max_size=None, ssl=tls) as ws:
            refresher = None
            if session.context.auth.kind == "password":
                refresher = asyncio.create_task(_keep_fresh(session, ws))
            try:
                async for message in ws:
                    text = message.decode("utf-8", "replace") if isinstance(message, bytes) else message
                    try:
                        event = json.loads(text)
                    except ValueError:
                        raise KedgeError(f"the server sent a frame that is not JSON: {text[:80]!r}") from None
                    on_event(event)
                    received += 1
                    if count is not None and received >= count:
                        break
            finally:
                if refresher is not None:
                    refresher.cancel()
                    if refresher.done() and not refresher.cancelled() and refresher.exception() is not None:
                        raise KedgeError(f"cannot renew the login: {refresher.exception()}")
    except ConnectionClosedOK:
        return received
    except ConnectionClosed as exc:
        rcvd = exc.rcvd
        code, reason = (rcvd.code, rcvd.reason) if rcvd is not None else (1006, "connection lost")
        raise KedgeError(f"the stream was closed by the server: {reason or 'no reason'} (close code {code})") \
            from None
    except InvalidHandshake as exc:
        raise _refusal(exc, url) from None
    except (OSError, TimeoutError) as exc:  # ssl.SSLCertVerificationError is an OSError
        raise unreachable(url, exc) from None
    return received
