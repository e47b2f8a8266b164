#!/usr/bin/env python3
"""Scaling studies for kolo: sweep rank counts over a training command, collect throughput, write CSV + PNG.

Two subcommands:

  sweep  Runs a command template once per rank count (and per OMP thread count when --threads is given).
         Weak scaling keeps the per-rank batch fixed; strong scaling keeps the global batch fixed and
         divides it over the ranks. Throughput is read from tf_cnn_benchmarks-style lines the training
         programs print ("total images/sec: N" or "total tokens/sec: N"); the last such line wins.
         Placeholders in the template: {ranks} {batch} (per-rank batch) {global_batch} {threads}.
  busbw  Reads allreduce benchmark tables in nccl-tests columns (size count type ... time algbw busbw) from
         one or more files and plots bus bandwidth against message size, one line per file.

Plots go through gnuplot (Debian: apt-get install gnuplot-nox). Without it the CSV, data and .gp files
are still written, with a warning, so the pictures can be rendered elsewhere with `gnuplot NAME.gp`.
See docs/launch.md for the studies and how to run them on a cluster.
"""

import argparse
import csv
import os
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections import deque

THROUGHPUT_RE = re.compile(r"total\s+(images|tokens)/sec:\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)")
# Lines worth echoing while a run is in progress: the training programs' step/loss/throughput reports.
PROGRESS_RE = re.compile(r"(step|loss|/sec|eta|epoch|accuracy|bleu)", re.IGNORECASE)


class StudyError(Exception):
    """A request that cannot be carried out; printed without a traceback."""


# ---------------------------------------------------------------------------------------------- parsing


def parse_throughput(text, metric="auto"):
    """Returns (unit, value) of the last 'total images/sec' or 'total tokens/sec' line, or None."""
    found = None
    for match in THROUGHPUT_RE.finditer(text):
        unit = match.group(1)
        if metric in ("auto", unit):
            found = (unit, float(match.group(2)))
    return found


def parse_extra_metrics(text, extras):
    """extras: list of (name, compiled regex with one group). Last match of each wins; missing -> ''."""
    values = {}
    for name, regex in extras:
        matches = regex.findall(text)
        values[name] = float(matches[-1]) if matches else ""
    return values


def parse_busbw_table(text, source="input"):
    """Parses nccl-tests style rows. Columns are located by the header line naming 'size' and 'busbw', so
    kolo_allreduce_bench's 'size count type time algbw busbw' and nccl-tests' out-of-place/in-place layout
    (first time/algbw/busbw columns used) both work. Returns a list of dicts."""
    header = None
    rows = []
    for lineno, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped:
            continue
        if stripped.startswith("#"):
            words = stripped.lstrip("#").split()
            if "size" in words and "busbw" in words and header is None:
                header = words
            continue
        if header is None:
            continue
        words = stripped.split()
        if not words or not words[0].isdigit():
            continue
        if len(words) < header.index("busbw") + 1:
            raise StudyError(f"{source}:{lineno}: row has {len(words)} columns, header needs "
                             f"{header.index('busbw') + 1}: {stripped!r}")

        def column(name, convert=float):
            if name not in header:
                return ""
            try:
                return convert(words[header.index(name)])
            except ValueError as err:
                raise StudyError(f"{source}:{lineno}: column {name} is not a number: {stripped!r}") from err

        rows.append({"size": column("size", int), "count": column("count", int),
                     "type": words[header.index("type")] if "type" in header else "",
                     "time_us": column("time"), "algbw": column("algbw"), "busbw": column("busbw")})
    if header is None:
        raise StudyError(f"{source}: no header line with 'size' and 'busbw' columns (nccl-tests format)")
    if not rows:
        raise StudyError(f"{source}: header found but no data rows")
    return rows


def parse_int_list(text, what):
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError as err:
        raise StudyError(f"{what} must be comma-separated integers, got {text!r}") from err
    if not values or any(v < 0 for v in values):
        raise StudyError(f"{what} must list non-negative integers, got {text!r}")
    return values


# ---------------------------------------------------------------------------------------------- sweep


