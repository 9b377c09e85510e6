"""LSTM and GRU forward + backward: minigrad (fused and composed) vs NumPy by hand vs PyTorch.

Run from the repository root (see benchmarks/README.md for why the two variables are unset):

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python -m benchmarks.rnn [--configs a,c]
        [--repeat N] [--quick] [--threads N] [--profile CONFIG]

Each path runs one training step's worth of autodiff: float32, time-major x (T, B, I) that
requires grad, loss = sum of all outputs, gradients for x and every weight, initial state zero.
The paths of one config are timed side by side (round robin: one call of each per round, in
an order rotated every round, after warm-up), so a ratio compares calls made under the same
machine load. Printed: median, min-max, the ratio to the fused minigrad path, and the achieved
GFLOP/s of the matrix products (forward + backward = 3 x 2 T B G H (I + H) flops for G gate
blocks) against the best square matmul rate measured on this machine at start-up.

Paths: "fused" is `rnn.unroll(rnn.LSTMCell(I, H), x)` (one op for the whole loop);
"composed" is the same cell with `fused=False` (every gate a primitive op: what a custom cell
costs); "numpy" is benchmarks/numpy_ref.py (hand-written BPTT); "torch" / "torch cell loop" are
nn.LSTM / nn.GRU and an nn.LSTMCell Python loop, when PyTorch is installed (never required).
GRUs use the reset-after form, the same maths as nn.GRU.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np

import minigrad as mg
import rnn
from benchmarks._timing import best_matmul_gflops, machine_line, settle
from benchmarks.numpy_ref import gru_forward_backward, lstm_forward_backward

CONFIGS = {  # name: (B, I, H, T)
    "a": (32, 128, 256, 100),
    "b": (64, 256, 512, 50),
    "c": (1, 32, 64, 200),
    "d": (16, 64, 128, 1000),
}

# (family, path over path, limit, configs): a target holds when the ratio of median times is
# <= limit (or >= -limit when the limit is negative: "at least this much faster")
TARGETS = [
    ("lstm", "fused", "numpy", 1.10, "abd"),
    ("lstm", "fused", "numpy", 1.30, "c"),
    ("lstm", "fused", "torch", 1.60, "abd"),
    ("lstm", "torch cell loop", "fused", -1.5, "a"),
    ("lstm", "torch cell loop", "fused", -4.0, "c"),
    ("gru", "fused", "torch", 1.00, "a"),
    ("lstm", "composed", "fused", 2.00, "a"),
]


def _weights(B, I, H, T, gates, seed=0):
    rng = np.random.default_rng(seed)
    k = 1.0 / np.sqrt(H)
    x = rng.standard_normal((T, B, I)).astype(np.float32)
    return x, [rng.uniform(-k, k, s).astype(np.float32) for s in
               [(gates * H, I), (gates * H, H), (gates * H,), (gates * H,)]]


def _minigrad(family, fused, B, I, H, T):
    """One forward + backward through rnn.unroll, as a zero-argument callable."""
    if family == "lstm":
        cell = rnn.LSTMCell(I, H, fused=fused, rng=0, dtype="float32")
    else:
        cell = rnn.GRUCell(I, H, reset_after=True, fused=fused, rng=0, dtype="float32")
    x = mg.tensor(_weights(B, I, H, T, 1)[0], requires_grad=True)
    params = list(cell.parameters())

    def step():
        for p in params:
            p.grad = None
        x.grad = None
        out, _ = rnn.unroll(cell, x)
        out.sum().backward()
    return step


def _numpy(family, B, I, H, T):
    gates = 4 if family == "lstm" else 3
    x, (w_ih, w_hh, b_ih, b_hh) = _weights(B, I, H, T, gates)
    if family == "lstm":
        return lambda: lstm_forward_backward(x, w_ih, w_hh, b_ih)
    return lambda: gru_forward_backward(x, w_ih, w_hh, b_ih, b_hh, reset_after=True)


def paths(family, B, I, H, T, composed=True):
    """{path name: callable} for one family and config (torch paths only when installed)."""
    out = {"fused": _minigrad(family, True, B, I, H, T)}
    if composed:
        out["composed"] = _minigrad(family, False, B, I, H, T)
    out["numpy"] = _numpy(family, B, I, H, T)
    from benchmarks import torch_ref  # imported late: only when a torch row is asked for
    if torch_ref.available():
        if family == "lstm":
            out["torch"] = torch_ref.make_lstm(B, I, H, T)
            out["torch cell loop"] = torch_ref.make_lstm_cell_loop(B, I, H, T)
        else:
            out["torch"] = torch_ref.make_gru(B, I, H, T)
    return out


def side_by_side(fns, warmup, repeat):
    """Median, min and max seconds per callable, timed round robin (one call each per round,
    the order rotated every round so that no path always follows the same one)."""
    for _ in range(warmup):
        for f in fns.values():
            f()
    names = list(fns)
    times = {k: [] for k in fns}
    for r in range(repeat):
        for k in names[r % len(names):] + names[:r % len(names)]:
            f = fns[k]
            t0 = time.perf_counter()
            f()
            times[k].append(time.perf_counter() - t0)
            # every library keeps its default threading policy (PyTorch's OpenMP workers and
            # OpenBLAS's spin for a while after a call): let them go to sleep before the next
            # path, so that no path is timed against the last one's spinning threads
            settle(0.2)
    return {k: (statistics.median(v), min(v), max(v)) for k, v in times.items()}


def flops(family, B, I, H, T):
    """Matrix-product flops of forward + backward (the elementwise work is not counted)."""
    gates = 4 if family == "lstm" else 3
    return 3 * 2 * T * B * gates * H * (I + H)


def run(configs, warmup, repeat):
    print(machine_line())
    print("load average at start: %.1f %.1f %.1f (1, 5, 15 min)" % os.getloadavg())
    peak = best_matmul_gflops(np.float32)
    print(f"best float32 square matmul: {peak:.1f} GFLOP/s; {repeat} timed rounds after "
          f"{warmup} warm-up, paths interleaved\n")
    print(f"{'cfg':4}{'(B, I, H, T)':22}{'family':7}{'path':17}{'median ms':>10}"
          f"{'min-max ms':>20}{'/ fused':>9}{'GFLOP/s':>9}{'% peak':>8}")
    results = {}
    for name in configs:
        B, I, H, T = CONFIGS[name]
        for family in ("lstm", "gru"):
            r = side_by_side(paths(family, B, I, H, T), warmup, repeat)
            results[name, family] = r
            base = r["fused"][0]
            for path, (med, lo, hi) in r.items():
                rate = flops(family, B, I, H, T) / med / 1e9
                print(f"{name:4}{str((B, I, H, T)):22}{family:7}{path:17}{med * 1e3:10.2f}"
                      f"{f'{lo * 1e3:.2f}-{hi * 1e3:.2f}':>20}{med / base:8.2f}x"
                      f"{rate:9.1f}{100 * rate / peak:7.1f}%")
        print()
    report_targets(results)
    if "d" in configs:
        report_memory(*CONFIGS["d"])
    return results


MEMORY_LIMIT = 8  # (B, H) arrays per step that full BPTT of the fused LSTM may hold


def report_memory(B, I, H, T):
    """Bytes the fused LSTM's graph holds for backward (mg.memory: exact, not timed)."""
    cell = rnn.LSTMCell(I, H)
    x = mg.tensor(np.random.default_rng(0).standard_normal((T, B, I)).astype(np.float32),
                  requires_grad=True)
    with mg.memory.track() as m:
        out, _ = rnn.unroll(cell, x)
        held = m.live_bytes
        out.sum().backward()
    per_step = held / (T * B * H * 4)
    mib, cap = held / 2 ** 20, MEMORY_LIMIT * T * B * H * 4 / 2 ** 20
    print(f"  d lstm memory held for backward {mib:.1f} MiB = {per_step:.2f} (B, H) arrays per "
          f"step (mg.memory)  target <= {MEMORY_LIMIT} ({cap:.1f} MiB)  "
          f"{'holds' if per_step <= MEMORY_LIMIT else 'MISSED'}")


