#!/usr/bin/env python3
"""Tests of scripts/timeline_summary.py on a hand-written KOLO_TIMELINE trace whose figures are known."""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPT = os.path.join(HERE, "..", "..", "scripts", "timeline_summary.py")
sys.path.insert(0, os.path.dirname(SCRIPT))
import timeline_summary  # noqa: E402


def trace(steps=3):
    """Rows as the runtime writes them: a "step" row with the device phases, one row per tensor whose fused
    allreduce spans repeat on every tensor of the group. Step k starts at 100 ms * k: forward 20 ms, backward
    60 ms, exchange wait + update 10 ms; group A (2 tensors, 3000 B) completes 30 ms before the backward pass
    ends, group B (1 tensor, 1000 B) 4 ms after it."""
    ev = [{"name": "process_name", "ph": "M", "pid": p, "args": {"name": n}}
          for p, n in [(1, "step"), (2, "grad.a"), (3, "grad.b"), (4, "grad.c")]]
    for k in range(steps):
        t = 100_000 * k
        for name, start, dur in [("FORWARD", 0, 20_000), ("BACKWARD", 20_000, 60_000),
                                 ("EXCHANGE_WAIT_AND_UPDATE", 80_000, 10_000)]:
            ev.append({"name": name, "ph": "X", "pid": 1, "tid": 1, "ts": t + start, "dur": dur})
        for pid in (2, 3):
            ev.append({"name": "NCCL_ALLREDUCE", "ph": "X", "pid": pid, "tid": 1, "ts": t + 30_000, "dur": 20_000,
                       "args": {"fused_tensors": 2, "bytes": 3000, "chunks": 1}})
        ev.append({"name": "NEGOTIATE", "ph": "X", "pid": 4, "tid": 1, "ts": t + 60_000, "dur": 1_000})
        ev.append({"name": "NCCL_ALLREDUCE", "ph": "X", "pid": 4, "tid": 1, "ts": t + 70_000, "dur": 14_000,
                   "args": {"fused_tensors": 1, "bytes": 1000, "chunks": 1}})
    return ev


class TimelineSummaryTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp()
        self.path = os.path.join(self.dir, "trace.json")
        with open(self.path, "w") as f:
            json.dump(trace(), f)

    def tearDown(self):
        shutil.rmtree(self.dir)

    def test_steps_phases_and_exposed_communication(self):
        rows, spans = timeline_summary.load(self.path)
        steps = timeline_summary.steps_of(rows, spans)
        self.assertEqual(len(steps), 3)
        groups = timeline_summary.allreduce_groups(rows, spans)
        self.assertEqual([(g["tensors"], g["bytes"]) for g in groups], [(2, 3000), (1, 1000)] * 3)
        for s in timeline_summary.summarise(steps, groups):
            self.assertEqual(s["ms"], {"FORWARD": 20.0, "BACKWARD": 60.0, "EXCHANGE_WAIT_AND_UPDATE": 10.0})
            self.assertEqual(s["period_ms"], 90.0)
            self.assertEqual(s["groups"], 2)
            self.assertEqual(s["bytes"], 4000)
            self.assertEqual(s["bytes_before_backward_end"], 3000)
            self.assertEqual(s["last_allreduce_after_backward_ms"], 4.0)

    def test_command_line_table_and_too_few_steps(self):
        out = subprocess.run([sys.executable, SCRIPT, self.path, "--skip", "1"], capture_output=True, text=True)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertIn("2 steps after 1 left out", out.stdout)
        self.assertIn("75.0%", out.stdout)
        self.assertIn("median: period 90.00 ms, forward 20.00, backward 60.00, exchange wait + update 10.00, "
                      "last allreduce +4.00 ms after backward", out.stdout)
        bad = subprocess.run([sys.executable, SCRIPT, self.path, "--skip", "3"], capture_output=True, text=True)
        self.assertNotEqual(bad.returncode, 0)
        self.assertIn("need more than --skip 3", bad.stderr)

    @unittest.skipUnless(shutil.which("gnuplot"), "gnuplot not installed")
    def test_plot(self):
        png = os.path.join(self.dir, "step.png")
        out = subprocess.run([sys.executable, SCRIPT, self.path, "--plot", png], capture_output=True, text=True)
        self.assertEqual(out.returncode, 0, out.stderr)
        with open(png, "rb") as f:
            self.assertEqual(f.read(8), b"\x89PNG\r\n\x1a\n")


if __name__ == "__main__":
    unittest.main()
