"""Showing a report: the final table, and a plot of throughput and latency over time (matplotlib, optional)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kedge.errors import KedgeError


def summary_rows(r: dict[str, Any]) -> list[tuple[str, str]]:
    def ms(p: dict[str, Any] | None) -> str:
        if not p or p.get("p50") is None:
            return "-"
        return f"p50 {p['p50']:.1f}  p90 {p['p90']:.1f}  p99 {p['p99']:.1f}  max {p['max']:.1f}"

    what = r["protocol"].upper()
    if r["protocol"] == "mqtt":
        what += f" {r['mqtt_version']} QoS {r['qos']}" + (" TLS" if r["tls"] else "")
    rows = [("run", f"{r['run_id']} ({r['scenario']}), app {r['app']}"),
            ("target", f"{what} at {r['target']}"),
            ("devices", f"{r['connected']} connected of {r['devices']} ({r['connect_failures']} failed), "
                        f"{r['procs']} load processes"),
            ("payload", f"{r['payload_bytes']} B, {r['duration_s']:g} s, "
                        f"rate {r['target_rate'] or 'flat out'}")]
    rates = r["rates"]
    if r["scenario"] == "publish":
        rows += [("sent", f"{r['sent']}  ({rates['sent_per_s']:.0f}/s)"),
                 ("confirmed", f"{r['confirmed']}  ({rates['confirmed_per_s']:.0f}/s; {r['unconfirmed']} refused "
                               "or unacknowledged)"),
                 ("delivered", f"{r['delivered']}  ({rates['delivered_per_s']:.0f}/s on events-{r['app']})"),
                 ("lost / duplicates", f"{r['lost']} / {r['duplicates']}"),
                 ("end-to-end latency ms", ms(r.get("latency_ms")))]
    if r["scenario"] == "connect-storm":
        rows += [("connects", f"{r['connects']}  ({r['connects_per_s']:.0f}/s, target {r['target_connect_rate']}/s)")]
    rows.append(("connect latency ms", ms(r.get("connect_latency_ms"))))
    if r["scenario"] == "idle":
        idle = r["idle"]
        per = idle.get("rss_per_connection_bytes")
        rows.append(("server RSS / connection", f"{per} B" if per is not None else f"- ({idle.get('why')})"))
    cpu = r["load_generator_cpu"]
    rows.append(("load generator CPU", f"{cpu['seconds']} s ({cpu['cores']} cores)"))
    server = r["server"]
    if server.get("cpu_cores_during_load") is not None:
        rows.append(("server CPU / RSS", f"{server['cpu_cores_during_load']} cores, "
                                         f"{server['rss_mib_after_load']} MiB"))
    if r["errors"]:
        rows.append(("errors", ", ".join(f"{k}: {v}" for k, v in sorted(r["errors"].items()))))
        if any(k.startswith("CONNACK") for k in r["errors"]):
            rows.append(("hint", "refused connects: the endpoint limits connects per source address "
                                 "(KEDGE_MQTT__CONNECT_RATE_PER_SOURCE, 0 disables), and the state agent answers "
                                 "'unavailable' when a connect burst outruns it (--connect-rate)"))
    return rows


def plot(report: dict[str, Any], path: Path) -> None:
    """Throughput (sent, confirmed, delivered per second) and latency (p50, p99) over the run, as an image."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise KedgeError("--plot needs matplotlib: pip install 'kedge[bench]'") from None
    rows = report.get("timeline") or []
    if not rows:
        raise KedgeError(f"nothing to plot for the {report['scenario']} scenario")
    t = [row["second"] for row in rows]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 6), sharex=True)
    for key in ("sent", "confirmed", "delivered"):
        top.plot(t, [row[key] for row in rows], label=key, marker=".")
    top.set_ylabel("messages / s")
    top.legend()
    top.grid(alpha=0.3)
    for key in ("p50_ms", "p99_ms"):
        bottom.plot(t, [row[key] if row[key] is not None else float("nan") for row in rows], label=key[:3],
                    marker=".")
    bottom.set_ylabel("end-to-end latency, ms")
    bottom.set_xlabel("second of the run")
    bottom.legend()
    bottom.grid(alpha=0.3)
    qos = f" QoS {report['qos']}" if report["protocol"] == "mqtt" else ""
    fig.suptitle(f"kedge bench {report['protocol']}{qos}: {report['connected']} devices, "
                 f"{report['payload_bytes']} B payloads")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
