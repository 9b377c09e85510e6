"""Initialisers: fill a Tensor's data in place, on its device, from a numpy Generator.

Values are drawn on the host in float64 with `rng` (a numpy Generator or an int seed; default:
the generator of `mg.random`), cast to the tensor's dtype and copied to its device, so the same
seed gives the same weights on every device. Each function returns the tensor.

>>> import minigrad as mg
>>> w = mg.zeros(4, 3)
>>> _ = mg.nn.init.xavier_uniform_(w, rng=0)
>>> bool(abs(w.numpy()).max() <= (6 / 7) ** 0.5)
True
"""
from __future__ import annotations

import math

import numpy as np

from minigrad import backend, checks
from minigrad.random import as_generator as _rng
from minigrad.tensor import Tensor

__all__ = ["constant_", "normal_", "ones_", "orthogonal_", "uniform_", "xavier_normal_",
           "xavier_uniform_", "zeros_"]


def _check(t, op):
    if not isinstance(t, Tensor):
        raise TypeError(f"init.{op}: expected a Tensor, got {type(t).__name__}")


def _write(t: Tensor, host) -> Tensor:
    # in place, off the graph, and counted: a graph that saved the old values will refuse backward
    t.data[...] = backend.to_device(np.asarray(host, dtype=t.dtype), backend.device_of(t.data))
    t.bump_version()
    return t


def uniform_(t: Tensor, a: float = 0.0, b: float = 1.0, rng=None) -> Tensor:
    """t ~ U(a, b) elementwise."""
    _check(t, "uniform_")
    a = checks.real(a, "init.uniform_", "a")
    b = checks.real(b, "init.uniform_", "b")
    if not a <= b:
        raise ValueError(f"init.uniform_: need a <= b, got a={a}, b={b}")
    return _write(t, _rng(rng).uniform(a, b, t.shape))


def normal_(t: Tensor, mean: float = 0.0, std: float = 1.0, rng=None) -> Tensor:
    """t ~ N(mean, std^2) elementwise."""
    _check(t, "normal_")
    mean = checks.real(mean, "init.normal_", "mean")
    std = checks.real(std, "init.normal_", "std", low=0)
    return _write(t, _rng(rng).normal(mean, std, t.shape))


def constant_(t: Tensor, value: float) -> Tensor:
    """t = value everywhere."""
    _check(t, "constant_")
    value = checks.real(value, "init.constant_", "value")
    return _write(t, np.full(t.shape, value))


def zeros_(t: Tensor) -> Tensor:
    """t = 0."""
    return constant_(t, 0.0)


def ones_(t: Tensor) -> Tensor:
    """t = 1."""
    return constant_(t, 1.0)


def _fans(t, op):
    """fan_in, fan_out of a weight (out, in, *kernel), as PyTorch counts them."""
    if t.ndim < 2:
        raise ValueError(f"init.{op}: needs a tensor with at least 2 dims, got shape {t.shape}")
    receptive = math.prod(t.shape[2:])
    return t.shape[1] * receptive, t.shape[0] * receptive


def xavier_uniform_(t: Tensor, gain: float = 1.0, rng=None) -> Tensor:
    """t ~ U(-a, a) with a = gain * sqrt(6 / (fan_in + fan_out)) (Glorot & Bengio, 2010).

    For a weight (out, in): fan_in = in, fan_out = out.
    """
    _check(t, "xavier_uniform_")
    gain = checks.real(gain, "init.xavier_uniform_", "gain")
    fan_in, fan_out = _fans(t, "xavier_uniform_")
    a = gain * math.sqrt(6.0 / (fan_in + fan_out))
    return _write(t, _rng(rng).uniform(-a, a, t.shape))


def xavier_normal_(t: Tensor, gain: float = 1.0, rng=None) -> Tensor:
    """t ~ N(0, std^2) with std = gain * sqrt(2 / (fan_in + fan_out))."""
    _check(t, "xavier_normal_")
    gain = checks.real(gain, "init.xavier_normal_", "gain")
    fan_in, fan_out = _fans(t, "xavier_normal_")
    std = gain * math.sqrt(2.0 / (fan_in + fan_out))
    return _write(t, _rng(rng).normal(0.0, std, t.shape))


def orthogonal_(t: Tensor, gain: float = 1.0, rng=None) -> Tensor:
    """t = gain * Q, Q with orthonormal rows or columns (Saxe et al., 2014).

    t is viewed as a matrix (rows, cols) = (shape[0], prod(shape[1:])). A standard normal matrix
    of the taller orientation is factored A = QR; multiplying Q's columns by sign(diag(R)) makes
    Q uniformly distributed (Haar). Then Q Q^T = I when rows <= cols, Q^T Q = I otherwise.
    """
    _check(t, "orthogonal_")
    gain = checks.real(gain, "init.orthogonal_", "gain")
    if t.ndim < 2:
        raise ValueError(f"init.orthogonal_: needs a tensor with at least 2 dims, got shape "
                         f"{t.shape}")
    rows, cols = t.shape[0], math.prod(t.shape[1:])
    a = _rng(rng).standard_normal((max(rows, cols), min(rows, cols)))
    q, r = np.linalg.qr(a)
    d = np.sign(np.diag(r))
    q *= np.where(d == 0, 1.0, d)  # sign(0) would zero a column: keep it instead
    if rows < cols:
        q = q.T
    return _write(t, gain * q.reshape(t.shape))
