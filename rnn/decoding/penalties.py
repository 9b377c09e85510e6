"""Length and coverage penalties for ranking finished hypotheses, and the bound that makes
beam search's early stop exact.

A finished hypothesis with log-probability s (a sum of log-probabilities, so s <= 0), length L
(tokens, EOS included) and attention coverage c_i = sum over its steps of the attention on source
position i is ranked by

    score = s / lp(L) + cp(c)

    lp(L) = 1                              length_penalty=None
            L                              "avg": the mean log-probability per token
            ((5 + L) / 6) ** alpha         ("wu", alpha), Wu et al. 2016 (GNMT), alpha >= 0
    cp(c) = 0                              coverage_penalty=None
            beta * sum_i log(min(c_i, 1))  ("wu", beta), beta >= 0, over the source positions
                                           that received any attention (padding gets exactly 0
                                           and is left out)

The bound: every lp above is >= 1 and non-decreasing in L, and cp <= 0. An open hypothesis of
log-probability s can only lose log-probability (s' <= s <= 0) and end at a length L' <=
max_len, so any hypothesis it can still become scores at most s / lp(max_len) + 0. Once the n-th
best finished score reaches the best such bound, no open hypothesis can displace it.
"""
from __future__ import annotations

import numpy as np

from minigrad import checks

__all__ = ["coverage_penalty", "length_penalty", "parse_penalties", "upper_bound"]


def parse_penalties(length_penalty, coverage_penalty, where: str):
    """Check the two options; returns (length kind, alpha, beta or None)."""
    if length_penalty is None or length_penalty == "avg":
        kind, alpha = length_penalty, 0.0
    elif (isinstance(length_penalty, tuple) and len(length_penalty) == 2
          and length_penalty[0] == "wu"):
        kind, alpha = "wu", checks.real(length_penalty[1], where, "length_penalty alpha", low=0)
    else:
        raise ValueError(f"{where}: length_penalty must be None, 'avg' or ('wu', alpha), got "
                         f"{length_penalty!r}")
    if coverage_penalty is None:
        beta = None
    elif (isinstance(coverage_penalty, tuple) and len(coverage_penalty) == 2
          and coverage_penalty[0] == "wu"):
        beta = checks.real(coverage_penalty[1], where, "coverage_penalty beta", low=0)
    else:
        raise ValueError(f"{where}: coverage_penalty must be None or ('wu', beta), got "
                         f"{coverage_penalty!r}")
    return kind, alpha, beta


def length_penalty(kind, alpha: float, length):
    """lp(L) for lengths L (a number or an array)."""
    length = np.asarray(length, dtype=np.float64)
    if kind is None:
        return np.ones_like(length)
    if kind == "avg":
        return length
    return ((5.0 + length) / 6.0) ** alpha


def coverage_penalty(beta: float | None, coverage):
    """cp(c) for coverage (..., S); 0 without a coverage penalty."""
    if beta is None or coverage is None:
        return 0.0
    c = np.asarray(coverage, dtype=np.float64)
    seen = c > 0
    return beta * np.where(seen, np.log(np.minimum(np.where(seen, c, 1.0), 1.0)), 0.0).sum(-1)


def upper_bound(kind, alpha: float, log_prob, max_len: int):
    """The best score any continuation of open hypotheses of `log_prob` can reach."""
    return np.asarray(log_prob, dtype=np.float64) / length_penalty(kind, alpha, max_len)
