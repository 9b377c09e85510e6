"""Per-sequence lengths (B,): the one validator every `lengths` argument in `rnn` goes through.

`unroll`, the fused kernels, `mask_from_lengths`, `sequence_cross_entropy` and
`reverse_sequences` all read lengths with `as_lengths`, so they accept and refuse the same things:
a list, array or Tensor (any device) of B integers (or floats holding integers, such as 3.0) in
[min_length, T]. `[2.5, 1]` is a TypeError everywhere.
"""
from __future__ import annotations

import numpy as np

import minigrad as mg
from minigrad import backend

__all__ = ["as_lengths", "mask_from_lengths"]


def as_lengths(lengths, B: int, T: int, who: str, min_length: int = 1) -> np.ndarray | None:
    """`lengths` as a host int64 array (B,) with values in [min_length, T]; None stays None.

    TypeError (starting with `who`) for non-integer values, ValueError for a wrong shape or a
    value out of range.

    >>> as_lengths([3, 1.0], B=2, T=4, who="f").tolist()
    [3, 1]
    """
    if lengths is None:
        return None
    a = lengths.data if isinstance(lengths, mg.Tensor) else lengths
    if isinstance(a, (list, tuple)) and any(isinstance(v, (bool, np.bool_)) for v in a):
        raise TypeError(f"{who}: lengths must be integers, got a bool among {list(a)}")
    a = backend.to_host(a) if not isinstance(a, (list, tuple)) else np.asarray(a)
    a = np.asarray(a)
    if a.dtype.kind not in "iu" and not (a.dtype.kind == "f" and np.isfinite(a).all()
                                         and np.all(a == np.round(a))):
        raise TypeError(f"{who}: lengths must be integers, got dtype {a.dtype}"
                        + (f" (lengths {a.tolist()})" if a.dtype.kind == "f" else ""))
    if a.shape != (B,):
        raise ValueError(f"{who}: lengths of shape {a.shape} do not match the batch (B,) = ({B},)")
    a = a.astype(np.int64)
    if a.size and (a.min() < min_length or a.max() > T):
        raise ValueError(f"{who}: lengths must lie in [{min_length}, T={T}] for inputs of {T} "
                         f"steps, got min {int(a.min())} max {int(a.max())} (lengths "
                         f"{a.tolist()})")
    return a


def mask_from_lengths(lengths, T: int, dtype=None, device=None) -> mg.Tensor:
    """(T, B) float mask: 1 where step t < lengths[b] (inside sequence b), else 0.

    Lengths may be 0 here (a TBPTT window after a sequence ended), at most T.

    >>> import rnn
    >>> rnn.mask_from_lengths([2, 1], 3).tolist()
    [[1.0, 1.0], [1.0, 0.0], [0.0, 0.0]]
    """
    a = lengths.data if isinstance(lengths, mg.Tensor) else lengths
    n = np.shape(a)
    if len(n) != 1:
        raise ValueError(f"mask_from_lengths: lengths must be (B,), got shape {n}")
    a = as_lengths(lengths, n[0], T, "mask_from_lengths", min_length=0)
    mask = np.arange(T)[:, None] < a[None, :]
    return mg.tensor(mask.astype(dtype if dtype is not None else mg.get_default_dtype()),
                     device=device)
