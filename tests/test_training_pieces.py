"""rnn.training's rewards, schedules and RAML sampler against references written here."""
from __future__ import annotations

import itertools
import math
from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rnn.training import raml, rewards, schedules

seqs = st.lists(st.integers(0, 4), max_size=7)


def levenshtein(a, b):
    """The textbook recursion with memoisation (an independent formulation of the DP)."""
    from functools import lru_cache

    @lru_cache(None)
    def d(i, j):
        if i == 0 or j == 0:
            return i + j
        return min(d(i - 1, j) + 1, d(i, j - 1) + 1, d(i - 1, j - 1) + (a[i - 1] != b[j - 1]))
    return d(len(a), len(b))


@settings(max_examples=40)
@given(st.lists(st.tuples(seqs, seqs), min_size=1, max_size=6))
def test_edit_distance_equals_the_recursion(pairs):
    hyps, refs = [p[0] for p in pairs], [p[1] for p in pairs]
    got = rewards.edit_distance(hyps, refs)
    assert got.tolist() == [levenshtein(tuple(h), tuple(r)) for h, r in pairs]
    assert (rewards.negative_edit_distance(hyps, refs) == -got).all()


def test_edit_distance_by_hand():
    kitten = [ord(c) for c in "kitten"]
    sitting = [ord(c) for c in "sitting"]
    assert rewards.edit_distance([kitten, [], [1]], [sitting, [1, 2], []]).tolist() == [3, 2, 1]


def test_hamming_and_token_accuracy_by_hand():
    h = [[1, 2, 3], [1, 2], [], [5, 5, 5, 5]]
    r = [[1, 0, 3], [1, 2, 3, 4], [], [5, 5]]
    assert rewards.hamming_distance(h, r).tolist() == [1, 2, 0, 2]
    np.testing.assert_allclose(rewards.token_accuracy(h, r), [2 / 3, 2 / 4, 1.0, 2 / 4])


def bleu_reference(hyp, ref, max_n=4):
    """Sentence BLEU with add-one smoothing for n >= 2, written from the formula with Counters."""
    if not hyp:
        return 0.0
    logs = []
    for n in range(1, max_n + 1):
        hc = Counter(tuple(hyp[i:i + n]) for i in range(len(hyp) - n + 1))
        rc = Counter(tuple(ref[i:i + n]) for i in range(len(ref) - n + 1))
        m = sum(min(c, rc[g]) for g, c in hc.items())
        tot = max(len(hyp) - n + 1, 0)
        if n >= 2:
            m, tot = m + 1, tot + 1
        if m == 0 or tot == 0:
            return 0.0
        logs.append(math.log(m / tot))
    bp = 1.0 if len(hyp) >= len(ref) else math.exp(1 - len(ref) / len(hyp))
    return bp * math.exp(sum(logs) / max_n)


@settings(max_examples=40)
@given(st.lists(st.tuples(seqs, seqs), min_size=1, max_size=6))
def test_bleu_equals_the_formula(pairs):
    got = rewards.bleu([p[0] for p in pairs], [p[1] for p in pairs])
    np.testing.assert_allclose(got, [bleu_reference(h, r) for h, r in pairs], rtol=1e-12)


def test_bleu_by_hand():
    # p1 = 4/5, p2 = (3+1)/(4+1), p3 = (2+1)/(3+1), p4 = (1+1)/(2+1); BP = 1
    got = rewards.bleu([[1, 2, 3, 4, 5]], [[1, 2, 3, 4, 6]])[0]
    assert math.isclose(got, (0.8 * 0.8 * 0.75 * (2 / 3)) ** 0.25, rel_tol=1e-12)
    # a short hypothesis pays the brevity penalty exp(1 - 4/2)
    got = rewards.bleu([[1, 2]], [[1, 2, 3, 4]], max_n=1)[0]
    assert math.isclose(got, math.exp(1 - 2), rel_tol=1e-12)
    assert rewards.bleu([[7, 8]], [[1, 2]], smoothing="none")[0] == 0.0


def test_strip():
    out = rewards.strip([[0, 5, 6, 1, 9], [0, 5, 2, 2]], bos=0, eos=1, pad=2)
    assert [o.tolist() for o in out] == [[5, 6], [5]]


def test_schedules_give_the_papers_values():
    assert schedules.linear(0, k=1.0, c=0.01) == 1.0
    assert math.isclose(schedules.linear(30, k=1.0, c=0.01), 0.7)
    assert schedules.linear(500, k=1.0, c=0.01, eps_min=0.05) == 0.05
    assert math.isclose(schedules.exponential(10, k=0.9), 0.9 ** 10)
    assert math.isclose(schedules.inverse_sigmoid(0, k=5.0), 5 / 6)
    assert math.isclose(schedules.inverse_sigmoid(20, k=5.0), 5 / (5 + math.exp(4)))
    assert schedules.inverse_sigmoid(10 ** 9, k=2.0) == 0.0
    for f in (schedules.linear, schedules.exponential, schedules.inverse_sigmoid):
        values = [f(i) for i in range(0, 5000, 50)]
        assert values[0] <= 1.0 and all(a >= b for a, b in zip(values, values[1:]))


@pytest.mark.parametrize("call", [
    lambda: schedules.exponential(3, k=1.0), lambda: schedules.inverse_sigmoid(3, k=0.5),
    lambda: schedules.linear(-1), lambda: raml.hamming_samples([0, 5], 3, 1.0, 2),
    lambda: raml.hamming_samples([0.5], 3, 1.0, 2), lambda: raml.hamming_samples([0], 3, 0.0, 2),
    lambda: rewards.bleu([[1]], [[1], [2]]), lambda: rewards.bleu([[1]], [[1]], max_n=0),
])
def test_bad_calls(call):
    with pytest.raises((TypeError, ValueError)):
        call()


@pytest.mark.parametrize("tau", [0.4, 1.0])
def test_raml_reproduces_the_exponentiated_payoff_distribution(tau):
    # every sequence of length 3 over 3 tokens: q(y) = exp(-d_H(y, y*) / tau) / Z, exactly
    target, V, n = np.array([2, 0, 1]), 3, 30_000
    space = list(itertools.product(range(V), repeat=3))
    w = np.array([math.exp(-sum(a != b for a, b in zip(y, target)) / tau) for y in space])
    q = w / w.sum()
    draws = raml.hamming_samples(target, V, tau, n, rng=1)
    index = {y: k for k, y in enumerate(space)}
    counts = np.bincount([index[tuple(d)] for d in draws.tolist()], minlength=len(space))
    chi2 = float(((counts - n * q) ** 2 / (n * q)).sum())
    assert chi2 < 54.05  # the 0.999 quantile of chi-square with 26 degrees of freedom
