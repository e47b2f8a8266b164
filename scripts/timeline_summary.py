#!/usr/bin/env python3
"""Summarise a KOLO_TIMELINE trace of a training run: where each step's device time went and how the
gradient allreduces overlapped the backward pass.

    python3 scripts/timeline_summary.py TRACE.json [--skip N] [--plot OUT.png] [--title T]

The training programs put the step's device phases on a "step" row (FORWARD, BACKWARD,
EXCHANGE_WAIT_AND_UPDATE; examples/common/step_timeline.h) and the runtime puts one span per fused device
allreduce on each tensor's row (launch on the host to completion). Per step this prints the phases, the
allreduce groups, the bytes whose allreduce completed before the backward pass ended, and how long after the
backward pass the last one completed (the communication left exposed). --plot draws the median step's
phases and allreduce groups as a Gantt chart through gnuplot.
"""
import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile

PHASES = ["FORWARD", "BACKWARD", "EXCHANGE_WAIT_AND_UPDATE"]


def load(path):
    with open(path) as f:
        events = json.load(f)
    if isinstance(events, dict):
        events = events["traceEvents"]
    rows = {e["pid"]: e["args"]["name"] for e in events if e.get("ph") == "M"}
    spans = [e for e in events if e.get("ph") == "X"]
    return rows, spans


def steps_of(rows, spans):
    """Each step as {phase: (start_us, end_us)}, in order."""
    steps = []
    for e in sorted((e for e in spans if rows[e["pid"]] == "step"), key=lambda e: e["ts"]):
        if e["name"] == PHASES[0]:
            steps.append({})
        if steps:
            steps[-1][e["name"]] = (e["ts"], e["ts"] + e["dur"])
    return [s for s in steps if all(p in s for p in PHASES)]


def allreduce_groups(rows, spans):
    """Fused device allreduces: every tensor of a group carries the same span; one entry per group."""
    groups = {}
    for e in spans:
        if rows[e["pid"]] == "step" or not e["name"].startswith("NCCL_"):
            continue
        key = (e["ts"], e["dur"])
        g = groups.setdefault(key, {"start": e["ts"], "end": e["ts"] + e["dur"], "tensors": 0,
                                    "bytes": e.get("args", {}).get("bytes", 0)})
        g["tensors"] += 1
    return sorted(groups.values(), key=lambda g: g["start"])


def summarise(steps, groups):
    out = []
    for s in steps:
        begin, end = s[PHASES[0]][0], s[PHASES[2]][1]
        bwd_end = s["BACKWARD"][1]
        mine = [g for g in groups if begin <= g["end"] <= end]
        before = sum(g["bytes"] for g in mine if g["end"] <= bwd_end)
        total = sum(g["bytes"] for g in mine)
        last = max((g["end"] for g in mine), default=bwd_end)
        out.append({
            "ms": {p: (s[p][1] - s[p][0]) / 1e3 for p in PHASES},
            "period_ms": (end - begin) / 1e3,
            "groups": len(mine),
            "bytes": total,
            "bytes_before_backward_end": before,
            "last_allreduce_after_backward_ms": (last - bwd_end) / 1e3,
            "step": s,
            "allreduces": mine,
        })
    return out


