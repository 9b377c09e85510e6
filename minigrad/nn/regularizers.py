"""Weight penalties to add to a loss: L2 (weight decay as a loss term) and L1 (sparsity).

    loss = data_loss + mg.nn.l2_penalty(weights, 1e-3) + mg.nn.l1_penalty(weights, 1e-4)

They are ordinary composed expressions, so their gradient (2 * weight * p, and weight * sign(p)
with sign(0) = 0) flows through the engine like any other. Pass the tensors to penalise; the
usual choice is the weight matrices only (`matrices(model)`), leaving biases and gains free.

>>> import minigrad as mg
>>> net = mg.nn.Linear(3, 2, rng=0)
>>> float(mg.nn.l2_penalty([mg.tensor([1.0, -2.0])], 0.5).item())
2.5
>>> len(mg.nn.matrices(net))   # the (2, 3) weight, not the bias
1
"""
from __future__ import annotations

from typing import Iterable

from minigrad import checks
from minigrad import functions as F
from minigrad.nn.module import Module
from minigrad.tensor import Tensor

__all__ = ["l1_penalty", "l2_penalty", "matrices"]


def _tensors(params, where: str) -> list:
    params = list(params)
    if not params:
        raise ValueError(f"{where}: got no parameters to penalise")
    for p in params:
        if not isinstance(p, Tensor):
            raise TypeError(f"{where}: expected Tensors (parameters), got {type(p).__name__}")
    return params


def l2_penalty(params: Iterable[Tensor], weight: float) -> Tensor:
    """weight * sum over params of sum(p**2), a scalar Tensor;  d/dp = 2 * weight * p."""
    weight = checks.real(weight, "l2_penalty", "weight", low=0)
    total = None
    for p in _tensors(params, "l2_penalty"):
        term = F.sum(p * p)
        total = term if total is None else total + term
    return total * weight


def l1_penalty(params: Iterable[Tensor], weight: float) -> Tensor:
    """weight * sum over params of sum(|p|), a scalar Tensor;  d/dp = weight * sign(p)."""
    weight = checks.real(weight, "l1_penalty", "weight", low=0)
    total = None
    for p in _tensors(params, "l1_penalty"):
        term = F.sum(F.abs(p))
        total = term if total is None else total + term
    return total * weight


def matrices(module: Module) -> list:
    """The parameters of `module` with two or more axes (weight matrices, embeddings, kernels):
    what a weight penalty usually covers, leaving biases, gains and per-unit vectors out."""
    if not isinstance(module, Module):
        raise TypeError(f"matrices: expected a Module, got {type(module).__name__}")
    return [p for p in module.parameters() if p.ndim >= 2]
