"""When do several BLAS threads win? The same work at 1 and at N threads, side by side.

Three jobs: a small matrix product (an RNN step's size, (16, 128) @ (128, 512), 2000 times), a
large one (1024 x 1024, 10 times) and one update of the char-rnn demo's LSTM (H = 256, B = 32,
k = 64, Embedding + fused LSTM + Linear + Adam, 5 times). Each round runs every job at both
thread counts (through `mg.set_num_threads`, in an order that alternates), and the table gives
the median wall time over rounds, the median CPU time of the process, and the ratio
N threads / 1 thread (below 1: the threads win). The load average is printed before and after:
the answer depends on whether other processes want the cores.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python -m benchmarks.threads [--rounds 5] [--n 2]
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np

import minigrad as mg
import rnn
from benchmarks._timing import machine_line


def jobs(rng):
    a, b = (rng.standard_normal(s).astype(np.float32) for s in ((16, 128), (128, 512)))
    big = rng.standard_normal((1024, 1024)).astype(np.float32)
    embed = mg.nn.Embedding(80, 48, rng=rng)
    cell = rnn.LSTMCell(48, 256, rng=rng)
    head = mg.nn.Linear(256, 80, rng=rng)
    opt = mg.optim.Adam(embed.parameters() + cell.parameters() + head.parameters(), lr=1e-3)
    ids = rng.integers(0, 80, (65, 32))

    def small():
        for _ in range(2000):
            a @ b

    def large():
        for _ in range(10):
            big @ big

    def lstm_update():
        for _ in range(5):
            out, _ = rnn.unroll(cell, embed(ids[:-1]))
            loss = rnn.sequence_cross_entropy(head(out), ids[1:])
            opt.zero_grad()
            loss.backward()
            opt.step()

    return {"small product (16,128)@(128,512) x2000": small,
            "large product 1024x1024 x10": large,
            "char-rnn LSTM update (H 256, B 32, k 64) x5": lstm_update}


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m benchmarks.threads",
                                 description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--n", type=int, default=2, help="the thread count compared with 1")
    args = ap.parse_args(argv)
    print(machine_line())
    print("load average at start: %.1f %.1f %.1f (1, 5, 15 min)" % os.getloadavg())
    todo = jobs(np.random.default_rng(0))
    counts = (1, args.n)
    runs = {(name, n): [] for name in todo for n in counts}
    for fn in todo.values():
        fn()  # warm up
    for r in range(args.rounds):
        for name, fn in todo.items():
            for n in (counts if r % 2 == 0 else counts[::-1]):
                mg.set_num_threads(n)
                wall, cpu = time.perf_counter(), time.process_time()
                fn()
                runs[(name, n)].append((time.perf_counter() - wall, time.process_time() - cpu))
    print(f"\n{'job':45s} {'1 thread ms':>12s} {'(CPU)':>9s} {f'{args.n} threads ms':>14s} "
          f"{'(CPU)':>9s} {f'{args.n}/1':>6s}")
    for name in todo:
        w1, c1 = (statistics.median(v[i] for v in runs[(name, 1)]) for i in (0, 1))
        wn, cn = (statistics.median(v[i] for v in runs[(name, args.n)]) for i in (0, 1))
        print(f"{name:45s} {w1 * 1e3:12.1f} {c1 * 1e3:9.1f} {wn * 1e3:14.1f} {cn * 1e3:9.1f} "
              f"{wn / w1:6.2f}")
    print("load average at end: %.1f %.1f %.1f" % os.getloadavg())


if __name__ == "__main__":
    main()