def plot(summary, path, title):
    gnuplot = shutil.which("gnuplot")
    if gnuplot is None:
        print("warning: gnuplot not found (apt-get install gnuplot-nox); no plot", file=sys.stderr)
        return
    s = sorted(summary, key=lambda x: x["period_ms"])[len(summary) // 2]
    t0 = s["step"][PHASES[0]][0]
    bars = []  # (row, start_ms, end_ms, label)
    colors = {"FORWARD": 0x2CA02C, "BACKWARD": 0x1F77B4, "EXCHANGE_WAIT_AND_UPDATE": 0xFF7F0E}
    for p in PHASES:
        a, b = s["step"][p]
        bars.append((1, (a - t0) / 1e3, (b - t0) / 1e3, colors[p]))
    for i, g in enumerate(s["allreduces"]):
        bars.append((2 + i, (g["start"] - t0) / 1e3, (g["end"] - t0) / 1e3, 0x7F7F7F))
    with tempfile.NamedTemporaryFile("w", suffix=".dat", delete=False) as d:
        for row, a, b, c in bars:
            d.write(f"{a:.3f} {row} {b - a:.3f} 0 {c}\n")
    ytics = ", ".join([f'"step (device)" 1'] + [
        f'"allreduce {i + 1}: {g["tensors"]} tensors, {g["bytes"] / 2**20:.0f} MiB" {2 + i}'
        for i, g in enumerate(s["allreduces"])])
    bwd_end = (s["step"]["BACKWARD"][1] - t0) / 1e3
    script = f"""set terminal pngcairo size 1000,{240 + 24 * len(s['allreduces'])} noenhanced
set output "{path}"
set title "{title}: median step {s['period_ms']:.1f} ms\\ndevice phases: green forward, blue backward, orange exchange wait + update\\ngrey: fused allreduce, host launch to completion; dashed line: end of backward"
set xlabel "ms from the step's start"
set yrange [{1 + len(s['allreduces']) + 0.7}:0.3]
set ytics ({ytics})
set grid x
set arrow from {bwd_end:.3f}, graph 0 to {bwd_end:.3f}, graph 1 nohead dt 2 lc 'black'
set style fill solid 0.8
unset key
plot "{d.name}" using 1:2:3:4:5 with vectors nohead lw 14 lc rgb variable
"""
    result = subprocess.run([gnuplot], input=script, text=True, capture_output=True)
    if result.returncode != 0:
        raise SystemExit(f"gnuplot failed:\n{result.stderr}")
    print(f"wrote {path}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("trace")
    ap.add_argument("--skip", type=int, default=2, help="warm-up steps left out (default 2)")
    ap.add_argument("--plot", help="PNG of the median step")
    ap.add_argument("--title", default="")
    a = ap.parse_args(argv)
    rows, spans = load(a.trace)
    steps = steps_of(rows, spans)
    if len(steps) <= a.skip:
        raise SystemExit(f"{a.trace}: {len(steps)} steps with device phases (run with KOLO_TIMELINE set), "
                         f"need more than --skip {a.skip}")
    summary = summarise(steps, allreduce_groups(rows, spans))[a.skip:]
    print(f"{a.trace}: {len(summary)} steps after {a.skip} left out")
    print(f"{'step':>4} {'period':>8} {'forward':>8} {'backward':>9} {'wait+upd':>9} {'groups':>6} {'MiB':>7} "
          f"{'done in bwd':>11} {'last after bwd':>14}")
    for i, x in enumerate(summary):
        m = x["ms"]
        frac = x["bytes_before_backward_end"] / x["bytes"] if x["bytes"] else 0.0
        print(f"{i + a.skip:>4} {x['period_ms']:8.2f} {m['FORWARD']:8.2f} {m['BACKWARD']:9.2f} "
              f"{m['EXCHANGE_WAIT_AND_UPDATE']:9.2f} {x['groups']:>6} {x['bytes'] / 2**20:7.1f} {100 * frac:10.1f}% "
              f"{x['last_allreduce_after_backward_ms']:13.2f}")
    med = {k: statistics.median(x["ms"][k] for x in summary) for k in PHASES}
    print(f"median: period {statistics.median(x['period_ms'] for x in summary):.2f} ms, forward "
          f"{med['FORWARD']:.2f}, backward {med['BACKWARD']:.2f}, exchange wait + update "
          f"{med['EXCHANGE_WAIT_AND_UPDATE']:.2f}, last allreduce "
          f"{statistics.median(x['last_allreduce_after_backward_ms'] for x in summary):+.2f} ms after backward")
    if a.plot:
        plot(summary, a.plot, a.title or a.trace)


if __name__ == "__main__":
    main()
