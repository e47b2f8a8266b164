#!/usr/bin/python3
"""Merges conv_matmul_bench (kolo) and torch_conv_matmul.py outputs (conv2d, matmul, attn rows): best ms per row over rounds, as markdown.

Usage: compare.py KOLO_OUT... -- TORCH_OUT...
"""
import sys


def best(paths):
    rows = {}
    for p in paths:
        for line in open(p):
            f = line.split()
            if len(f) == 7 and f[0] in ("conv2d", "matmul", "attn"):
                key, ms = tuple(f[:5]), float(f[5])
                rows[key] = min(ms, rows.get(key, ms))
    return rows


sep = sys.argv.index("--")
kolo, torch = best(sys.argv[1:sep]), best(sys.argv[sep + 1:])
print("| op | case | dtype | layout | mode | kolo ms | torch ms | torch/kolo |")
print("| --- | --- | --- | --- | --- | ---: | ---: | ---: |")
for key, ms in kolo.items():
    t = torch.get(key)
    print("| %s | %s | %s | %s | %s | %.2f | %s | %s |" % (key + (ms, "%.2f" % t if t else "-", "%.2fx" % (t / ms) if t else "-")))
