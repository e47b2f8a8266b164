#!/usr/bin/env python3
"""Stands in for examples/train_resnet / train_transformer in scaling_study tests: prints progress lines and
a tf_cnn_benchmarks-style total with a throughput chosen from its arguments (per-rank rate x ranks x a fixed
efficiency per rank count), so the expected CSV values are known in closed form."""
import argparse
import sys
import time

EFFICIENCY = {1: 1.0, 2: 0.9, 4: 0.75, 8: 0.5}

parser = argparse.ArgumentParser()
parser.add_argument("--ranks", type=int, required=True)
parser.add_argument("--batch", type=int, required=True)
parser.add_argument("--unit", default="images")
parser.add_argument("--threads", type=int, default=1)
parser.add_argument("--fail", action="store_true")
parser.add_argument("--fail-at", type=int, default=0, help="fail only when run with this many ranks")
parser.add_argument("--no-total", action="store_true")
parser.add_argument("--hang", action="store_true")
args = parser.parse_args()

per_rank = 10.0 * args.batch * args.threads
total = per_rank * args.ranks * EFFICIENCY[args.ranks]
for step in (10, 20):
    print(f"step {step} loss {2.0 / step:.3f} {args.unit}/sec: {total * 0.98:.1f} eta {20 - step}s")
if args.hang:
    sys.stdout.flush()
    time.sleep(60)
if args.fail or args.fail_at == args.ranks:
    print("simulated crash", file=sys.stderr)
    sys.exit(7)
print(f"time to accuracy: {100.0 / args.ranks:.1f}")
if not args.no_total:
    print("-" * 40)
    print(f"total {args.unit}/sec: {total:.2f}")