def plan_points(mode, ranks_list, batch, threads_list):
    """The runs of a sweep, in order, with the per-rank and global batch of each."""
    points = []
    for threads in threads_list:
        for ranks in ranks_list:
            if ranks < 1:
                raise StudyError(f"rank counts must be at least 1, got {ranks}")
            if mode == "weak":
                per_rank, global_batch = batch, batch * ranks
            else:
                if batch % ranks:
                    raise StudyError(f"strong scaling: global batch {batch} does not divide over {ranks} ranks; "
                                     f"pick a global batch divisible by every rank count")
                per_rank, global_batch = batch // ranks, batch
            points.append({"ranks": ranks, "threads": threads, "per_rank_batch": per_rank,
                           "global_batch": global_batch})
    return points


def render_command(template, point):
    values = {"ranks": point["ranks"], "batch": point["per_rank_batch"], "global_batch": point["global_batch"],
              "threads": "" if point["threads"] is None else point["threads"]}
    try:
        return template.format(**values)
    except (KeyError, IndexError) as err:
        raise StudyError(f"unknown placeholder {err} in --command; known: {{ranks}} {{batch}} "
                         f"{{global_batch}} {{threads}}") from err


def run_point(command, label, timeout, verbose):
    """Runs one command (split like a shell would, but without one), echoing progress lines; returns
    (output text, seconds). A run still going after `timeout` seconds is killed, output or not."""
    start = time.monotonic()
    tail = deque(maxlen=40)
    chunks = []
    try:
        # Own process group, so a kill also reaches the ranks mpirun started.
        proc = subprocess.Popen(shlex.split(command), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, errors="replace", start_new_session=True)
    except OSError as err:
        raise StudyError(f"{label}: cannot start {command!r}: {err}") from err
    timed_out = threading.Event()

    def kill_group():
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def kill_on_timeout():
        timed_out.set()
        kill_group()

    watchdog = threading.Timer(timeout, kill_on_timeout) if timeout else None
    if watchdog:
        watchdog.start()
    try:
        for line in proc.stdout:
            chunks.append(line)
            tail.append(line)
            if verbose or PROGRESS_RE.search(line):
                sys.stdout.write(f"  [{label}] {line}")
                sys.stdout.flush()
        rc = proc.wait()
    finally:
        if watchdog:
            watchdog.cancel()
        if proc.poll() is None:
            kill_group()
            proc.wait()
    if timed_out.is_set():
        raise StudyError(f"{label}: killed after {timeout}s: {command}\n--- last output ---\n{''.join(tail)}")
    if rc != 0:
        raise StudyError(f"{label}: exit status {rc} from {command}\n--- last output ---\n{''.join(tail)}")
    return "".join(chunks), time.monotonic() - start


def add_derived(rows):
    """Speedup, ideal throughput and efficiency against the smallest rank count of each thread series."""
    for threads in {r["threads"] for r in rows}:
        series = sorted((r for r in rows if r["threads"] == threads), key=lambda r: r["ranks"])
        base = series[0]
        for r in series:
            ideal = base["throughput"] * r["ranks"] / base["ranks"]
            r["ideal_throughput"] = ideal
            r["speedup"] = r["throughput"] / base["throughput"] if base["throughput"] else float("nan")
            r["efficiency"] = r["throughput"] / ideal if ideal else float("nan")
            r["per_rank_throughput"] = r["throughput"] / r["ranks"]


def format_table(rows, extra_names):
    headers = ["ranks", "threads", "batch/rank", "global", "throughput", "per rank", "speedup", "efficiency",
               "seconds"] + extra_names
    table = [headers]
    for r in rows:
        table.append([str(r["ranks"]), "-" if r["threads"] is None else str(r["threads"]),
                      str(r["per_rank_batch"]), str(r["global_batch"]), f"{r['throughput']:.1f} {r['unit']}/s",
                      f"{r['per_rank_throughput']:.1f}", f"{r['speedup']:.2f}x", f"{100 * r['efficiency']:.1f}%",
                      f"{r['seconds']:.1f}"] + [str(r.get(n, "")) for n in extra_names])
    widths = [max(len(row[i]) for row in table) for i in range(len(headers))]
    lines = ["  ".join(cell.rjust(w) for cell, w in zip(row, widths)) for row in table]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


