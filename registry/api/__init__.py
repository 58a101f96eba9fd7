"""The registry's HTTP API (FastAPI routers): resources (§8) and device authentication (§9)."""
