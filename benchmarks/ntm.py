"""NTM training steps per second at batch 1 and batch 32, per example: what batching buys.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python -m benchmarks.ntm [--length 10]
        [--repeat 5] [--quick] [--device cpu] [--threads 1]

One step is a training step of the copy task (`rnn.memory.tasks.copy_task`, `--length` 8-bit
vectors): `rnn.unroll` of an `NTMCell` (LSTM controller of 100 units, 128 slots of 20, one read
and one write head, 3-tap shifts, the sizes of Graves et al.'s copy experiments), the masked
binary cross-entropy, backward and an Adam update, float32. The two batch sizes are timed side
by side (alternating rounds, after warm-up), so their ratio compares calls made under the same
load. Target (issue 14): per example, batch 32 is at least 10x faster than batch 1.

BLAS runs one thread by default (`--threads 0`: the library's default). The NTM's matrices are
small, and on a 2-core machine shared with other work two BLAS threads made batch 32 about ten
times slower (1.4 s against 0.12 s per step in a same-process check): they wait on each other.

pytorch-ntm, the best-known NTM in Python, trains one sequence at a time and loops over the batch
in its shift; here every addressing step is one array operation over the batch and the heads.
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

import minigrad as mg
import rnn
from benchmarks._timing import machine_line
from rnn.memory import NTMCell, tasks

TARGET = 10.0  # batch 32 must be at least this many times faster per example


def training_step(batch: int, length: int, device: str, seed: int = 0):
    """A zero-argument callable running one training step on a fresh copy-task batch."""
    rng = np.random.default_rng(seed)
    cell = NTMCell(9, 8, controller_size=100, memory_slots=128, slot_size=20, rng=seed,
                   device=device)
    opt = mg.optim.Adam(cell.parameters(), lr=1e-4)
    data = tasks.copy_task(rng, batch, length, 8)
    x = mg.tensor(data.inputs, device=device)
    y = mg.tensor(data.targets, device=device)
    mask = mg.tensor(data.mask[..., None], device=device)

    def step():
        out, _ = rnn.unroll(cell, x)
        loss = mg.sum(mg.binary_cross_entropy_with_logits(out, y, reduction="none") * mask)
        opt.zero_grad()
        (loss / batch).backward()
        opt.step()
        float(loss.item())  # wait for the device, as a training loop reading its loss does
    return step


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(prog="python -m benchmarks.ntm", description=__doc__.split(
        "\n\n")[0])
    p.add_argument("--length", type=int, default=10, help="copy-task sequence length L (T = 2L+1)")
    p.add_argument("--repeat", type=int, default=5, help="timed rounds")
    p.add_argument("--batches", type=int, nargs=2, default=[1, 32])
    p.add_argument("--device", default="cpu", help="cpu, or gpu where CuPy sees one")
    p.add_argument("--threads", type=int, default=1, help="BLAS threads (0: the default)")
    p.add_argument("--quick", action="store_true", help="length 3, 2 rounds (a smoke test)")
    args = p.parse_args(argv)
    if args.threads > 0:
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:
            print("threadpoolctl is not installed: BLAS keeps its default threads")
        else:
            with threadpool_limits(limits=args.threads, user_api="blas"):
                return run(args)
    return run(args)


def run(args) -> dict:
    if args.quick:
        args.length, args.repeat = 3, 2
    print(machine_line() + f"; BLAS limited to {args.threads or 'its default'} thread(s)")
    small, large = args.batches
    steps = {b: training_step(b, args.length, args.device) for b in (small, large)}
    for fn in steps.values():  # warm-up: caches, BLAS threads, the allocator
        fn()
    times = {b: [] for b in steps}
    for r in range(args.repeat):
        order = list(steps) if r % 2 == 0 else list(steps)[::-1]
        for b in order:
            t0 = time.perf_counter()
            steps[b]()
            times[b].append(time.perf_counter() - t0)
    res = {"length": args.length, "device": args.device, "batches": [small, large],
           "threads": args.threads}
    for b in steps:
        med = statistics.median(times[b])
        res[f"seconds_per_step_b{b}"] = med
        res[f"examples_per_second_b{b}"] = b / med
        print(f"batch {b:3d}: {1e3 * med:8.1f} ms per step (min {1e3 * min(times[b]):.1f}, max "
              f"{1e3 * max(times[b]):.1f}), {b / med:8.1f} training sequences per second")
    res["speedup_per_example"] = res[f"examples_per_second_b{large}"] / \
        res[f"examples_per_second_b{small}"]
    ok = res["speedup_per_example"] >= TARGET
    print(f"per example, batch {large} is {res['speedup_per_example']:.1f}x faster than batch "
          f"{small} (target >= {TARGET:.0f}x: {'met' if ok else 'NOT met'})")
    return res


if __name__ == "__main__":
    main()