SWEEP_COLUMNS = ["name", "mode", "ranks", "threads", "per_rank_batch", "global_batch", "unit", "throughput",
                 "per_rank_throughput", "ideal_throughput", "speedup", "efficiency", "seconds", "repeats"]


def cmd_sweep(args):
    extras = []
    for spec in args.extra_metric or []:
        name, sep, pattern = spec.partition("=")
        if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise StudyError(f"--extra-metric wants NAME=REGEX, got {spec!r}")
        try:
            regex = re.compile(pattern)
        except re.error as err:
            raise StudyError(f"--extra-metric {name}: bad regex: {err}") from err
        if regex.groups != 1:
            raise StudyError(f"--extra-metric {name}: the regex needs exactly one group capturing the number")
        extras.append((name, regex))
    extra_names = [n for n, _ in extras]

    ranks_list = parse_int_list(args.ranks, "--ranks")
    threads_list = parse_int_list(args.threads, "--threads") if args.threads else [None]
    if args.threads is None and "{threads}" in args.command:
        raise StudyError("--command uses {threads} but no --threads list was given")
    if args.threads is not None and "{threads}" not in args.command:
        raise StudyError("--threads was given but --command has no {threads}: every series would run the same command")
    points = plan_points(args.mode, ranks_list, args.batch, threads_list)
    os.makedirs(args.out, exist_ok=True)

    rows, failed = [], []
    started = time.monotonic()
    for index, point in enumerate(points, 1):
        command = render_command(args.command, point)
        label = f"{index}/{len(points)} ranks={point['ranks']}" + (
            "" if point["threads"] is None else f" threads={point['threads']}")
        print(f"[{label}] {command}", flush=True)
        values, seconds, unit, extra_values = [], 0.0, None, {}
        try:
            for _ in range(args.repeat):
                output, took = run_point(command, label, args.timeout, args.verbose)
                seconds += took
                found = parse_throughput(output, args.metric)
                if found is None:
                    wanted = "images or tokens" if args.metric == "auto" else args.metric
                    tail = "".join(output.splitlines(True)[-20:])
                    raise StudyError(f"{label}: no 'total {wanted}/sec: N' line in the output of {command}\n"
                                     f"--- last output ---\n{tail}")
                unit = found[0]
                values.append(found[1])
                extra_values = parse_extra_metrics(output, extras)
        except StudyError as err:  # the other points still run and are written; the sweep fails at the end
            print(f"scaling_study: {err}", file=sys.stderr, flush=True)
            failed.append(label)
            continue
        row = dict(point, name=args.name, mode=args.mode, unit=unit, throughput=statistics.median(values),
                   seconds=seconds / args.repeat, repeats=args.repeat, **extra_values)
        rows.append(row)
        elapsed = time.monotonic() - started
        eta = elapsed / index * (len(points) - index)
        print(f"[{label}] {row['throughput']:.2f} {unit}/sec in {row['seconds']:.1f}s; "
              f"sweep {elapsed:.0f}s elapsed, ETA {eta:.0f}s", flush=True)

    if not rows:
        raise StudyError(f"every point failed: {', '.join(failed)}")
    add_derived(rows)
    csv_path = os.path.join(args.out, f"{args.name}.csv")
    with open(csv_path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=SWEEP_COLUMNS + extra_names, extrasaction="ignore")
        writer.writeheader()
        for r in rows:
            writer.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in SWEEP_COLUMNS + extra_names})
    print(f"\n{args.name}: {args.mode} scaling, {'per-rank' if args.mode == 'weak' else 'global'} batch "
          f"{args.batch}\n{format_table(rows, extra_names)}\n\nwrote {csv_path}")
    plot_sweep(rows, args.out, args.name, args.mode)
    if failed:
        raise StudyError(f"{len(failed)} of {len(points)} points failed ({', '.join(failed)}); the others are in "
                         f"{csv_path}, speedups against the smallest rank count that ran")
    return 0


