#!/usr/bin/env python3
"""Tests of scripts/scaling_study.py against tests/launch/fake_train.py, whose throughput is known exactly."""
import csv
import os
import subprocess
import shutil
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPT = os.path.join(HERE, "..", "..", "scripts", "scaling_study.py")
FAKE = f"{sys.executable} {os.path.join(HERE, 'fake_train.py')}"
sys.path.insert(0, os.path.dirname(SCRIPT))
import scaling_study  # noqa: E402

KOLO_BENCH = """# kolo_allreduce_bench: 2 ranks, MPI backend
#       size         count    type     time    algbw    busbw
#        (B)    (elements)             (us)   (GB/s)   (GB/s)
          8             2   float     12.5     0.00     0.00
       1024           256   float     20.0     0.05     0.05
    1048576        262144   float   1000.0     1.05     1.05
"""

NCCL_TESTS = """# nThread 1 nGpus 1 minBytes 8 maxBytes 1024 step: 2(factor) warmup iters: 5 iters: 20
#
#                                                              out-of-place                       in-place
#       size         count      type   redop    root     time   algbw   busbw #wrong     time   algbw   busbw #wrong
#        (B)    (elements)                               (us)  (GB/s)  (GB/s)            (us)  (GB/s)  (GB/s)
           8             2     float     sum      -1    10.00    0.00    0.00      0     9.00    0.00    0.00      0
        1024           256     float     sum      -1    16.00    0.06    0.12      0    15.00    0.07    0.14      0
# Out of bounds values : 0 OK
# Avg bus bandwidth    : 0.06
"""


def run(*args):
    return subprocess.run([sys.executable, SCRIPT, *args], capture_output=True, text=True)


def read_csv(path):
    with open(path) as f:
        return list(csv.DictReader(f))


class Parsing(unittest.TestCase):
    def test_last_total_line_wins_and_metric_filters(self):
        text = "total images/sec: 5\nstep 3 images/sec: 9\ntotal images/sec: 7.5\ntotal tokens/sec: 1e3\n"
        self.assertEqual(scaling_study.parse_throughput(text), ("tokens", 1000.0))
        self.assertEqual(scaling_study.parse_throughput(text, "images"), ("images", 7.5))
        self.assertIsNone(scaling_study.parse_throughput("images/sec: 5\n"))

    def test_busbw_kolo_and_nccl_tests_layouts(self):
        kolo = scaling_study.parse_busbw_table(KOLO_BENCH, "kolo")
        self.assertEqual([r["size"] for r in kolo], [8, 1024, 1048576])
        self.assertEqual(kolo[2]["busbw"], 1.05)
        nccl = scaling_study.parse_busbw_table(NCCL_TESTS, "nccl")
        self.assertEqual(len(nccl), 2)
        self.assertEqual(nccl[1]["busbw"], 0.12)  # out-of-place column
        self.assertEqual(nccl[1]["time_us"], 16.0)

    def test_busbw_bad_tables(self):
        with self.assertRaisesRegex(scaling_study.StudyError, "no header"):
            scaling_study.parse_busbw_table("8 2 float 1 2 3\n")
        with self.assertRaisesRegex(scaling_study.StudyError, "no data rows"):
            scaling_study.parse_busbw_table("# size count type time algbw busbw\n")
        with self.assertRaisesRegex(scaling_study.StudyError, "x:2: row has 3 columns"):
            scaling_study.parse_busbw_table("# size count type time algbw busbw\n8 2 float\n", "x")
        with self.assertRaisesRegex(scaling_study.StudyError, "column busbw is not a number"):
            scaling_study.parse_busbw_table("# size count type time algbw busbw\n8 2 float 1 2 fast\n")

    def test_strong_scaling_needs_divisible_batch(self):
        points = scaling_study.plan_points("strong", [1, 2, 4], 64, [None])
        self.assertEqual([p["per_rank_batch"] for p in points], [64, 32, 16])
        self.assertEqual({p["global_batch"] for p in points}, {64})
        with self.assertRaisesRegex(scaling_study.StudyError, "does not divide over 3 ranks"):
            scaling_study.plan_points("strong", [1, 3], 64, [None])
        weak = scaling_study.plan_points("weak", [1, 4], 32, [None])
        self.assertEqual([(p["per_rank_batch"], p["global_batch"]) for p in weak], [(32, 32), (32, 128)])


