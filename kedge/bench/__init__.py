"""`kedge bench`: a load generator and end-to-end checker for a running Kedge.

Pure parts (payload layout, client-side MQTT frames, statistics) are separate from the I/O: the load processes
(:mod:`kedge.bench.loadproc`, raw asyncio sockets), the events consumer (:mod:`kedge.bench.consumer`), the
registry provisioning (:mod:`kedge.bench.provision`) and the run orchestration (:mod:`kedge.bench.run`).
"""
