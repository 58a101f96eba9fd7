"""The management client of the ``kedge`` CLI: contexts (config file), the API host client, the stream client.

Used only by the management commands (``kedge/commands/manage_*.py``); the services never import it.
"""
