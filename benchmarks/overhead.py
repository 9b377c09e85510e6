"""Per-op overhead of minigrad over raw NumPy, and per-node cost of the backward walk.

    python -m benchmarks.overhead [--rounds 31] [--number 1000] [--torch] [--cpu-time] [--cell]

Ops (float32): add and tanh on (32, 256), matmul (32, 256) @ (256, 256), each run three ways:
`numpy` (raw arrays), `no_grad` (minigrad without recording) and `recorded` (an input requires
grad, so a graph node is built and then dropped, as in a training step). The elementwise ops are
timed together, then the matmul; every round times a batch of calls of each way, interleaved so
that machine load hits them alike. The table gives, per call, the median over rounds, the min-max,
and the overhead: minigrad minus NumPy, of the medians and of the minima (the minimum is the
steadier figure on a busy machine). BLAS runs on one thread when threadpoolctl is installed.
`backward per node` times the backward pass of a chain of 1,000 adds of a constant, divided by
1,000: Add's backward only passes its gradient on, so this is the engine's own cost per node.
`--torch` times PyTorch's recorded op as well (one thread), for comparison only; `--cpu-time`
measures this thread's CPU time instead of wall time. `--cell` also times forward + backward of
the composed LSTM (`rnn.LSTMCell(fused=False)`) at B 1, I 32, H 64, T 200, float32, per step and
per recorded node: the per-op path in a real cell, where a parameter's `w.T` is kept.
"""
from __future__ import annotations

import argparse
import statistics
import time
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


# ops timed together (their ways interleaved round by round); groups run one after the other
GROUPS = (("add", "tanh"), ("matmul",))


def time_ops(rounds: int, number: int, ways: list, timer) -> dict:
    """{op: {way: list of seconds per call, one per round}}.

    Every round times each way of each op of a group once, so the ways are compared under the
    same load. The elementwise ops and the matmul are separate groups: a round of 1,000 matmuls
    changes the state of the CPU (caches, clock) that the microsecond ops after it would then
    be measured in (interleaved, it added about 0.8 us to the elementwise ops' overhead, and to
    PyTorch's alike).
    """
    ns = {}
    _setup(ns)
    if "torch" in ways:
        import torch
        ns.update(tx=torch.tensor(ns["a"], requires_grad=True), ty=torch.tensor(ns["b"]),
                  tw=torch.tensor(ns["w"]))
    times = {op: {w: [] for w in ways} for op in OPS}
    for group in GROUPS:
        timers = {(op, w): timeit.Timer(OPS[op][w], globals=ns, timer=timer)
                  for op in group for w in ways}
        for t in timers.values():
            t.timeit(number)  # warm up caches, the allocator and the interpreter's specialisation
        for _ in range(rounds):
            for (op, w), t in timers.items():
                times[op][w].append(t.timeit(number) / number)
    return times


def time_backward(rounds: int, timer) -> list:
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
        t = timer()
        y.backward(g)
        per_node.append((timer() - t) / CHAIN)
    return per_node


CELL = (1, 32, 64, 200)  # B, I, H, T: config c of benchmarks.rnn


def time_cell(rounds: int, timer) -> tuple:
    """Seconds per forward + backward of the composed LSTM at CELL, one per round, and the
    number of recorded nodes in its graph."""
    import rnn
    B, I, H, T = CELL
    cell = rnn.LSTMCell(I, H, fused=False, rng=0, dtype="float32")
    x = mg.tensor(np.random.default_rng(1).standard_normal((T, B, I)).astype(np.float32),
                  requires_grad=True)
    nodes, stack = set(), [rnn.unroll(cell, x)[0].sum().grad_fn]
    while stack:  # count the graph's nodes once
        fn = stack.pop()
        if id(fn) not in nodes:
            nodes.add(id(fn))
            stack.extend(p[0] for p in fn.parents if p is not None and p[1] >= 0)
    times = []
    for _ in range(rounds + 1):  # the first is a warm-up
        t = timer()
        rnn.unroll(cell, x)[0].sum().backward()
        times.append(timer() - t)
    return times[1:], len(nodes)


TARGET_US = 3.0      # issue 7: recorded elementwise op on 32x256, overhead over NumPy
TORCH_QUOTED_US = 1.9  # PyTorch's overhead as the issue measured it on its machine


