"""`kedge serve <service>`: run one network service of the data plane in the foreground.

Each service lives in its own package (``registry``, ``ingress``, ``integrations``) and is imported lazily
here, so `kedge --help` stays fast and a process loads only what it runs.
"""

from __future__ import annotations

import typer

app = typer.Typer(help="Run one service: api, http, mqtt, mqtt-integration, ws-integration.",
                  no_args_is_help=True)
