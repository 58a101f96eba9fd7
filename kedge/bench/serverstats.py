"""CPU and RSS of the server processes under test (needs psutil; without it the report says so)."""

from __future__ import annotations

import time
from typing import Any

try:
    import psutil
except ImportError:  # pragma: no cover - psutil comes with the `bench` extra
    psutil = None


class ServerWatch:
    """Samples named points of a run: RSS and CPU seconds of the watched processes."""

    def __init__(self, pids: list[int]) -> None:
        self.pids = pids
        self.samples: dict[str, dict[str, float]] = {}

    @staticmethod
    def find(port: int) -> list[int]:
        """The process listening on ``port`` on this machine (empty if unknown or not local)."""
        if psutil is None:
            return []
        try:
            return sorted({c.pid for c in psutil.net_connections(kind="tcp")
                           if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port and c.pid})
        except (psutil.Error, OSError):
            return []

    def sample(self, name: str) -> None:
        if psutil is None or not self.pids:
            return
        rss = cpu = 0.0
        for pid in self.pids:
            try:
                proc = psutil.Process(pid)
                rss += proc.memory_info().rss
                times = proc.cpu_times()
                cpu += times.user + times.system
            except psutil.Error:
                continue
        self.samples[name] = {"at": time.time(), "rss_bytes": rss, "cpu_s": cpu}

    def report(self) -> dict[str, Any]:
        if psutil is None:
            return {"watched": False, "why": "psutil is not installed (pip install 'kedge[bench]')"}
        if not self.pids:
            return {"watched": False, "why": "no local process found listening on the target port"}
        out: dict[str, Any] = {"watched": True, "pids": self.pids}
        before, after = self.samples.get("connected"), self.samples.get("loaded")
        if before and after:
            span = max(1e-3, after["at"] - before["at"])
            out["cpu_cores_during_load"] = round((after["cpu_s"] - before["cpu_s"]) / span, 2)
            out["rss_mib_after_load"] = round(after["rss_bytes"] / 2**20, 1)
        return out

    def per_connection(self, before: str, after: str, connections: int) -> dict[str, Any]:
        a, b = self.samples.get(before), self.samples.get(after)
        if not a or not b or connections <= 0:
            return {"rss_per_connection_bytes": None, "why": self.report().get("why", "no samples")}
        return {"connections": connections, "rss_before_mib": round(a["rss_bytes"] / 2**20, 1),
                "rss_after_mib": round(b["rss_bytes"] / 2**20, 1),
                "rss_per_connection_bytes": round((b["rss_bytes"] - a["rss_bytes"]) / connections)}
