"""Helpers every demo shares: the command line, seeding, the output folder, the progress bar and
matplotlib without a display."""
from __future__ import annotations

import argparse
import contextlib
import os
import time
from pathlib import Path

import numpy as np

import minigrad as mg


def parser(name: str, description: str) -> argparse.ArgumentParser:
    """An ArgumentParser with the options every demo has: --seed, --out, --quiet."""
    p = argparse.ArgumentParser(prog=f"python -m demos.{name}", description=description,
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--seed", type=int, default=0, help="seed of every random draw")
    p.add_argument("--out", default=os.path.join("out", name),
                   help="folder for the figures and results")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--no-plots", action="store_true", help="write no figures (faster)")
    p.add_argument("--threads", type=int, default=1,
                   help="BLAS threads (0: the library's default); RNN matrices are small, so "
                        "one thread is as fast on an idle machine and far faster on a busy one")
    return p


@contextlib.contextmanager
def blas_threads(n: int):
    """Limit BLAS to n threads inside the block (n = 0, or no threadpoolctl: leave it as is).

    threadpoolctl comes with scikit-learn (the `demos` extra)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        threadpool_limits = None
    if n <= 0 or threadpool_limits is None:
        yield
        return
    with threadpool_limits(limits=n, user_api="blas"):
        yield


def launch(p: argparse.ArgumentParser, argv, run, check=None) -> dict:
    """Parse `argv` with `p`, validate with `check(args)` if given, and return `run(args)` with
    BLAS limited to `--threads`: the `main` of every demo."""
    args = p.parse_args(argv)
    if check is not None:
        check(args)
    with blas_threads(args.threads):
        return run(args)


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