def print_targets(times: dict) -> None:
    """Issue 7's per-op target for the elementwise ops, and the same against PyTorch's overhead
    in this run (the absolute figure moves with the machine; the ratio much less)."""
    print(f"target: recorded elementwise op overhead <= {TARGET_US:.1f} us (median; min in "
          "brackets)")
    for op in ("add", "tanh"):
        ts = times[op]
        base, base_min = statistics.median(ts["numpy"]), min(ts["numpy"])
        over = statistics.median(ts["recorded"]) - base
        over_min = min(ts["recorded"]) - base_min
        line = (f"  {op:5s} {over * 1e6:5.2f} ({over_min * 1e6:.2f}) us  "
                f"{'holds' if over * 1e6 <= TARGET_US else 'MISSED'}")
        if "torch" in ts:
            t_over = statistics.median(ts["torch"]) - base
            line += (f"   PyTorch {t_over * 1e6:5.2f} us, minigrad / PyTorch {over / t_over:4.2f} "
                     f"(the issue's 3 us is {TARGET_US / TORCH_QUOTED_US:.2f}x its PyTorch "
                     f"figure, {TORCH_QUOTED_US} us)")
        print(line)


def _us(s: float) -> str:
    return f"{s * 1e6:7.2f}"


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=31, help="timed rounds per op and way")
    p.add_argument("--number", type=int, default=1000, help="calls per round")
    p.add_argument("--torch", action="store_true", help="also time PyTorch (comparison only)")
    p.add_argument("--cell", action="store_true",
                   help="also time the composed LSTM at B 1, I 32, H 64, T 200 (fwd + bwd)")
    p.add_argument("--cpu-time", action="store_true",
                   help="time this thread's CPU time instead of wall time: steadier on a busy "
                        "machine, but blind to work in other threads (BLAS in matmul)")
    args = p.parse_args(argv)
    timer = time.thread_time if args.cpu_time else time.perf_counter
    try:  # one BLAS thread: waking a thread pool costs more than the microseconds measured here
        import threadpoolctl
        threadpoolctl.threadpool_limits(1, user_api="blas")
        blas = "BLAS limited to 1 thread"
    except ImportError:
        blas = "BLAS threads as configured (pip install threadpoolctl to use 1)"

    if args.torch:
        import torch
        torch.set_num_threads(1)  # like BLAS: one thread, and no idle threads spinning beside us
    print(machine_line())
    print(blas)
    print(f"{'thread CPU' if args.cpu_time else 'wall'} time per call, microseconds: median "
          f"over {args.rounds} rounds of {args.number} calls, [min - max]; overhead: minigrad "
          "minus numpy, of the medians and of the minima")
    ways = ["numpy", "no_grad", "recorded"] + (["torch"] if args.torch else [])
    times = time_ops(args.rounds, args.number, ways, timer)
    print(f"{'op':7s} {'way':9s} {'median':>7s}  [{'min':>7s} - {'max':>8s}]  overhead: median"
          "     min")
    for op, by_way in times.items():
        base, base_min = statistics.median(by_way["numpy"]), min(by_way["numpy"])
        for way, ts in by_way.items():
            med = statistics.median(ts)
            over = "" if way == "numpy" else f"{_us(med - base)}  {_us(min(ts) - base_min)}"
            print(f"{op:7s} {way:9s} {_us(med)}  [{_us(min(ts))} - {_us(max(ts)):>8s}]"
                  f"           {over}")
    print_targets(times)
    bw = time_backward(max(args.rounds // 2, 5), timer)
    print(f"backward per node (chain of {CHAIN} adds of {SHAPE}): median "
          f"{_us(statistics.median(bw)).strip()}  [{_us(min(bw)).strip()} - "
          f"{_us(max(bw)).strip()}]")
    if args.cell:
        ts, n = time_cell(max(args.rounds // 3, 5), timer)
        med = statistics.median(ts)
        print(f"composed LSTM {CELL} fwd+bwd: median {med * 1e3:.2f} ms [{min(ts) * 1e3:.2f} - "
              f"{max(ts) * 1e3:.2f}], {n} nodes: {_us(med / n).strip()} us per node "
              f"({_us(med / CELL[3]).strip()} us per step)")


if __name__ == "__main__":
    main()
