"""Device authentication for the endpoints (reference §5, §9).

:class:`registry.authn.authenticator.RegistryAuthenticator` implements ``schemas.auth.DeviceAuthenticator``
on the registry database with a :class:`registry.authn.cache.VerificationCache`; every endpoint process
runs one (``kedge.wiring``) and keeps its cache fresh from the ``registry`` topic (``follow``). Passwords
(``passwords``, ``sha512_crypt``) and client certificates (``certs``) are checked here.
"""
