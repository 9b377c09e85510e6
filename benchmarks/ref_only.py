"""Quick table: hand-written NumPy reference vs PyTorch, forward + backward.

Run from the repository root:

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python -m benchmarks.ref_only

(OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE are meant for old OpenBLAS builds and
slow current NumPy down.)  Times are medians in milliseconds of one forward +
full-BPTT backward, float32, loss = sum of all outputs; ratios are relative
to ``nn.LSTM`` (lower is faster).
"""

import argparse

import numpy as np

from benchmarks import torch_ref
from benchmarks._timing import best_matmul_gflops, machine_line, measure, settle
from benchmarks.numpy_ref import gru_forward_backward, lstm_forward_backward

CONFIGS = {
    "a": (32, 128, 256, 100),
    "b": (64, 256, 512, 50),
    "c": (1, 32, 64, 200),
    "d": (16, 64, 128, 1000),
}


def _numpy_inputs(B, I, H, T, gates, seed=0):
    rng = np.random.default_rng(seed)
    k = 1.0 / np.sqrt(H)

    def u(*shape):
        return rng.uniform(-k, k, size=shape).astype(np.float32)

    x = rng.standard_normal((T, B, I)).astype(np.float32)
    return x, u(gates * H, I), u(gates * H, H), u(gates * H), u(gates * H)


def _ms(r):
    return "%10.2f" % r if r is not None else "       n/a"


def _x(r, base):
    return "%9.2fx" % (r / base) if r is not None and base else "       n/a"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("configs", nargs="*", default=list(CONFIGS),
                    help="subset of %s" % ", ".join(CONFIGS))
    ap.add_argument("--repeat", type=int, default=7, help="timed runs (at least)")
    ap.add_argument("--min-time", type=float, default=0.3,
                    help="keep timing until each implementation ran this many seconds")
    ap.add_argument("--max-runs", type=int, default=50, help="at most this many timed runs")
    ap.add_argument("--stat", choices=("median", "min"), default="median")
    args = ap.parse_args(argv)

    print(machine_line())
    print("best float32 matmul: %.1f GFLOP/s" % best_matmul_gflops(np.float32))
    cols = ("np LSTM", "np GRU", "np GRU ra", "nn.LSTM", "LSTMCell", "nn.GRU")
    kw = dict(warmup=2, repeat=args.repeat, min_time=args.min_time, max_runs=args.max_runs)
    res = {name: {} for name in args.configs}
    # All NumPy runs first, then all PyTorch runs, each implementation in its
    # own block after a pause: right after PyTorch ran, its OpenMP workers
    # keep spin-waiting and take a core away from OpenBLAS (and vice versa).
    for name in args.configs:
        B, I, H, T = CONFIGS[name]
        x, wi, wh, bi, _ = _numpy_inputs(B, I, H, T, 4)
        settle()
        res[name]["np LSTM"] = measure(lambda: lstm_forward_backward(x, wi, wh, bi), **kw)
        x, wi, wh, bi, bh = _numpy_inputs(B, I, H, T, 3)
        settle()
        res[name]["np GRU"] = measure(lambda: gru_forward_backward(x, wi, wh, bi, bh), **kw)
        settle()
        res[name]["np GRU ra"] = measure(
            lambda: gru_forward_backward(x, wi, wh, bi, bh, reset_after=True), **kw)
    for name in args.configs:
        B, I, H, T = CONFIGS[name]
        for col, make in (("nn.LSTM", torch_ref.make_lstm),
                          ("LSTMCell", torch_ref.make_lstm_cell_loop),
                          ("nn.GRU", torch_ref.make_gru)):
            fn = make(B, I, H, T)
            if fn is not None:
                settle()
                res[name][col] = measure(fn, **kw)
    rows = [(name, CONFIGS[name],
             [res[name][c][args.stat] * 1e3 if c in res[name] else None for c in cols])
            for name in args.configs]

    print()
    print("%s time (ms) of forward + full backward, float32, loss = sum of outputs" % args.stat)
    print("cfg (B, I, H, T)        " + "".join("%10s" % c for c in cols))
    for name, shape, ms in rows:
        print("%-3s %-20s" % (name, shape) + "".join(_ms(m) for m in ms))
    print()
    print("ratio to nn.LSTM (< 1: faster than nn.LSTM); last column: np GRU ra / nn.GRU")
    print("cfg (B, I, H, T)        " + "".join("%10s" % c for c in cols) + "  GRUra/GRU")
    for name, shape, ms in rows:
        base = ms[3]
        print("%-3s %-20s" % (name, shape) + "".join(_x(m, base) for m in ms)
              + " " + _x(ms[2], ms[5]))
    print()
    print("np GRU = reset-before form (r applied to h before W_hn); np GRU ra = "
          "reset_after form, the same math as nn.GRU")


if __name__ == "__main__":
    main()
