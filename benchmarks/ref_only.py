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
from benchmarks._timing import best_matmul_gflops, machine_line, measure
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
    u = lambda *shape: rng.uniform(-k, k, size=shape).astype(np.float32)
    x = rng.standard_normal((T, B, I)).astype(np.float32)
    return x, u(gates * H, I), u(gates * H, H), u(gates * H), u(gates * H)


def _ms(r):
    return "%9.2f" % (r["median"] * 1e3) if r else "      n/a"


def _ratio(r, base):
    return "%6.2fx" % (r["median"] / base["median"]) if r and base else "    n/a"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("configs", nargs="*", default=list(CONFIGS),
                    help="subset of %s" % ", ".join(CONFIGS))
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--min-time", type=float, default=0.3)
    args = ap.parse_args(argv)

    print(machine_line())
    print("best float32 matmul: %.1f GFLOP/s" % best_matmul_gflops(np.float32))
    kw = dict(warmup=2, repeat=args.repeat, min_time=args.min_time, max_runs=50)
    head = ("cfg  (B, I, H, T)           np LSTM  np GRU(ra) np GRU  "
            "   nn.LSTM  LSTMCell    nn.GRU   npLSTM/LSTM  npGRU(ra)/GRU  Cell/LSTM")
    print(head)
    print("-" * len(head))
    for name in args.configs:
        B, I, H, T = CONFIGS[name]
        x, wi, wh, bi, bh = _numpy_inputs(B, I, H, T, 4)
        r_lstm = measure(lambda: lstm_forward_backward(x, wi, wh, bi), **kw)
        x, wi, wh, bi, bh = _numpy_inputs(B, I, H, T, 3)
        r_gru_ra = measure(lambda: gru_forward_backward(x, wi, wh, bi, bh, reset_after=True), **kw)
        r_gru = measure(lambda: gru_forward_backward(x, wi, wh, bi, bh), **kw)
        t_lstm = torch_ref.time_lstm(B, I, H, T, **kw)
        t_cell = torch_ref.time_lstm_cell_loop(B, I, H, T, **kw)
        t_gru = torch_ref.time_gru(B, I, H, T, **kw)
        print("%-4s %-22s %s %s %s %s %s %s   %s       %s        %s" % (
            name, (B, I, H, T), _ms(r_lstm), _ms(r_gru_ra), _ms(r_gru),
            _ms(t_lstm), _ms(t_cell), _ms(t_gru),
            _ratio(r_lstm, t_lstm), _ratio(r_gru_ra, t_gru), _ratio(t_cell, t_lstm)))
    print("times: median ms of forward+backward (float32); ratios < 1 mean faster "
          "than the PyTorch op; GRU(ra) = reset_after form, same math as nn.GRU")


if __name__ == "__main__":
    main()
