"""The command & control API (reference §7.3) and its Kafka side: commands to ``iot-commands``, outcomes back."""
