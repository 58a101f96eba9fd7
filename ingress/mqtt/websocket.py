"""MQTT over WebSocket for the device endpoint (subprotocol ``mqtt``, reference §5): the shared adapter of
:mod:`kedge.mqtt_websocket` feeding the endpoint's connections."""

from __future__ import annotations

import ssl

from websockets.asyncio.server import Server

from ingress.mqtt.endpoint import MqttEndpoint
from kedge.mqtt_websocket import serve_mqtt_websocket

__all__ = ["serve_websocket"]


async def serve_websocket(
    endpoint: MqttEndpoint, host: str, port: int, ssl_context: ssl.SSLContext | None = None
) -> Server:
    """Listen for MQTT over WebSocket on ``host:port`` (any path)."""
    return await serve_mqtt_websocket(endpoint.protocol_factory, host, port, ssl_context=ssl_context,
                                      max_packet_size=endpoint.session_config.max_packet_size)
