"""The HTTP device endpoint (`kedge serve http`, reference §7.1): an ASGI app publishing through
:mod:`ingress.publish`."""

from ingress.http.app import HttpEndpoint, Resources

__all__ = ["HttpEndpoint", "Resources"]
