"""Reward-augmented maximum likelihood (Norouzi et al. 2016): train on targets drawn from the
exponentiated payoff distribution q(y | y*) = exp(r(y, y*) / tau) / Z around the reference y*.

For the negative Hamming distance r = -d_H the draw is exact and cheap by stratifying over the
distance, as the paper does: the number of sequences of y*'s length m at Hamming distance d is
C(m, d) (V - 1)^d, so d is drawn from p(d) proportional to C(m, d) (V - 1)^d exp(-d / tau), then
d distinct positions uniformly, and each one's token uniformly among the V - 1 others.

>>> import numpy as np
>>> from rnn.training.raml import hamming_samples
>>> hamming_samples([3, 1, 4, 1], vocab_size=10, tau=1e-3, n=2, rng=0).tolist()
[[3, 1, 4, 1], [3, 1, 4, 1]]
"""
from __future__ import annotations

import math

import numpy as np

from minigrad import checks

__all__ = ["hamming_distance_distribution", "hamming_samples"]


def hamming_distance_distribution(m: int, vocab_size: int, tau: float) -> np.ndarray:
    """p(d) for d = 0..m: the distance of a draw from q(y | y*) for |y*| = m."""
    m = checks.integer(m, "hamming_distance_distribution", "m", low=0)
    V = checks.integer(vocab_size, "hamming_distance_distribution", "vocab_size", low=2)
    tau = checks.real(tau, "hamming_distance_distribution", "tau", low=0, low_open=True)
    d = np.arange(m + 1)
    log_w = np.array([math.lgamma(m + 1) - math.lgamma(k + 1) - math.lgamma(m - k + 1)
                      for k in d]) + d * math.log(V - 1) - d / tau
    w = np.exp(log_w - log_w.max())
    return w / w.sum()


def hamming_samples(target, vocab_size: int, tau: float, n: int, rng=None) -> np.ndarray:
    """n exact draws (n, m) from q(y | y*) proportional to exp(-d_H(y, y*) / tau), y of the
    target's length m over tokens 0 .. vocab_size - 1 (map special tokens out first)."""
    where = "hamming_samples"
    y = np.asarray(target)
    if y.ndim != 1 or y.dtype.kind not in "iu":
        raise TypeError(f"{where}: target must be a 1-D sequence of integer token ids, got "
                        f"shape {y.shape}, dtype {y.dtype}")
    V = checks.integer(vocab_size, where, "vocab_size", low=2)
    n = checks.integer(n, where, "n", low=1)
    if len(y) and (y.min() < 0 or y.max() >= V):
        raise ValueError(f"{where}: target tokens must lie in [0, {V}), got {y.min()}..{y.max()}")
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    m = len(y)
    p = hamming_distance_distribution(m, V, tau)
    distances = rng.choice(m + 1, size=n, p=p)
    out = np.tile(y.astype(np.int64), (n, 1))
    for row, d in zip(out, distances):
        where_changed = rng.choice(m, size=d, replace=False)
        # a uniform token among the V - 1 others: shift by 1..V-1 modulo V
        row[where_changed] = (row[where_changed] + rng.integers(1, V, size=d)) % V
    return out