def report_targets(results):
    print("targets: ratio of medians taken in the same run (ratio of minima, which load "
          "spikes touch least, in brackets)")
    for family, num, den, limit, cfgs in TARGETS:
        for name in cfgs:
            r = results.get((name, family))
            if r is None or num not in r or den not in r:
                continue
            ratio, low = r[num][0] / r[den][0], r[num][1] / r[den][1]
            if limit > 0:
                ok, want = ratio <= limit, f"<= {limit:.2f}"
            else:
                ok, want = ratio >= -limit, f">= {-limit:.2f}"
            print(f"  {name} {family:5}{num + ' / ' + den:26}{ratio:6.2f} ({low:.2f})  "
                  f"target {want}  {'holds' if ok else 'MISSED'}")


def profile(name, family="lstm", top=12):
    """cProfile of one fused and one composed training step at config `name`."""
    import cProfile
    import pstats
    B, I, H, T = CONFIGS[name]
    for path, fn in paths(family, B, I, H, T).items():
        if path not in ("fused", "composed"):
            continue
        fn()
        prof = cProfile.Profile()
        prof.runcall(fn)
        print(f"--- {family} {path}, config {name} {(B, I, H, T)}: top {top} by own time")
        pstats.Stats(prof).sort_stats("tottime").print_stats(top)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--configs", default=",".join(CONFIGS),
                    help=f"comma-separated subset of {','.join(CONFIGS)} (default: all)")
    ap.add_argument("--repeat", type=int, default=None,
                    help="timed rounds per config (default 7, or 3 with --quick)")
    ap.add_argument("--quick", action="store_true", help="1 warm-up round and 3 timed rounds")
    ap.add_argument("--profile", metavar="CONFIG", help="profile one training step instead")
    ap.add_argument("--threads", type=int, default=None,
                    help="BLAS and PyTorch threads (steadier on a busy machine; needs "
                         "threadpoolctl; default: as configured)")
    args = ap.parse_args(argv)
    from benchmarks import torch_ref
    if args.threads is not None:
        # a busy machine deschedules BLAS worker threads mid-product and every call waits
        from threadpoolctl import threadpool_limits
        threadpool_limits(args.threads, user_api="blas")
        if torch_ref.available():
            torch_ref.torch.set_num_threads(args.threads)
    sys.stdout.reconfigure(line_buffering=True)  # rows appear as they are measured
    if args.profile:
        profile(args.profile)
        return
    configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    unknown = [c for c in configs if c not in CONFIGS]
    if unknown:
        ap.error(f"unknown config(s) {unknown}; choose from {list(CONFIGS)}")
    repeat = args.repeat if args.repeat is not None else (3 if args.quick else 7)
    run(configs, warmup=1 if args.quick else 2, repeat=repeat)


if __name__ == "__main__":
    main()
