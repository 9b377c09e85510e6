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

For the negative edit (Levenshtein) distance r = -d_E the outputs have any length, and the
number of sequences at distance d grows so fast with d that q need not even be normalisable; so
q is truncated to the sequences within `max_distance` D of y*:

    q_D(y | y*) = exp(-d_E(y, y*) / tau) / Z_D   for d_E(y, y*) <= D, else 0.

`edit_distance_samples` draws from q_D *exactly*, stratified over the distance: the number N_d
of sequences at each distance d <= D is counted exactly (a dynamic programme over the rows of
the edit-distance table, the states of a Levenshtein automaton: a row fixes every continuation's
distance), d is drawn from p(d) proportional to N_d exp(-d / tau), then one sequence uniformly
among the N_d, token by token, each continuation weighted by how many completions it has at
distance d. The one approximation is the truncation: the mass q puts beyond D is dropped
(`edit_distance_counts` gives N_d to judge it; with exp(-1 / tau) (V - 1) (m + 1) well below 1
the tail is small). Paper implementations that apply d random edits instead do not draw
uniformly among the sequences at distance d (several edit scripts reach the same sequence, and
some d-edit scripts land closer than d); this one does. The cost grows with the number of rows,
fine for targets of tens of tokens and D up to about 4.

>>> from rnn.training.raml import edit_distance_counts
>>> # at distance 1 from 01: 0, 1, 00, 11, 001, 010, 011, 101
>>> edit_distance_counts([0, 1], vocab_size=2, max_distance=1).tolist()
[1.0, 8.0]
"""
from __future__ import annotations

import math

import numpy as np

from minigrad import checks

__all__ = ["edit_distance_counts", "edit_distance_samples", "hamming_distance_distribution",
           "hamming_samples"]


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


class _EditRows:
    """The rows of the edit-distance table of a growing sequence against `target`, capped at
    D + 1, and how many continuations of each row end at each distance 0..D."""

    def __init__(self, target: np.ndarray, vocab_size: int, max_distance: int):
        self.target, self.D = [int(t) for t in target], max_distance
        distinct = sorted(set(self.target))
        # tokens absent from the target all move a row alike: one class, counted V - k times
        self.classes = [(t, 1) for t in distinct]
        if vocab_size > len(distinct):
            self.classes.append((-1, vocab_size - len(distinct)))
        self.others = np.setdiff1d(np.arange(vocab_size), distinct)
        self.memo: dict = {}

    def first(self) -> tuple:
        return tuple(min(j, self.D + 1) for j in range(len(self.target) + 1))

    def next(self, row: tuple, token: int) -> tuple | None:
        """The row after one more token, or None when no continuation gets within D."""
        new = [min(row[0] + 1, self.D + 1)]
        for j, t in enumerate(self.target, start=1):
            new.append(min(row[j] + 1, new[j - 1] + 1, row[j - 1] + (t != token), self.D + 1))
        return tuple(new) if min(new) <= self.D else None

    def counts(self, row: tuple) -> list:
        """[number of continuations (the empty one included) ending at distance d], d = 0..D."""
        if row in self.memo:
            return self.memo[row]
        out = [0] * (self.D + 1)
        if row[-1] <= self.D:
            out[row[-1]] += 1
        for token, times in self.classes:
            nxt = self.next(row, token)
            if nxt is not None:
                for d, c in enumerate(self.counts(nxt)):
                    out[d] += times * c
        self.memo[row] = out
        return out


def _edit_rows(target, vocab_size, max_distance, where) -> _EditRows:
    y = np.asarray(target)
    if y.ndim != 1 or y.dtype.kind not in "iu":
        raise TypeError(f"{where}: target must be a 1-D sequence of integer token ids, got "
                        f"shape {y.shape}, dtype {y.dtype}")
    V = checks.integer(vocab_size, where, "vocab_size", low=2)
    D = checks.integer(max_distance, where, "max_distance", low=0)
    if len(y) and (y.min() < 0 or y.max() >= V):
        raise ValueError(f"{where}: target tokens must lie in [0, {V}), got {y.min()}..{y.max()}")
    return _EditRows(y, V, D)


def edit_distance_counts(target, vocab_size: int, max_distance: int) -> np.ndarray:
    """N_d (float64, d = 0..max_distance): how many sequences over tokens 0..vocab_size - 1
    (of any length) lie at edit distance exactly d from `target` (exact integers up to 2^53)."""
    rows = _edit_rows(target, vocab_size, max_distance, "edit_distance_counts")
    return np.array(rows.counts(rows.first()), dtype=np.float64)


def edit_distance_samples(target, vocab_size: int, tau: float, n: int, max_distance: int = 3,
                          rng=None) -> list[np.ndarray]:
    """n exact draws from q_D(y | y*) proportional to exp(-d_E(y, y*) / tau) on the sequences
    within edit distance max_distance = D of the target (see the module docstring: exact on that
    support; the truncation is the approximation). A list of n int64 arrays of varying length."""
    where = "edit_distance_samples"
    rows = _edit_rows(target, vocab_size, max_distance, where)
    tau = checks.real(tau, where, "tau", low=0, low_open=True)
    n = checks.integer(n, where, "n", low=1)
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    start = rows.first()
    N = np.array(rows.counts(start), dtype=np.float64)
    d_all = np.arange(rows.D + 1)
    log_w = np.where(N > 0, np.log(np.maximum(N, 1)) - d_all / tau, -np.inf)
    p = np.exp(log_w - log_w.max())
    distances = rng.choice(rows.D + 1, size=n, p=p / p.sum())
    out = []
    for d in distances:
        row, seq = start, []
        while True:
            options, weights = [None], [1.0 if row[-1] == d else 0.0]   # None: stop here
            for token, times in rows.classes:
                nxt = rows.next(row, token)
                if nxt is not None:
                    options.append((token, nxt))
                    weights.append(float(times * rows.counts(nxt)[d]))
            w = np.array(weights)
            pick = options[rng.choice(len(options), p=w / w.sum())]
            if pick is None:
                break
            token, row = pick
            seq.append(token if token >= 0 else int(rng.choice(rows.others)))
        out.append(np.array(seq, dtype=np.int64))
    return out
