"""The teacher-forcing schedules of scheduled sampling (Bengio et al. 2015, section 2.4).

eps_i is the probability of feeding the ground truth (rather than the model's own token) at
update i; it decays from 1 towards 0 as training goes on:

    linear:            eps_i = max(eps_min, k - c i)          (k <= 1, c > 0: the slope)
    exponential:       eps_i = k ** i                         (k < 1)
    inverse sigmoid:   eps_i = k / (k + exp(i / k))           (k >= 1: how long it stays high)

>>> from rnn.training.schedules import inverse_sigmoid
>>> [round(inverse_sigmoid(i, k=10.0), 4) for i in (0, 10, 50)]
[0.9091, 0.7863, 0.0631]
"""
from __future__ import annotations

import math

from minigrad import checks

__all__ = ["exponential", "inverse_sigmoid", "linear"]


def linear(i: int, k: float = 1.0, c: float = 1e-4, eps_min: float = 0.0) -> float:
    """max(eps_min, k - c i)."""
    i = checks.integer(i, "linear", "i", low=0)
    k = checks.probability(k, "linear", "k", one=True)
    c = checks.real(c, "linear", "c", low=0)
    eps_min = checks.probability(eps_min, "linear", "eps_min", one=True)
    return max(eps_min, k - c * i)


def exponential(i: int, k: float = 0.999) -> float:
    """k ** i."""
    i = checks.integer(i, "exponential", "i", low=0)
    k = checks.real(k, "exponential", "k", low=0, high=1, high_open=True)
    return k ** i


def inverse_sigmoid(i: int, k: float = 100.0) -> float:
    """k / (k + exp(i / k))."""
    i = checks.integer(i, "inverse_sigmoid", "i", low=0)
    k = checks.real(k, "inverse_sigmoid", "k", low=1)
    x = i / k
    return 0.0 if x > 700 else k / (k + math.exp(x))