class Sweeps(unittest.TestCase):
    def setUp(self):
        self.out = tempfile.mkdtemp(prefix="kolo_scaling_")

    def tearDown(self):
        shutil.rmtree(self.out)

    def check_pngs(self, *names):
        if shutil.which("gnuplot") is None:
            return
        for name in names:
            with open(os.path.join(self.out, name), "rb") as f:
                self.assertEqual(f.read(8), b"\x89PNG\r\n\x1a\n", name)

    def test_weak_scaling_csv_and_plots(self):
        r = run("sweep", "--mode", "weak", "--ranks", "1,2,4", "--batch", "32", "--name", "resnet_weak",
                "--out", self.out, "--extra-metric", r"time_to_acc=time to accuracy: ([0-9.]+)",
                "--command", f"{FAKE} --ranks {{ranks}} --batch {{batch}}")
        self.assertEqual(r.returncode, 0, r.stderr + r.stdout)
        self.assertIn("ETA", r.stdout)
        self.assertIn("step 20 loss", r.stdout)  # progress lines are echoed
        rows = read_csv(os.path.join(self.out, "resnet_weak.csv"))
        self.assertEqual([int(x["ranks"]) for x in rows], [1, 2, 4])
        self.assertEqual([int(x["global_batch"]) for x in rows], [32, 64, 128])
        self.assertEqual({x["unit"] for x in rows}, {"images"})
        for row, eff in zip(rows, (1.0, 0.9, 0.75)):
            self.assertAlmostEqual(float(row["throughput"]), 320.0 * int(row["ranks"]) * eff, places=2)
            self.assertAlmostEqual(float(row["efficiency"]), eff, places=4)
            self.assertAlmostEqual(float(row["ideal_throughput"]), 320.0 * int(row["ranks"]), places=2)
            self.assertAlmostEqual(float(row["time_to_acc"]), round(100.0 / int(row["ranks"]), 1), places=3)
        self.assertIn("90.0%", r.stdout)  # summary table
        self.check_pngs("resnet_weak_throughput.png", "resnet_weak_efficiency.png")

    def test_strong_scaling_tokens_with_thread_series(self):
        r = run("sweep", "--mode", "strong", "--ranks", "1,2", "--batch", "64", "--threads", "1,2",
                "--name", "transformer_strong", "--out", self.out, "--metric", "tokens",
                "--command", f"{FAKE} --unit tokens --ranks {{ranks}} --batch {{batch}} --threads {{threads}}")
        self.assertEqual(r.returncode, 0, r.stderr + r.stdout)
        rows = read_csv(os.path.join(self.out, "transformer_strong.csv"))
        self.assertEqual([(int(x["threads"]), int(x["ranks"])) for x in rows], [(1, 1), (1, 2), (2, 1), (2, 2)])
        # Strong scaling: per-rank batch halves, so the fake's throughput is 10*64*threads*0.9 at 2 ranks.
        self.assertEqual([int(x["per_rank_batch"]) for x in rows], [64, 32, 64, 32])
        self.assertAlmostEqual(float(rows[3]["throughput"]), 10 * 32 * 2 * 2 * 0.9, places=2)
        self.assertAlmostEqual(float(rows[3]["efficiency"]), 0.45, places=4)  # vs 2-thread 1-rank base
        self.check_pngs("transformer_strong_throughput.png", "transformer_strong_efficiency.png")

    @unittest.skipUnless(os.environ.get("KOLORUN"), "KOLORUN (path of the kolorun binary) not set")
    def test_sweep_through_kolorun(self):
        # Each rank prints the same total; the runner keeps the last one.
        kolorun = os.environ["KOLORUN"]
        r = run("sweep", "--mode", "weak", "--ranks", "1,2", "--batch", "16", "--out", self.out, "--name", "k",
                "--timeout", "60", "--command",
                f"{kolorun} -np {{ranks}} -H localhost:2 {FAKE} --ranks {{ranks}} --batch {{batch}}")
        self.assertEqual(r.returncode, 0, r.stderr + r.stdout)
        rows = read_csv(os.path.join(self.out, "k.csv"))
        self.assertAlmostEqual(float(rows[1]["throughput"]), 160.0 * 2 * 0.9, places=2)

    def test_a_failed_point_leaves_the_others(self):
        r = run("sweep", "--mode", "weak", "--ranks", "1,2,4", "--batch", "8", "--out", self.out, "--name", "part",
                "--command", f"{FAKE} --ranks {{ranks}} --batch {{batch}} --fail-at 2")
        self.assertEqual(r.returncode, 2)
        self.assertIn("simulated crash", r.stderr)
        self.assertIn("1 of 3 points failed (2/3 ranks=2)", r.stderr)
        rows = read_csv(os.path.join(self.out, "part.csv"))
        self.assertEqual([int(x["ranks"]) for x in rows], [1, 4])
        self.assertAlmostEqual(float(rows[1]["efficiency"]), 0.75, places=4)
        r = run("sweep", "--mode", "weak", "--ranks", "1", "--batch", "8", "--threads", "1,2", "--out", self.out,
                "--command", f"{FAKE} --ranks {{ranks}} --batch {{batch}}")
        self.assertEqual(r.returncode, 2)
        self.assertIn("--command has no {threads}", r.stderr)

    def test_failures_are_reported(self):
        r = run("sweep", "--mode", "weak", "--ranks", "1", "--batch", "8", "--out", self.out,
                "--command", f"{FAKE} --ranks {{ranks}} --batch {{batch}} --fail")
        self.assertEqual(r.returncode, 2)
        self.assertIn("exit status 7", r.stderr)
        self.assertIn("simulated crash", r.stderr)
        r = run("sweep", "--mode", "weak", "--ranks", "1", "--batch", "8", "--out", self.out,
                "--command", f"{FAKE} --ranks {{ranks}} --batch {{batch}} --no-total")
        self.assertEqual(r.returncode, 2)
        self.assertIn("no 'total images or tokens/sec: N' line", r.stderr)
        r = run("sweep", "--mode", "weak", "--ranks", "1", "--batch", "8", "--out", self.out,
                "--command", f"{FAKE} --ranks {{nodes}}")
        self.assertEqual(r.returncode, 2)
        self.assertIn("unknown placeholder 'nodes'", r.stderr)
        r = run("sweep", "--mode", "weak", "--ranks", "1", "--batch", "8", "--out", self.out, "--timeout", "1",
                "--command", f"{FAKE} --ranks {{ranks}} --batch {{batch}} --hang")
        self.assertEqual(r.returncode, 2)
        self.assertIn("killed after 1.0s", r.stderr)
        self.assertIn("step 20 loss", r.stderr)
        r = run("sweep", "--mode", "weak", "--ranks", "1", "--batch", "8", "--out", self.out,
                "--command", "/nonexistent/train_resnet")
        self.assertEqual(r.returncode, 2)
        self.assertIn("cannot start", r.stderr)

    def test_busbw_csv_and_plot(self):
        kolo = os.path.join(self.out, "kolo.txt")
        nccl = os.path.join(self.out, "nccl.txt")
        with open(kolo, "w") as f:
            f.write(KOLO_BENCH)
        with open(nccl, "w") as f:
            f.write(NCCL_TESTS)
        r = run("busbw", "--input", f"kolo mpi={kolo}", "--input", nccl, "--out", self.out, "--name", "ar")
        self.assertEqual(r.returncode, 0, r.stderr + r.stdout)
        rows = read_csv(os.path.join(self.out, "ar.csv"))
        self.assertEqual({x["label"] for x in rows}, {"kolo mpi", "nccl"})
        self.assertEqual(len(rows), 5)
        self.assertIn("peak busbw 1.05 GB/s at 1048576 B", r.stdout)
        self.check_pngs("ar.png")


if __name__ == "__main__":
    unittest.main()
