"""A real OIDC issuer stand-in on loopback: discovery + JWKS over HTTP, tokens signed with given RSA keys."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from registry.access.jwts import jwk_thumbprint


class FakeIssuer:
    """A real HTTP server on loopback serving discovery and a JWKS; counts the JWKS fetches."""

    def __init__(self) -> None:
        self.jwks: dict[str, Any] = {"keys": []}
        self.fetches = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path == "/realms/drogue/.well-known/openid-configuration":
                    body = {"issuer": outer.url, "jwks_uri": outer.url + "/protocol/openid-connect/certs"}
                elif self.path == "/realms/drogue/protocol/openid-connect/certs":
                    outer.fetches += 1
                    body = outer.jwks
                else:
                    self.send_error(404)
                    return
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *_args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/realms/drogue"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)

    def publish(self, *keys: rsa.RSAPrivateKey) -> None:
        out = []
        for key in keys:
            jwk = json.loads(RSAAlgorithm.to_jwk(key.public_key()))
            jwk.update(kid=jwk_thumbprint(jwk), alg="RS256", use="sig")
            out.append(jwk)
        self.jwks = {"keys": out}

    def sign(self, key: rsa.RSAPrivateKey, *, aud: str = "drogue", exp_in: float = 60, **extra: Any) -> str:
        jwk = json.loads(RSAAlgorithm.to_jwk(key.public_key()))
        claims = {
            "iss": self.url,
            "aud": aud,
            "sub": "kc-user-1",
            "preferred_username": "alice",
            "exp": int(time.time() + exp_in),
            "realm_access": {"roles": ["drogue-user"]},
            **extra,
        }
        return jwt.encode(claims, key, algorithm="RS256", headers={"kid": jwk_thumbprint(jwk)})
