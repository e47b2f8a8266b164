#!/usr/bin/python3
"""Times the cases of shapes.txt with PyTorch CPU, printing the same columns as conv_matmul_bench (kolo).

Attention: F.scaled_dot_product_attention where this torch has it (2.0 on), else the explicit
softmax(q k^T * scale + mask) v that nn.MultiheadAttention computes (torch 1.13, Debian 12's python3-torch).

Threads: torch.set_num_threads(OMP_NUM_THREADS) so both sides use the same count (run.sh sets it).
"""
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F

torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", os.cpu_count())))
torch.manual_seed(1)


def time_ms(fn):
    fn()
    t0 = time.perf_counter()
    fn()
    one = (time.perf_counter() - t0) * 1e3
    iters = max(1, int(100.0 / max(one, 1e-3)))
    samples = []
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(iters):
            fn()
        samples.append((time.perf_counter() - t0) * 1e3 / iters)
    return statistics.median(samples)


def report(op, name, dt, layout, mode, ms, flops):
    print("%-7s %-14s %-5s %-5s %-8s %10.3f %10.1f" % (op, name, dt, layout, mode, ms, flops / ms / 1e6), flush=True)


def bench_conv(name, n, c, h, w, o, kh, kw, s, p, g):
    oh, ow = (h + 2 * p - kh) // s + 1, (w + 2 * p - kw) // s + 1
    flops = 2.0 * n * o * oh * ow * (c // g) * kh * kw
    for cl in (False, True):
        fmt = torch.channels_last if cl else torch.contiguous_format
        x = torch.randn(n, c, h, w).to(memory_format=fmt)
        wt = (torch.randn(o, c // g, kh, kw) * 0.05).to(memory_format=fmt)
        b = torch.zeros(o)
        layout = "nhwc" if cl else "nchw"
        with torch.no_grad():
            report("conv2d", name, "f32", layout, "fwd", time_ms(lambda: F.conv2d(x, wt, b, s, p, 1, g)), flops)
        xg, wg, bg = x.clone().requires_grad_(), wt.clone().requires_grad_(), b.clone().requires_grad_()
        dy = torch.randn_like(F.conv2d(x, wt, b, s, p, 1, g))

        def step():
            xg.grad = wg.grad = bg.grad = None
            F.conv2d(xg, wg, bg, s, p, 1, g).backward(dy)

        report("conv2d", name, "f32", layout, "fwd+bwd", time_ms(step), 3 * flops)


def bench_matmul(name, b, m, k, n):
    for dt, dn in ((torch.float32, "f32"), (torch.bfloat16, "bf16")):
        x, y = torch.randn(b, m, k, dtype=dt), torch.randn(b, k, n, dtype=dt)
        with torch.no_grad():
            report("matmul", name, dn, "-", "fwd", time_ms(lambda: torch.matmul(x, y)), 2.0 * b * m * k * n)


def attention_mask(kind, b, tq, tk):
    """Additive mask as conv_matmul_bench builds it: causal [T, T], or the last 4*(b % 4) keys of sequence b."""
    if kind == "causal":
        return torch.full((tq, tk), float("-inf")).triu(1)
    lengths = torch.tensor([tk - 4 * (i % 4) for i in range(b)])
    pad = torch.arange(tk)[None, :] >= lengths[:, None]
    return torch.zeros(b, 1, 1, tk).masked_fill(pad[:, None, None, :], float("-inf"))


def sdpa(q, k, v, mask):
    if hasattr(F, "scaled_dot_product_attention"):
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    scores = torch.matmul(q, k.transpose(-2, -1)) * (q.shape[-1] ** -0.5) + mask
    return torch.matmul(torch.softmax(scores, dim=-1), v)


def bench_attention(name, b, h, tq, tk, d, kind):
    flops = 4.0 * b * h * tq * tk * d
    q, k, v = torch.randn(b, h, tq, d), torch.randn(b, h, tk, d), torch.randn(b, h, tk, d)
    mask = attention_mask(kind, b, tq, tk)
    layout = "caus" if kind == "causal" else "pad"
    with torch.no_grad():
        report("attn", name, "f32", layout, "fwd", time_ms(lambda: sdpa(q, k, v, mask)), flops)
    qg, kg, vg = q.clone().requires_grad_(), k.clone().requires_grad_(), v.clone().requires_grad_()
    dy = torch.randn(b, h, tq, d)

    def step():
        qg.grad = kg.grad = vg.grad = None
        sdpa(qg, kg, vg, mask).backward(dy)

    report("attn", name, "f32", layout, "fwd+bwd", time_ms(step), 3 * flops)


path = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "shapes.txt")
print("%-7s %-14s %-5s %-5s %-8s %10s %10s" % ("op", "case", "dtype", "lay", "mode", "ms", "GFLOP/s"))
for line in open(path):
    parts = line.split()
    if not parts or parts[0].startswith("#"):
        continue
    if parts[0] == "attn":
        bench_attention(parts[1], *[int(v) for v in parts[2:7]], parts[7])
        continue
    args = [int(v) for v in parts[2:]]
    if parts[0] == "conv":
        bench_conv(parts[1], *args)
    elif parts[0] == "matmul":
        bench_matmul(parts[1], *args)
