"""How many threads the BLAS library under NumPy may use: `set_num_threads`, `get_num_threads`.

minigrad's matrix products are NumPy's, so their threads are the BLAS library's (OpenBLAS, MKL,
...). Each library has its own knob; threadpoolctl (an optional dependency, in the `demos` and
`dev` extras) speaks to all of them, so this module only checks the argument and asks it.
"""
from __future__ import annotations

_MISSING = ("{fn}: needs threadpoolctl (pip install threadpoolctl, or the minigrad[demos] "
            "extra); without it, set OMP_NUM_THREADS / OPENBLAS_NUM_THREADS / MKL_NUM_THREADS "
            "before Python starts")


def _threadpoolctl(fn: str):
    try:
        import threadpoolctl
    except ImportError as e:
        raise ImportError(_MISSING.format(fn=fn)) from e
    return threadpoolctl


def set_num_threads(n: int) -> None:
    """Let the BLAS library use `n` threads from now on (for every matrix product NumPy runs).

    One thread is as fast for the small matrices of an RNN step on an idle machine and far
    faster on a busy one; several threads win for large matrix products on cores nobody else is
    using (measured in docs/performance.md). Raises ImportError, saying what to do, when
    threadpoolctl is not installed.

    >>> import minigrad as mg
    >>> mg.set_num_threads(1)  # doctest: +SKIP
    >>> mg.get_num_threads()  # doctest: +SKIP
    1
    """
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"set_num_threads: n must be an int, got {type(n).__name__}")
    if n < 1:
        raise ValueError(f"set_num_threads: n must be at least 1, got {n}")
    _threadpoolctl("set_num_threads").threadpool_limits(limits=n, user_api="blas")


def get_num_threads() -> int | None:
    """The threads the BLAS library may use now (the largest, if NumPy loaded several), or None
    when threadpoolctl finds no BLAS library. Raises ImportError without threadpoolctl."""
    info = _threadpoolctl("get_num_threads").threadpool_info()
    counts = [pool["num_threads"] for pool in info if pool.get("user_api") == "blas"]
    return max(counts) if counts else None
