"""The access service: authentication of users (access tokens, JWTs), the local token issuer, bootstrap.

The integrations (MQTT, WebSocket) call :meth:`Access.authenticate_api_key` and
:meth:`Access.authenticate_jwt` directly; the API host goes through
:func:`registry.access.http.current_identity`. Both return None for credentials that are wrong and
raise :class:`AccessUnavailable` / ``DatabaseError`` when the back end cannot be asked
(fail closed: "server unavailable", never "accepted").
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncEngine

from registry.access import secrets_dir, tokens
from registry.access.authz import Permission, authorize
from registry.access.credentials import ApiKeyCredential, HttpCredential, JwtCredential
from registry.access.errors import AccessUnavailable, AuthenticationFailed, InvalidJwt
from registry.access.identity import ADMIN_ROLE, Identity, roles_from_claims
from registry.access.jwts import JwtVerifier, LocalIssuer, OidcVerifier
from registry.access.store import AccessStore, AppAccess
from registry.errors import Conflict, DatabaseError, NotFound

__all__ = ["Access", "AccessConfig", "IssuedJwt"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class AccessConfig:
    """What the access layer needs of the settings (``kedge`` builds it from ``Settings``).

    ``oidc_issuer`` None: Kedge is its own issuer (RS256 key in ``data_dir``, ``POST /api/token``), tokens
    carry ``iss=local_issuer`` and ``aud=oidc_audience or "kedge"``. Otherwise JWTs are validated against that
    issuer's JWKS (and its ``oidc_audience`` when set) and Kedge issues none.
    """

    data_dir: Path
    oidc_issuer: str | None = None
    oidc_audience: str | None = None
    jwt_ttl_s: int = 3600
    anonymous_write: bool = False
    admin_username: str = "admin"
    local_issuer: str = "kedge"
    jwks_cache_s: float = 300.0
    bcrypt_rounds: int = 12


@dataclass(frozen=True, slots=True)
class IssuedJwt:
    token: str
    #: expiry, seconds since the epoch
    exp: int
    #: lifetime in seconds
    expires_in: int

    def __repr__(self) -> str:
        return f"IssuedJwt(token='***', exp={self.exp})"


class Access:
    """Authentication and authorization over one :class:`AccessStore`."""

    def __init__(
        self, store: AccessStore, config: AccessConfig, *, issuer: LocalIssuer | None, verifier: JwtVerifier
    ) -> None:
        self.store = store
        self.config = config
        self.issuer = issuer
        self.verifier = verifier

    @classmethod
    def create(cls, engine: AsyncEngine, config: AccessConfig) -> Access:
        """Build from the config: the local issuer (key from the data dir) or an OIDC verifier."""
        store = AccessStore(engine, bcrypt_rounds=config.bcrypt_rounds)
        if config.oidc_issuer:
            verifier = OidcVerifier(config.oidc_issuer, audience=config.oidc_audience, cache_s=config.jwks_cache_s)
            return cls(store, config, issuer=None, verifier=verifier)
        key = secrets_dir.load_or_create_signing_key(config.data_dir)
        issuer = LocalIssuer(key, issuer=config.local_issuer, audience=config.oidc_audience or "kedge")
        return cls(store, config, issuer=issuer, verifier=issuer.verifier())

    # -------------------------------------------------------------------------------- authentication

    async def authenticate_api_key(self, username: str, token: str) -> Identity | None:
        """``username`` + access token -> the token owner's identity, or None.

        A token that fails the syntactic check (length, ``drg_`` prefix, CRC) is refused without a lookup. The
        identity has the token owner's user id and, for local users, their roles (Drogue gives access-token
        identities no roles; Kedge lets a local admin's token act as admin). ``exp`` is None.
        """
        if not tokens.is_valid(token):
            return None
        try:
            return await self._api_key_identity(username, token)
        except DatabaseError as e:
            raise AccessUnavailable(e.message) from e

    async def _api_key_identity(self, username: str, token: str) -> Identity | None:
        record = await self.store.token_by_prefix(tokens.prefix_of(token))
        if record is None or record.username != username or not tokens.token_matches(token, record.hashed_token):
            return None
        user = await self.store.user_by_id(record.user_id)
        roles = user.roles if user is not None else frozenset()
        return Identity(user_id=record.user_id, username=record.username, roles=roles, via="api_key")

    async def authenticate_jwt(self, token: str) -> Identity | None:
        """A JWT (signature, `exp`, issuer, audience checked) -> identity with roles and `exp`; or None."""
        try:
            return await self._jwt_identity(token)
        except InvalidJwt as e:
            log.debug("JWT refused: %s", e)
            return None

    async def authenticate(self, credential: HttpCredential) -> Identity:
        """As the two above, raising 403 :class:`AuthenticationFailed` with the reason instead of None."""
        if isinstance(credential, JwtCredential):
            try:
                return await self._jwt_identity(credential.token)
            except InvalidJwt as e:
                raise AuthenticationFailed(str(e)) from e
        assert isinstance(credential, ApiKeyCredential)
        if not tokens.is_valid(credential.token):
            raise AuthenticationFailed("Malformed access token")
        identity = await self.authenticate_api_key(credential.username, credential.token)
        if identity is None:
            raise AuthenticationFailed("Unknown user or access token")
        return identity

    async def _jwt_identity(self, token: str) -> Identity:
        claims = await self.verifier.verify(token)
        return Identity(
            user_id=claims["sub"],
            username=claims.get("preferred_username") or None,
            roles=roles_from_claims(claims),
            exp=int(claims["exp"]),
            via="jwt",
        )

    # -------------------------------------------------------------------------------- the local issuer

    async def issue_jwt(self, username: str, password: str, ttl_s: int | None = None) -> IssuedJwt:
        """Exchange a local user's password for a signed JWT (``ttl_s`` 1..``jwt_ttl_s``, default the max)."""
        if self.issuer is None:
            raise NotFound(f"Token exchange is disabled: JWTs are issued by {self.config.oidc_issuer}")
        user = await self.store.check_user_password(username, password)
        if user is None:
            raise AuthenticationFailed("Invalid username or password")
        ttl = self.config.jwt_ttl_s if ttl_s is None else min(ttl_s, self.config.jwt_ttl_s)
        token, exp = self.issuer.issue(user_id=user.id, username=user.username, roles=user.roles, ttl_s=ttl)
        return IssuedJwt(token=token, exp=exp, expires_in=ttl)

    async def ensure_admin(self) -> tuple[str, str | None, bool]:
        """Create the local admin user on first start: ``(username, password, created_now)``.

        The password is random, kept in ``<data_dir>/admin-credentials.json`` (mode 0600) and meant to be
        printed once by the caller when ``created_now``. On later starts the password comes from that file
        (None if it was removed). Safe when several processes start at once on one data dir and database.
        """
        name, data_dir = self.config.admin_username, self.config.data_dir
        exists = await self.store.user_by_name(name) is not None
        kept = secrets_dir.read_admin_credentials(data_dir)  # read after the check: a racing creator wrote it
        kept_password = kept[1] if kept and kept[0] == name else None
        if exists:
            return name, kept_password, False
        if kept_password is None:
            if kept is not None:  # the file of another admin name
                secrets_dir.remove_admin_credentials(data_dir)
            # exclusive publish: of processes racing here, all end up with the password of the first writer
            secrets_dir.write_admin_credentials(data_dir, name, secrets.token_urlsafe(18))
            kept = secrets_dir.read_admin_credentials(data_dir)
            if kept is None:
                raise RuntimeError(f"cannot keep the admin credentials in {data_dir}")
            kept_password = kept[1]
        try:
            await self.store.create_user(name, kept_password, frozenset({ADMIN_ROLE}))
        except Conflict:  # another process created it first (normally with the same, file-kept password)
            if await self.store.check_user_password(name, kept_password) is not None:
                return name, kept_password, False
            secrets_dir.remove_admin_credentials(data_dir)  # created elsewhere (another data dir): not ours
            return name, None, False
        return name, kept_password, True

    # --------------------------------------------------------------------------------- authorization

    async def may(self, app: str, identity: Identity, permission: Permission | str) -> bool | None:
        """May ``identity`` do ``permission`` (``"Read"``, ``"Write"``…) on ``app``? None if there is no such app.

        For the integrations (MQTT SUBSCRIBE needs Read, command PUBLISH needs Write, WebSocket needs Read).
        Raises :class:`AccessUnavailable` when the database cannot be asked.
        """
        try:
            found = await self.store.app_access(app)
        except DatabaseError as e:
            raise AccessUnavailable(e.message) from e
        if found is None:
            return None
        return self.allowed(found, identity, Permission(permission))

    def allowed(self, app: AppAccess, identity: Identity, permission: Permission) -> bool:
        """:func:`registry.access.authz.authorize` with this config's ``anonymous_write``."""
        return authorize(app.owner, app.members, identity, permission, anonymous_write=self.config.anonymous_write)
