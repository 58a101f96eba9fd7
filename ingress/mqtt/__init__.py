"""The MQTT device endpoint (`kedge serve mqtt`, reference §5): an asyncio shell around the sans-I/O session
of :mod:`protocols.mqtt`, the device authenticator, the shared publisher and the device-state client."""
