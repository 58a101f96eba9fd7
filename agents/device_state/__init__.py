"""The device-state agent: connection state, stealing, leases' effects, command routing.

``decide`` (pure rules) <- ``partition`` (one partition's tables and indexes, pure) <- ``agent`` (Faust shell).
"""
