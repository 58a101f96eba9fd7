"""MQTT over WebSocket for the integration (reference §6: "plain/TLS/WebSocket, same server code"): the shared
adapter of :mod:`kedge.mqtt_websocket`, whose write back-pressure pauses the subscriptions (they stop taking
records from Kafka) while a slow client's socket is behind."""

from __future__ import annotations

import ssl
from typing import TYPE_CHECKING

from websockets.asyncio.server import Server

from integrations.mqtt.connection import IntegrationConnection
from kedge.mqtt_websocket import serve_mqtt_websocket

if TYPE_CHECKING:
    from integrations.mqtt.server import MqttIntegration

__all__ = ["serve_websocket"]


async def serve_websocket(integration: MqttIntegration, host: str, port: int,
                          ssl_context: ssl.SSLContext | None = None) -> Server:
    """Listen for MQTT over WebSocket on ``host:port``."""
    return await serve_mqtt_websocket(lambda: IntegrationConnection(integration), host, port,
                                      ssl_context=ssl_context,
                                      max_packet_size=integration.session_config.max_packet_size)
