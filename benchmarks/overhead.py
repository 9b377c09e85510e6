"""Per-op overhead of minigrad over raw NumPy, and per-node cost of the backward walk.

    python -m benchmarks.overhead [--rounds 41] [--torch]

Ops (float32): add and tanh on (32, 256), matmul (32, 256) @ (256, 256), each run three ways:
`numpy` (raw arrays), `no_grad` (minigrad without recording) and `recorded` (an input requires
grad, so a graph node is built and then dropped, as in a training step). Every round times a batch
of calls of each way, interleaved so that machine load hits them alike; the table gives the
median over rounds of the time per call, its min-max, and the overhead (minigrad median minus
NumPy median). `backward/node` is the backward pass of a chain of 1,000 adds of a constant,
divided by 1,000: Add's backward only passes the gradient on, so this is the engine's own cost.
With `--torch`, PyTorch's recorded op is timed as well, for comparison.
"""
from __future__ import annotations

import argparse
import statistics
import timeit

import numpy as np

import minigrad as mg
from benchmarks._timing import machine_line

SHAPE, HIDDEN, CHAIN = (32, 256), 256, 1000


def _setup(ns):
    rng = np.random.default_rng(0)
    a = rng.standard_normal(SHAPE).astype(np.float32)
    b = rng.standard_normal(SHAPE).astype(np.float32)
    w = (rng.standard_normal((HIDDEN, HIDDEN)) / 16).astype(np.float32)
    ns.update(np=np, mg=mg, a=a, b=b, w=w,
              x=mg.tensor(a, requires_grad=True), xc=mg.tensor(a), y=mg.tensor(b),
              W=mg.tensor(w))


OPS = {  # name -> statement per way; x requires grad, xc does not
    "add": {"numpy": "a + b", "no_grad": "xc + y", "recorded": "x + y", "torch": "tx + ty"},
    "tanh": {"numpy": "np.tanh(a)", "no_grad": "xc.tanh()", "recorded": "x.tanh()",
             "torch": "tx.tanh()"},
    "matmul": {"numpy": "a @ w", "no_grad": "xc @ W", "recorded": "x @ W", "torch": "tx @ tw"},
}


def time_ops(rounds: int, number: int, with_torch: bool) -> dict:
    """{op: {way: list of seconds per call, one per round}}."""
    ns = {}
    _setup(ns)
    ways = ["numpy", "no_grad", "recorded"]
    if with_torch:
        import torch
        ns.update(tx=torch.tensor(ns["a"], requires_grad=True), ty=torch.tensor(ns["b"]),
                  tw=torch.tensor(ns["w"]))
        ways.append("torch")
    times = {op: {w: [] for w in ways} for op in OPS}
    timers = {(op, w): timeit.Timer(OPS[op][w], globals=ns) for op in OPS for w in ways}
    for t in timers.values():
        t.timeit(number)  # warm up caches, the allocator and the interpreter's specialisation
    for _ in range(rounds):
        for (op, w), t in timers.items():
            times[op][w].append(t.timeit(number) / number)
    return times


def time_backward(rounds: int) -> list:
    """Seconds per node of backward through a chain of CHAIN adds of a constant."""
    a = np.random.default_rng(1).standard_normal(SHAPE).astype(np.float32)
    c = mg.tensor(np.ones(SHAPE, np.float32))
    g = np.ones(SHAPE, np.float32)
    per_node = []
    for _ in range(rounds):
        x = mg.tensor(a, requires_grad=True)
        y = x
        for _ in range(CHAIN):
            y = y + c
        t = timeit.default_timer()
        y.backward(g)
        per_node.append((timeit.default_timer() - t) / CHAIN)
    return per_node


def _us(s: float) -> str:
    return f"{s * 1e6:7.2f}"


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=41, help="timed rounds per op and way")
    p.add_argument("--number", type=int, default=2000, help="calls per round")
    p.add_argument("--torch", action="store_true", help="also time PyTorch (comparison only)")
    args = p.parse_args(argv)

    print(machine_line())
    print(f"per call, microseconds: median over {args.rounds} rounds of {args.number} calls "
          f"[min-max]; overhead = minigrad median - numpy median")
    times = time_ops(args.rounds, args.number, args.torch)
    print(f"{'op':8s} {'way':9s} {'median':>7s}  {'min':>7s} - {'max':>7s}   overhead")
    for op, by_way in times.items():
        base = statistics.median(by_way["numpy"])
        for way, ts in by_way.items():
            med = statistics.median(ts)
            over = "" if way == "numpy" else f"{_us(med - base)}"
            print(f"{op:8s} {way:9s} {_us(med)}  {_us(min(ts))} - {_us(max(ts))}   {over}")
    bw = time_backward(max(args.rounds // 2, 5))
    print(f"backward/node (chain of {CHAIN} adds, {SHAPE}): median {_us(statistics.median(bw))}"
          f"  [{_us(min(bw))} - {_us(max(bw))}]")


if __name__ == "__main__":
    main()
