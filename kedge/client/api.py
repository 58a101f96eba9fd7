"""A small synchronous client of the API host for the CLI: auth headers, JWT refresh, one-line errors.

Every non-2xx answer becomes :class:`ApiError` (``<message> (HTTP <status>)`` from Drogue's
``{"error","message"}`` body); network failures become a :class:`~kedge.errors.KedgeError` naming the URL.
``https://`` API hosts (and `kedge stream`'s wss://) are verified against httpx's default store (certifi's CA
bundle, or ``SSL_CERT_FILE``/``SSL_CERT_DIR`` when set) plus the context's ``ca_file`` (`kedge login
--ca-file`), through the one context of :func:`ssl_context`.
"""

from __future__ import annotations

import base64
import ssl
import time
from collections.abc import Mapping
from typing import Any

import httpx

from kedge.client.config import Auth, Config, ConfigStore, Context
from kedge.errors import KedgeError

__all__ = ["ApiError", "Session", "basic_header", "fetch_jwt", "refresh_margin", "ssl_context", "token_due"]

TIMEOUT_S = 30.0


class ApiError(KedgeError):
    """The API host refused a request; ``status`` is the HTTP status, ``kind`` Drogue's ``error`` field."""

    def __init__(self, status: int, message: str, kind: str | None = None) -> None:
        super().__init__(f"{message} (HTTP {status})")
        self.status = status
        self.message = message
        self.kind = kind


def error_of(response: httpx.Response) -> ApiError:
    kind: str | None = None
    message = ""
    try:
        body = response.json()
        if isinstance(body, Mapping):
            kind = str(body.get("error")) if body.get("error") is not None else None
            message = str(body.get("message") or body.get("reason") or kind or "")
    except ValueError:
        message = response.text.strip().splitlines()[0][:200] if response.text.strip() else ""
    return ApiError(response.status_code, message or response.reason_phrase or "request failed", kind)


#: added to a failed certificate check: how to trust a private CA
CA_HINT = ("; to trust a private CA, log in with `kedge login --ca-file <CA bundle, PEM>` "
           "(or set SSL_CERT_FILE=<CA bundle, PEM>)")


def ssl_context(ca_file: str | None) -> ssl.SSLContext:
    """The client TLS context of the CLI: httpx's default trust store, plus the CAs of ``ca_file`` (PEM)."""
    ctx = httpx.create_ssl_context()
    if ca_file is not None:
        try:
            ctx.load_verify_locations(cafile=ca_file)
        except FileNotFoundError:
            raise KedgeError(f"CA file {ca_file} not found (run `kedge login --ca-file <PEM>` again)") from None
        except (OSError, ssl.SSLError, ValueError) as exc:
            raise KedgeError(f"CA file {ca_file} is not a PEM CA bundle: {exc}") from None
    return ctx


def unreachable(url: str, exc: Exception) -> KedgeError:
    reason = str(exc) or type(exc).__name__
    hint = CA_HINT if "CERTIFICATE_VERIFY_FAILED" in reason else ""
    return KedgeError(f"cannot reach {url}: {reason}{hint}")


def basic_header(username: str, token: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{token}".encode()).decode()


def refresh_margin(auth: Auth) -> float:
    """Refresh this long before ``exp``: a third of the token's lifetime, at most 60 s, at least 2 s."""
    return min(60.0, max(2.0, (auth.ttl or 300) / 3))


def token_due(auth: Auth, now: float) -> bool:
    """Does a ``password`` context need a new JWT before its next use?"""
    if auth.kind != "password":
        return False
    return auth.token is None or auth.exp is None or auth.exp - now <= refresh_margin(auth)


def fetch_jwt(api_url: str, username: str, password: str, *, client: httpx.Client | None = None,
              ttl_s: int | None = None, ca_file: str | None = None) -> Auth:
    """``POST /api/token`` (password grant) -> a ``password`` :class:`Auth` holding the new JWT (through
    ``client``, else a one-off request trusting ``ca_file`` too)."""
    url = api_url.rstrip("/") + "/api/token"
    data = {"grant_type": "password", "username": username, "password": password}
    if ttl_s is not None:
        data["expires_in"] = str(ttl_s)
    try:
        if client is not None:
            response = client.post(url, data=data, timeout=TIMEOUT_S)
        else:
            response = httpx.post(url, data=data, timeout=TIMEOUT_S, verify=ssl_context(ca_file))
    except httpx.HTTPError as exc:
        raise unreachable(url, exc) from None
    if response.status_code != 200:
        raise error_of(response)
    body = response.json()
    return Auth(kind="password", username=username, password=password, token=str(body["access_token"]),
                exp=int(body["exp"]), ttl=int(body.get("expires_in") or 0) or None, requested_ttl=ttl_s)


class Session:
    """Requests to one context's API host, refreshing (and saving) its JWT when it is about to expire."""

    def __init__(self, store: ConfigStore, config: Config, context: Context) -> None:
        self.store = store
        self.config = config
        self.context = context
        #: the TLS trust of every request of this context (API host and WebSocket integration)
        self.ssl = ssl_context(context.ca_file)
        self.client = httpx.Client(base_url=context.api_url.rstrip("/"), timeout=TIMEOUT_S, verify=self.ssl)

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def fresh_auth(self, *, force: bool = False) -> Auth:
        """The context's credentials, with a new JWT first if the current one is (nearly) expired (or
        ``force``, for a ``password`` context); the new JWT is saved in the config file."""
        auth = self.context.auth
        if token_due(auth, time.time()) or (force and auth.kind == "password"):
            if auth.password is None:
                raise KedgeError(f"the login of context {self.context.name!r} expired: run `kedge login` again")
            auth = fetch_jwt(self.context.api_url, auth.username, auth.password, client=self.client,
                             ttl_s=auth.requested_ttl)
            self.context = self.context.model_copy(update={"auth": auth})
            self.config.put(self.context)
            self.store.save(self.config)
        return auth

    def authorization(self) -> str:
        auth = self.fresh_auth()
        assert auth.token is not None
        if auth.kind == "api_key":
            return basic_header(auth.username, auth.token)
        return "Bearer " + auth.token

    def request(self, method: str, path: str, *, json: Any = None, params: Any = None,
                content: bytes | None = None, headers: Mapping[str, str] | None = None) -> httpx.Response:
        """Send; return the response if 2xx, else raise :class:`ApiError`."""
        all_headers = {"Authorization": self.authorization(), **(headers or {})}
        try:
            response = self.client.request(method, path, json=json, params=params, content=content,
                                           headers=all_headers)
        except httpx.HTTPError as exc:
            raise unreachable(self.context.api_url + path, exc) from None
        if response.status_code >= 300:
            raise error_of(response)
        return response

    def get_json(self, path: str, params: Any = None) -> Any:
        response = self.request("GET", path, params=params)
        try:
            return response.json()
        except ValueError:
            raise KedgeError(f"{self.context.api_url}{path} answered with something that is not JSON "
                             f"(is {self.context.api_url} a Kedge API host?)") from None
