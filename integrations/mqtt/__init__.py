"""The MQTT integration (`kedge serve mqtt-integration`, reference §6): applications consume their events over
MQTT 3.1.1/5 (structured or binary CloudEvents, filters, shared subscriptions, QoS 1 with offsets committed
after PUBACK) and send commands to devices; an asyncio shell around the sans-I/O session of :mod:`protocols.mqtt`."""
