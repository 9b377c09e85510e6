"""Gradient clipping, in place on `.grad.data` (call it between `backward()` and `step()`).

>>> import minigrad as mg
>>> w = mg.tensor([3.0, 4.0], requires_grad=True)
>>> (w * w).sum().backward()            # grad = 2w = (6, 8), norm 10
>>> mg.nn.utils.clip_grad_norm_([w], max_norm=1.0)
10.0
>>> [round(g, 4) for g in w.grad.tolist()]
[0.6, 0.8]
"""
from __future__ import annotations

import math
from typing import Iterable

from minigrad import checks
from minigrad.backend import get_array_module
from minigrad.tensor import Tensor

__all__ = ["clip_grad_norm_", "clip_grad_value_"]


def _grads(params, op):
    if isinstance(params, Tensor):
        params = [params]
    out = []
    for p in params:
        if not isinstance(p, Tensor):
            raise TypeError(f"{op}: expected Tensors, got {type(p).__name__}")
        if p.grad is not None:
            out.append(p.grad.data)
    return out


def _total_norm(grads, p):
    # one reduction per gradient, left on its device, then a single host sync where they share one
    parts = []
    for g in grads:
        xp = get_array_module(g)
        if p == math.inf:
            parts.append(xp.abs(g).max() if g.size else xp.zeros((), g.dtype))
        elif p == 2.0:
            parts.append(xp.vdot(g.ravel(), g.ravel()))  # BLAS dot: no |g|^2 temporary
        else:
            parts.append((xp.abs(g) ** p).sum())
    if len({type(g) for g in grads}) == 1:
        xp = get_array_module(grads[0])
        stacked = xp.stack([xp.asarray(x, dtype=xp.float64) for x in parts])
        agg = float(stacked.max() if p == math.inf else stacked.sum())
    else:
        values = [float(x) for x in parts]
        agg = (math.nan if any(map(math.isnan, values)) else max(values)) if p == math.inf \
            else math.fsum(values)
    return agg if p == math.inf else agg ** (1.0 / p)


def clip_grad_norm_(params: Iterable[Tensor] | Tensor, max_norm: float,
                    norm_type: float = 2.0, error_if_nonfinite: bool = False) -> float:
    """Scale all gradients together so that their joint norm is at most `max_norm`.

    total = (sum over every gradient element g of |g|^p)^(1/p)  (p = norm_type; p = inf: max |g|);
    when total > max_norm every gradient is multiplied by max_norm / (total + 1e-6).
    Parameters without a gradient are skipped. Returns total, the norm *before* clipping, as a
    float. A non-finite total raises ValueError with `error_if_nonfinite`; otherwise the scaling
    still happens (and spreads the NaN), as in PyTorch.
    """
    grads = _grads(params, "clip_grad_norm_")
    max_norm = checks.real(max_norm, "clip_grad_norm_", "max_norm", low=0)
    p = checks.real(norm_type, "clip_grad_norm_", "norm_type", low=0, low_open=True,
                    allow_inf=True)
    checks.boolean(error_if_nonfinite, "clip_grad_norm_", "error_if_nonfinite")
    if not grads:
        return 0.0
    total = _total_norm(grads, p)
    if error_if_nonfinite and not math.isfinite(total):
        raise ValueError(f"clip_grad_norm_: the total {norm_type}-norm of the gradients is "
                         f"{total}; pass error_if_nonfinite=False to clip anyway")
    coef = max_norm / (total + 1e-6)
    if coef < 1.0 or math.isnan(coef):
        for g in grads:
            g *= coef
    return total


def clip_grad_value_(params: Iterable[Tensor] | Tensor, clip_value: float) -> None:
    """Clamp every gradient element to [-clip_value, clip_value] in place."""
    grads = _grads(params, "clip_grad_value_")
    v = checks.real(clip_value, "clip_grad_value_", "clip_value", low=0)
    for g in grads:
        get_array_module(g).clip(g, -v, v, out=g)
