"""The WebSocket integration (reference §10): ``GET /{app}`` streams the app's events as structured CloudEvents."""