# ---------------------------------------------------------------------------------------------- busbw


def cmd_busbw(args):
    os.makedirs(args.out, exist_ok=True)
    series = []
    for spec in args.input:
        label, sep, path = spec.partition("=")
        if not sep:
            label, path = os.path.splitext(os.path.basename(spec))[0], spec
        try:
            with open(path, errors="replace") as f:
                text = f.read()
        except OSError as err:
            raise StudyError(f"cannot read {path}: {err}") from err
        series.append((label, parse_busbw_table(text, path)))
    csv_path = os.path.join(args.out, f"{args.name}.csv")
    with open(csv_path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["label", "size", "count", "type", "time_us", "algbw", "busbw"])
        for label, rows in series:
            for r in rows:
                writer.writerow([label, r["size"], r["count"], r["type"], r["time_us"], r["algbw"], r["busbw"]])
    for label, rows in series:
        peak = max(rows, key=lambda r: r["busbw"])
        print(f"{label}: {len(rows)} sizes, peak busbw {peak['busbw']:.2f} GB/s at {peak['size']} B")
    print(f"wrote {csv_path}")
    plot_busbw(series, args.out, args.name)
    return 0


# ---------------------------------------------------------------------------------------------- plots


def gp_quote(text):
    return '"' + str(text).replace("\\", "\\\\").replace('"', '\\"') + '"'


def render(gp_path):
    gnuplot = shutil.which("gnuplot")
    if gnuplot is None:
        print(f"warning: gnuplot not found (apt-get install gnuplot-nox); skipped PNG, run `gnuplot {gp_path}` "
              f"where it is installed", file=sys.stderr)
        return False
    result = subprocess.run([gnuplot, os.path.basename(gp_path)], cwd=os.path.dirname(gp_path) or ".",
                            capture_output=True, text=True)
    if result.returncode != 0:
        raise StudyError(f"gnuplot failed on {gp_path}:\n{result.stderr}")
    return True


def plot_sweep(rows, out, name, mode):
    """NAME_throughput.png (measured vs ideal) and NAME_efficiency.png (with the 100% line)."""
    series = sorted({r["threads"] for r in rows}, key=lambda t: -1 if t is None else t)
    blocks = []
    for threads in series:
        pts = sorted((r for r in rows if r["threads"] == threads), key=lambda r: r["ranks"])
        blocks.append("\n".join(f"{r['ranks']} {r['throughput']} {r['ideal_throughput']} {100 * r['efficiency']}"
                                for r in pts))
    dat = f"{name}.dat"
    with open(os.path.join(out, dat), "w") as f:
        f.write("# ranks throughput ideal efficiency_percent; one block per OMP thread count\n")
        f.write("\n\n\n".join(blocks) + "\n")
    unit = rows[0]["unit"]
    all_ranks = sorted({r["ranks"] for r in rows})
    xtics = ", ".join(f'"{n}" {n}' for n in all_ranks)
    names = [f"{mode} scaling" if t is None else f"{t} OMP threads/rank" for t in series]
    throughput_plots, efficiency_plots = [], []
    for i, label in enumerate(names):
        throughput_plots.append(f"{gp_quote(dat)} index {i} using 1:2 with linespoints lw 2 pt 7 "
                                f"title {gp_quote(label)}")
        throughput_plots.append(f"{gp_quote(dat)} index {i} using 1:3 with lines dt 2 lw 1 lc {i + 1} "
                                f"title {gp_quote('ideal' + ('' if len(names) == 1 else ' (' + label + ')'))}")
        efficiency_plots.append(f"{gp_quote(dat)} index {i} using 1:4 with linespoints lw 2 pt 7 "
                                f"title {gp_quote(label)}")
    common = (f"set terminal pngcairo size 900,600 noenhanced\nset grid\nset key left top\n"
              f"set xlabel 'ranks'\nset logscale x 2\nset xtics ({xtics})\n"
              f"set xrange [{all_ranks[0] / 1.2}:{all_ranks[-1] * 1.2}]\n")
    gp = os.path.join(out, f"{name}.gp")
    with open(gp, "w") as f:
        f.write(common)
        f.write(f"set output {gp_quote(name + '_throughput.png')}\n"
                f"set title {gp_quote(name + ': ' + mode + ' scaling throughput')}\nset ylabel '{unit}/sec'\nset yrange [0:*]\n")
        f.write("plot " + ", \\\n     ".join(throughput_plots) + "\n")
        f.write(f"set output {gp_quote(name + '_efficiency.png')}\n"
                f"set title {gp_quote(name + ': ' + mode + ' scaling efficiency')}\nset ylabel 'efficiency vs ideal (%)'\nset yrange [0:110]\n"
                f"set key left bottom\n")
        f.write("plot " + ", \\\n     ".join(efficiency_plots) + ", 100 with lines dt 2 lc 'black' title 'ideal'\n")
    if render(gp):
        print(f"wrote {os.path.join(out, name + '_throughput.png')} and {name}_efficiency.png")


