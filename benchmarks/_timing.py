"""Small timing helpers shared by the benchmark scripts."""

import os
import platform
import statistics
import time

import numpy as np

__all__ = ["measure", "settle", "best_matmul_gflops", "machine_line", "blas_info"]


def measure(fn, warmup=2, repeat=7, min_time=0.0, max_runs=None):
    """Time ``fn()`` with ``time.perf_counter``.

    Runs ``warmup`` untimed calls, then at least ``repeat`` timed calls, and
    keeps going until the timed calls add up to ``min_time`` seconds (capped
    at ``max_runs`` calls when given).  Returns a dict with ``median``,
    ``min``, ``max`` (seconds), ``runs`` (number of timed calls) and
    ``times`` (every timed call, in order).
    """
    for _ in range(warmup):
        fn()
    times = []
    total = 0.0
    while len(times) < repeat or total < min_time:
        if max_runs is not None and len(times) >= max_runs:
            break
        t0 = time.perf_counter()
        fn()
        dt = time.perf_counter() - t0
        times.append(dt)
        total += dt
    return {
        "median": statistics.median(times),
        "min": min(times),
        "max": max(times),
        "runs": len(times),
        "times": times,
    }


def settle(seconds=0.5):
    """Sleep so that idle BLAS / OpenMP worker threads stop spin-waiting.

    OpenBLAS (NumPy) and OpenMP (PyTorch) workers busy-wait for a while after
    each parallel call; on a 2-core machine timing one library right after
    the other lets those spinning threads steal a core.  Time each
    implementation in its own block and call this in between.
    """
    time.sleep(seconds)


def best_matmul_gflops(dtype=np.float32, sizes=(256, 384, 512, 768, 1024), repeat=5):
    """Best achieved square-matmul throughput (GFLOP/s) over ``sizes``."""
    rng = np.random.default_rng(0)
    best = 0.0
    for n in sizes:
        a = rng.standard_normal((n, n)).astype(dtype)
        b = rng.standard_normal((n, n)).astype(dtype)
        c = np.empty((n, n), dtype)
        np.matmul(a, b, out=c)  # warm up (thread pool, caches)
        t = min(_time_once(np.matmul, a, b, c) for _ in range(repeat))
        best = max(best, 2.0 * n ** 3 / t / 1e9)
    return best


def _time_once(f, a, b, c):
    t0 = time.perf_counter()
    f(a, b, out=c)
    return time.perf_counter() - t0


def _cpu_model():
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def blas_info():
    """A short description of the BLAS NumPy uses (and its thread count)."""
    try:
        import threadpoolctl  # optional
        pools = [p for p in threadpoolctl.threadpool_info() if p.get("user_api") == "blas"]
        if pools:
            p = pools[0]
            return "%s %s (%s, %s threads)" % (
                p.get("internal_api"), p.get("version"), p.get("architecture"),
                p.get("num_threads"))
    except Exception:
        pass
    try:
        cfg = np.show_config(mode="dicts")
        blas = cfg.get("Build Dependencies", {}).get("blas", {})
        name = blas.get("name", "?")
        version = blas.get("version", "")
        return ("%s %s" % (name, version)).strip()
    except Exception:
        return "unknown BLAS"


def machine_line():
    """One line describing the machine and software stack."""
    parts = [
        _cpu_model(),
        "%s cores" % (os.cpu_count() or "?"),
        "numpy %s" % np.__version__,
        "BLAS %s" % blas_info(),
    ]
    try:
        import torch  # optional
        parts.append("torch %s (%d threads)" % (torch.__version__, torch.get_num_threads()))
    except ImportError:
        parts.append("torch not installed")
    env = []
    for var in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):
        val = os.environ.get(var)
        env.append("%s=%s" % (var, val) if val is not None else "%s unset" % var)
    parts.append(", ".join(env))
    return "; ".join(parts)
