"""Helpers every demo shares: the command line, seeding, the output folder, the progress bar and
matplotlib without a display."""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import time
from pathlib import Path

import numpy as np

import minigrad as mg


def parser(name: str, description: str, plots: bool = True) -> argparse.ArgumentParser:
    """An ArgumentParser with the options every demo has: --seed, --out, --quiet, --threads,
    and --no-plots for a demo whose figures are optional (`plots=True`)."""
    p = argparse.ArgumentParser(prog=f"python -m demos.{name}", description=description,
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--seed", type=int, default=0, help="seed of every random draw")
    p.add_argument("--out", default=os.path.join("out", name),
                   help="folder for the figures and results")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    if plots:
        p.add_argument("--no-plots", action="store_true", help="write no figures (faster)")
    p.add_argument("--threads", type=int, default=1,
                   help="BLAS threads (0: the library's default); RNN matrices are small, so "
                        "one thread is as fast on an idle machine and far faster on a busy one")
    return p


@contextlib.contextmanager
def blas_threads(n: int):
    """BLAS limited to n threads inside the block (`mg.set_num_threads`; n = 0 leaves it as it
    is); yields the number in force, or None where threadpoolctl (the `demos` extra) is missing
    and the threads cannot be read or set."""
    try:
        before = mg.get_num_threads()
    except ImportError:
        yield None
        return
    if n > 0:
        mg.set_num_threads(n)
    try:
        yield mg.get_num_threads()
    finally:
        if n > 0 and before is not None:
            mg.set_num_threads(before)


def launch(p: argparse.ArgumentParser, argv, run, check=None) -> dict:
    """Parse `argv` with `p`, validate with `check(args)` if given, and return `run(args)` with
    BLAS limited to `--threads`: the `main` of every demo. The thread count is printed and added
    to the demo's results (and its results.json), so every figure says how it was run."""
    args = p.parse_args(argv)
    if check is not None:
        check(args)
    saved = Path(args.out) / "results.json"
    before = saved.stat().st_mtime_ns if saved.exists() else None
    with blas_threads(args.threads) as n:
        shown = "unknown (no threadpoolctl)" if n is None else n
        print(f"BLAS threads: {shown} (--threads {args.threads}; 0 keeps the library's choice)")
        results = run(args)
    if isinstance(results, dict):
        results["blas_threads"] = n
        if saved.exists() and saved.stat().st_mtime_ns != before:  # written by this run
            data = json.loads(saved.read_text())
            data["blas_threads"] = n
            saved.write_text(json.dumps(data, indent=1))
    return results


def start(args) -> tuple[np.random.Generator, Path, "Clock"]:
    """What every run begins with: the seeded Generator, the output folder, a running clock."""
    return seed(args.seed), out_dir(args.out), Clock()


def seed(value: int) -> np.random.Generator:
    """Seed minigrad's default generator (dropout, randn) and return a NumPy Generator for the
    demo's own draws (data, weights), so one --seed fixes the whole run."""
    mg.manual_seed(value)
    return np.random.default_rng(value)


def out_dir(path: str) -> Path:
    """The output folder, created if needed."""
    p = Path(path)
    p.mkdir(parents=True, exist_ok=True)
    return p


def progress(total: int, desc: str, quiet: bool = False):
    """A tqdm bar over range(total); call `bar.set_postfix(loss=...)` to show the running loss."""
    from tqdm.auto import tqdm
    return tqdm(range(total), desc=desc, disable=quiet, dynamic_ncols=True, mininterval=0.5)


def pyplot():
    """matplotlib.pyplot on the Agg backend (writes files, needs no display)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


class Clock:
    """Wall time since creation, in seconds: `clock()`."""

    def __init__(self):
        self.start = time.perf_counter()

    def __call__(self) -> float:
        return time.perf_counter() - self.start
