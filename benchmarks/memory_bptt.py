"""Memory and time of full BPTT, checkpointed BPTT (K = ceil(sqrt(T))) and truncated BPTT.

An LSTM (B=32, I=64, H=256, float32, fused sequence kernel) through `rnn.unroll`; the loss is
the sum of all outputs (an op that keeps nothing, so the figures are the recurrence's own).
For each T and method it prints:

- saved: peak bytes held for backward, from `mg.memory.track()` (exact, deterministic);
- process: peak bytes allocated during forward + backward, from `tracemalloc` (NumPy reports
  its buffers to it), measured in a separate run because tracing slows allocation;
- time: median wall time of forward + backward (the methods take turns), and the spread of the
  ratio: the lowest and highest of the per-round ratios to full BPTT (same round, same load);

and each figure's ratio to full BPTT. Truncated BPTT is TBPTT(k, k) with k = ceil(sqrt(T)): a
different (truncated) gradient, shown for its cost only. Checkpointed gradients are checked
equal to full BPTT's (max relative difference printed).

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python -m benchmarks.memory_bptt
    python -m benchmarks.memory_bptt --quick          # T = 128, 512, fewer repeats
    python -m benchmarks.memory_bptt --T 128,512 --repeat 5
    python -m benchmarks.memory_bptt --threads 1     # one BLAS thread (steadier on a busy machine)
"""
from __future__ import annotations

import argparse
import gc
import math
import statistics
import time
import tracemalloc

import numpy as np

import minigrad as mg
import rnn
from benchmarks._timing import machine_line
from rnn.tbptt import tbptt

B, I, H = 32, 64, 256


def _full(cell, x):
    out, _ = rnn.unroll(cell, x)
    out.sum().backward()


def _checkpointed(cell, x):
    out, _ = rnn.unroll(cell, x, checkpoint_every="sqrt")
    out.sum().backward()


def _truncated(cell, x):
    k = math.ceil(math.sqrt(x.shape[0]))
    tbptt(cell, x, k, loss_fn=lambda out, w: out.sum())


METHODS = {"full BPTT": _full, "checkpointed": _checkpointed, "truncated": _truncated}


def _saved_peak(fn, cell, x):
    with mg.memory.track() as m:
        fn(cell, x)
    assert m.live_bytes == 0, "the graph still holds arrays after backward"
    return m.peak_bytes


def _process_peak(fn, cell, x):
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        fn(cell, x)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return peak - base


def _times(cell, x, repeat):
    """Every timed run of each method; the methods take turns, so a change in the machine's load
    during the run weighs on all of them alike."""
    times = {name: [] for name in METHODS}
    for fn in METHODS.values():
        fn(cell, x)  # warm up
    for _ in range(repeat):
        for name, fn in METHODS.items():
            cell.zero_grad()
            gc.collect()
            t0 = time.perf_counter()
            fn(cell, x)
            times[name].append(time.perf_counter() - t0)
    return times


def _grads(fn, cell, x):
    cell.zero_grad()
    fn(cell, x)
    return [p.grad.numpy() for p in cell.parameters()]


def _mb(n):
    return f"{n / 2**20:9.1f} MB"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--T", default=None, help="comma-separated lengths (default 128,512,1024,2048)")
    ap.add_argument("--repeat", type=int, default=None, help="timed runs per figure (default 5)")
    ap.add_argument("--quick", action="store_true", help="T = 128,512 and 3 timed runs")
    ap.add_argument("--threads", type=int, default=None,
                    help="limit BLAS threads (needs threadpoolctl; default: as configured)")
    args = ap.parse_args(argv)
    if args.threads is not None:
        from threadpoolctl import threadpool_limits
        threadpool_limits(args.threads, user_api="blas")
    Ts = [int(t) for t in (args.T or ("128,512" if args.quick else "128,512,1024,2048")).split(",")]
    repeat = args.repeat or (3 if args.quick else 5)

    print(machine_line())
    print(f"LSTM B={B} I={I} H={H} float32, fused sequence kernel; K = ceil(sqrt(T)); "
          f"median of {repeat} runs\n")
    head = (f"{'T':>5}  {'method':<13} {'saved':>12} {'ratio':>6}  {'process':>12} {'ratio':>6}  "
            f"{'time':>9} {'ratio':>6} {'range':>11}")
    print(head)
    print("-" * len(head))
    cell = rnn.LSTMCell(I, H, rng=0)
    rng = np.random.default_rng(0)
    for T in Ts:
        x = mg.tensor(rng.standard_normal((T, B, I)).astype(np.float32))
        saved = {name: _saved_peak(fn, cell, x) for name, fn in METHODS.items()}
        proc = {name: _process_peak(fn, cell, x) for name, fn in METHODS.items()}
        runs = _times(cell, x, repeat)
        secs = {name: statistics.median(t) for name, t in runs.items()}
        ref = "full BPTT"
        for name in METHODS:
            per_round = [a / b for a, b in zip(runs[name], runs[ref])]
            print(f"{T:>5}  {name:<13} {_mb(saved[name])} {saved[name] / saved[ref]:6.3f}  "
                  f"{_mb(proc[name])} {proc[name] / proc[ref]:6.3f}  {secs[name]:8.3f}s "
                  f"{secs[name] / secs[ref]:6.3f} {min(per_round):5.2f}-{max(per_round):.2f}")
        g_full, g_ck = _grads(_full, cell, x), _grads(_checkpointed, cell, x)
        diff = max(float(np.abs(a - b).max() / (np.abs(a).max() + 1e-30))
                   for a, b in zip(g_full, g_ck))
        print(f"{'':>5}  checkpointed gradients vs full: max relative difference {diff:.1e}")
    cell.zero_grad()


if __name__ == "__main__":
    main()