def plot_busbw(series, out, name):
    dat = f"{name}.dat"
    with open(os.path.join(out, dat), "w") as f:
        f.write("# size_bytes busbw_GBps algbw_GBps; one block per input\n")
        f.write("\n\n\n".join("\n".join(f"{r['size']} {r['busbw']} {r['algbw']}" for r in rows)
                              for _, rows in series) + "\n")
    plots = [f"{gp_quote(dat)} index {i} using 1:2 with linespoints lw 2 pt 7 title {gp_quote(label)}"
             for i, (label, _) in enumerate(series)]
    gp = os.path.join(out, f"{name}.gp")
    with open(gp, "w") as f:
        f.write("set terminal pngcairo size 900,600 noenhanced\nset grid\nset key left top\n"
                f"set output {gp_quote(name + '.png')}\nset title {gp_quote(name + ': allreduce bus bandwidth')}\n"
                "set xlabel 'message size (bytes)'\nset ylabel 'busbw (GB/s)'\nset logscale x 2\n"
                "set format x '%.0b %BB'\nset yrange [0:*]\n")
        f.write("plot " + ", \\\n     ".join(plots) + "\n")
    if render(gp):
        print(f"wrote {os.path.join(out, name + '.png')}")


# ---------------------------------------------------------------------------------------------- main


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    sw = sub.add_parser("sweep", help="run a command template over rank counts")
    sw.add_argument("--mode", choices=["weak", "strong"], required=True)
    sw.add_argument("--ranks", required=True, help="comma-separated rank counts, e.g. 1,2,4")
    sw.add_argument("--batch", type=int, required=True,
                    help="per-rank batch (weak) or global batch (strong)")
    sw.add_argument("--command", required=True,
                    help="template, e.g. 'kolorun -np {ranks} train_resnet --batch-size {batch}'")
    sw.add_argument("--threads", help="comma-separated OMP thread counts to sweep too, substituted as {threads}")
    sw.add_argument("--metric", choices=["auto", "images", "tokens"], default="auto")
    sw.add_argument("--extra-metric", action="append",
                    help="NAME=REGEX with one group: an extra CSV column, e.g. time_to_acc='reached .* in ([0-9.]+)s'")
    sw.add_argument("--repeat", type=int, default=1, help="runs per point; the median throughput is kept")
    sw.add_argument("--timeout", type=float, default=0, help="seconds per run, 0 for none")
    sw.add_argument("--name", default="scaling")
    sw.add_argument("--out", required=True, help="output directory")
    sw.add_argument("-v", "--verbose", action="store_true", help="echo every output line, not only progress")
    bw = sub.add_parser("busbw", help="plot allreduce busbw vs size from nccl-tests style tables")
    bw.add_argument("--input", action="append", required=True, help="LABEL=FILE or FILE (repeatable)")
    bw.add_argument("--name", default="allreduce_busbw")
    bw.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    try:
        if args.cmd == "sweep":
            if args.batch < 1 or args.repeat < 1:
                raise StudyError("--batch and --repeat must be at least 1")
            return cmd_sweep(args)
        return cmd_busbw(args)
    except StudyError as err:
        print(f"scaling_study: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
