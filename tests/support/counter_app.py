"""A minimal Kedge-built Faust app for recovery tests: counts records per key in a RocksDB table.

Usage: python -m tests.support.counter_app BOOTSTRAP DATA_DIR IN_TOPIC OUT_TOPIC [--no-workaround]
Every record on IN_TOPIC increments its key's count; the new count is sent to OUT_TOPIC (key -> count).
"""

from __future__ import annotations

import sys
from pathlib import Path

from topology.faust_app import ROCKSDB_OPTIONS, FaustConfig, make_app


def main(argv: list[str]) -> None:
    bootstrap, data_dir, in_topic, out_topic = argv[:4]
    workaround = "--no-workaround" not in argv
    app = make_app(FaustConfig(
        app_id=f"counter-{in_topic}", bootstrap_servers=bootstrap, data_dir=Path(data_dir), partitions=2,
        session_timeout_s=3.0, heartbeat_interval_s=0.5, rebalance_timeout_s=3.0,
        fetch_highwater_workaround=workaround,
    ))
    source = app.topic(in_topic, key_type=bytes, value_type=bytes, key_serializer="raw",
                       value_serializer="raw", partitions=2)
    sink = app.topic(out_topic, key_type=bytes, value_type=bytes, key_serializer="raw",
                     value_serializer="raw", partitions=1)
    counts = app.Table("counts", default=int, partitions=2, key_type=str, value_type=int,
                       options=ROCKSDB_OPTIONS)

    @app.agent(source)
    async def count(stream):  # type: ignore[no-untyped-def]
        async for event in stream.events():
            key = event.key.decode()
            counts[key] += 1
            await sink.send(key=event.key, value=str(counts[key]).encode())

    from faust import Worker

    Worker(app, loglevel="info").execute_from_commandline()


if __name__ == "__main__":
    main(sys.argv[1:])
