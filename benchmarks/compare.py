"""Two commits side by side: the fused RNN paths and the engine's per-op cost, A/B in one run.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python -m benchmarks.compare OLD NEW
        [--rounds 7] [--quick]

OLD and NEW are git revisions (a commit, a branch, HEAD~1; `WORKTREE` means the files as they
are now). Each is checked out into a temporary git worktree; then every round starts one fresh
process per revision, in alternating order (OLD, NEW, then NEW, OLD, ...), and each process times
the same workloads through the public API only (so any two commits compare). A ratio NEW / OLD of
the medians over rounds below 1 means NEW is faster; the min-max over rounds is printed beside
each median so the noise can be read off. BLAS runs on one thread when threadpoolctl is present.

Workloads: forward + full BPTT of `rnn.unroll(rnn.LSTMCell(I, H), x)` and of the GRU (reset-after)
at configs a (32,128,256,100), c (1,32,64,200), d (16,64,128,1000), float32, loss = sum of the
outputs; the composed LSTM (`fused=False`) at c; a recorded add and tanh on (32, 256) (time per
call, NumPy's own time included); the backward walk per node of a chain of 1,000 adds.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

# Runs inside each child process, with the revision's checkout first on sys.path.
CHILD = r"""
import contextlib, json, sys, time, timeit
import numpy as np
try:
    import threadpoolctl
    threadpoolctl.threadpool_limits(1)
except ImportError:
    pass
import minigrad as mg
import rnn

QUICK = sys.argv[1] == "quick"
CONFIGS = {"a": (32, 128, 256, 100), "c": (1, 32, 64, 200), "d": (16, 64, 128, 1000)}
if QUICK:
    CONFIGS = {"a": (8, 16, 32, 20), "c": (1, 8, 16, 40), "d": (4, 8, 16, 100)}


def unroll_step(family, B, I, H, T, fused=True):
    if family == "lstm":
        cell = rnn.LSTMCell(I, H, fused=fused, rng=0, dtype="float32")
    else:
        cell = rnn.GRUCell(I, H, reset_after=True, fused=fused, rng=0, dtype="float32")
    x = mg.tensor(np.random.default_rng(1).standard_normal((T, B, I)).astype(np.float32),
                  requires_grad=True)
    params = list(cell.parameters())

    def step():
        for p in params:
            p.grad = None
        x.grad = None
        out, _ = rnn.unroll(cell, x)
        out.sum().backward()
    return step


def median_time(fn, repeat):
    fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


res = {}
rep = 3 if QUICK else 5
for name, (B, I, H, T) in CONFIGS.items():
    res[f"lstm fused {name} (ms)"] = 1e3 * median_time(unroll_step("lstm", B, I, H, T), rep)
    res[f"gru fused {name} (ms)"] = 1e3 * median_time(unroll_step("gru", B, I, H, T), rep)
B, I, H, T = CONFIGS["c"]
# the per-op graph (one node per op and step): a revision with the compiled path runs it under
# rnn.compiling("off"), and its compiled path (NumPy's executor) as a row of its own
per_op = getattr(rnn, "compiling", None)
with per_op("off") if per_op else contextlib.nullcontext():
    res["lstm composed c (ms)"] = 1e3 * median_time(unroll_step("lstm", B, I, H, T, False), rep)
if per_op:
    with per_op("numpy"):
        res["lstm compiled c (ms)"] = 1e3 * median_time(unroll_step("lstm", B, I, H, T, False),
                                                        rep)

a = np.random.default_rng(0).standard_normal((32, 256)).astype(np.float32)
x = mg.tensor(a, requires_grad=True)
y = mg.tensor(a.copy())
number = 200 if QUICK else 2000
for op, stmt, bare in (("add", lambda: x + y, lambda: a + a), ("tanh", lambda: x.tanh(),
                                                                  lambda: np.tanh(a))):
    res[f"recorded {op} (us)"] = 1e6 * min(timeit.repeat(stmt, number=number, repeat=5)) / number
    numpy_us = 1e6 * min(timeit.repeat(bare, number=number, repeat=5)) / number
    res[f"{op} overhead over NumPy (us)"] = res[f"recorded {op} (us)"] - numpy_us

c = mg.tensor(a)


def chain():
    h = mg.tensor(a, requires_grad=True)
    z = h
    for _ in range(1000):
        z = z + c
    return z


def walk():
    z = chain()
    t0 = time.perf_counter()
    z.backward(mg.tensor(a))
    return time.perf_counter() - t0


walk()
res["backward per node (us)"] = 1e6 * sorted(walk() for _ in range(7))[3] / 1000
print(json.dumps(res))
"""


def checkout(rev: str, into: str) -> str:
    """A path holding the files of `rev` (the repository itself for WORKTREE)."""
    root = subprocess.run(["git", "rev-parse", "--show-toplevel"], capture_output=True,
                          text=True, check=True).stdout.strip()
    if rev == "WORKTREE":
        return root
    path = os.path.join(into, rev.replace("/", "_").replace("~", "_"))
    subprocess.run(["git", "worktree", "add", "--detach", "-q", path, rev], check=True, cwd=root)
    return path


def run_child(path: str, quick: bool) -> dict:
    env = dict(os.environ, PYTHONPATH=path)
    out = subprocess.run([sys.executable, "-c", CHILD, "quick" if quick else "full"],
                         capture_output=True, text=True, env=env, cwd=path)
    if out.returncode != 0:
        raise SystemExit(f"benchmarks.compare: the run in {path} failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.compare", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("old")
    parser.add_argument("new")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="tiny sizes, to check it runs")
    args = parser.parse_args(argv)
    if args.rounds < 1:
        raise SystemExit("benchmarks.compare: --rounds must be at least 1")
    with tempfile.TemporaryDirectory() as tmp:
        paths = {"old": checkout(args.old, tmp), "new": checkout(args.new, tmp)}
        try:
            runs = {"old": [], "new": []}
            for r in range(args.rounds):
                order = ("old", "new") if r % 2 == 0 else ("new", "old")
                for side in order:
                    runs[side].append(run_child(paths[side], args.quick))
                print(f"round {r + 1}/{args.rounds} done", file=sys.stderr)
        finally:
            for side, rev in (("old", args.old), ("new", args.new)):
                if rev != "WORKTREE":
                    subprocess.run(["git", "worktree", "remove", "--force", paths[side]],
                                   check=False)
    print(f"old = {args.old}, new = {args.new}; {args.rounds} rounds, fresh processes "
          f"alternating; median over rounds [min - max]")
    print(f"{'quantity':28s} {'old':>24s} {'new':>24s} {'new/old':>8s}")
    keys = list(runs["old"][0]) + [k for k in runs["new"][0] if k not in runs["old"][0]]
    for key in keys:
        cells = []
        for side in ("old", "new"):
            vals = [run[key] for run in runs[side] if key in run]
            cells.append((statistics.median(vals), min(vals), max(vals)) if vals else None)
        text = [f"{'-':>24s}" if c is None else f"{c[0]:9.2f} [{c[1]:6.2f}-{c[2]:6.2f}]"
                for c in cells]
        ratio = f"{cells[1][0] / cells[0][0]:8.3f}" if None not in cells else f"{'-':>8s}"
        print(f"{key:28s} {text[0]} {text[1]} {ratio}")  # a key only one revision has: -


if __name__ == "__main__":
    main()
