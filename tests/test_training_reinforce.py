"""Sequence-level REINFORCE against exhaustive enumeration on a tiny decoder (V = 3, EOS = 2,
at most 3 tokens: 13 possible outputs).

References written here: the exact gradient of E[R] = sum_y p(y) R(y) by autodiff of the
enumerated sum; the exact mean and variance of the REINFORCE estimate by enumerating every
output with its probability.
"""
from __future__ import annotations

import itertools

import numpy as np
import pytest

import minigrad as mg
from rnn.reinforce import LinearBaseline, MovingAverageBaseline
from rnn.training import (decoder_features, mixer_loss, rewards, rollout, schedules,
                          sequence_mask, sequence_reinforce_loss)

V, H, EOS, BOS, MAXLEN = 3, 4, 2, 0, 3
REF = [1, 0]


class Tiny:
    """h' = tanh(E[token] + h W), log p = log_softmax(h' U): the step protocol."""

    def __init__(self, seed=0):
        r = np.random.default_rng(seed)
        self.E = mg.tensor(r.normal(size=(V, H)), dtype="float64", requires_grad=True)
        self.W = mg.tensor(r.normal(size=(H, H)) * 0.7, dtype="float64", requires_grad=True)
        self.U = mg.tensor(r.normal(size=(H, V)) * 1.2, dtype="float64", requires_grad=True)
        self.params = [self.E, self.W, self.U]

    def start(self, n):
        return mg.zeros(n, H, dtype="float64")

    def step(self, tokens, h):
        h = mg.tanh(mg.take(self.E, np.asarray(tokens), axis=0) + h @ self.W)
        return mg.log_softmax(h @ self.U, axis=-1), h


def outputs():
    """Every output: sequences ending in EOS, or MAXLEN tokens without one."""
    out = []
    for n in range(1, MAXLEN + 1):
        for body in itertools.product([0, 1], repeat=n - 1):
            out.append(list(body) + [EOS])
    out += [list(y) for y in itertools.product([0, 1], repeat=MAXLEN)]
    return out


def reward(hyps, refs):
    """A reward with an offset (so that a baseline has something to remove)."""
    return 1.0 + rewards.bleu(hyps, refs, max_n=2) + 0.5 * rewards.token_accuracy(hyps, refs)


def padded(ys):
    return np.array([y + [EOS] * (MAXLEN - len(y)) for y in ys]).T  # (T, N)


def exact_gradient(model):
    """grad of sum_y p(y) R(y), by autodiff of the enumerated sum (teacher-forced loop here)."""
    ys = outputs()
    tokens = padded(ys)
    mask = np.array([[t < len(y) for y in ys] for t in range(MAXLEN)], dtype=np.float64)
    h, prev, logp = model.start(len(ys)), np.full(len(ys), BOS), 0.0
    for t in range(MAXLEN):
        lp, h = model.step(prev, h)
        logp = logp + lp[np.arange(len(ys)), tokens[t]] * mg.tensor(mask[t])
        prev = tokens[t]
    R = reward([np.array(y[:-1] if y[-1] == EOS else y) for y in ys], [REF] * len(ys))
    expected = (mg.exp(logp) * mg.tensor(R)).sum()
    return ys, np.exp(logp.data), R, [g.data for g in mg.grad(expected, model.params)]


def per_output_estimates(model, ys, R, baseline):
    """g(y) = REINFORCE's estimate of grad E[R] when y is drawn, for every output y."""
    out = []
    for y, r in zip(ys, R):
        run = rollout(model, model.start(1), BOS, MAXLEN, truth=padded([y]), eps=1.0,
                      features=decoder_features)
        b = baseline(run, y)
        loss = sequence_reinforce_loss(run.log_probs, run.chosen, sequence_mask(run.chosen, EOS),
                                       [r], b)
        out.append(np.concatenate([-g.data.ravel() for g in mg.grad(loss, model.params)]))
    return np.array(out)


def flat(grads):
    return np.concatenate([g.ravel() for g in grads])


def greedy_reward(model):
    run = rollout(model, model.start(1), BOS, MAXLEN, pick="argmax")
    return reward(rewards.strip(run.chosen.T, eos=EOS), [REF])


@pytest.fixture(scope="module")
def case():
    model = Tiny()
    ys, p, R, grads = exact_gradient(model)
    assert abs(p.sum() - 1) < 1e-12                 # the enumeration covers every output
    return model, ys, p, R, flat(grads)


def moments(g, p):
    mean = p @ g
    return mean, float(p @ (g ** 2).sum(axis=1) - mean @ mean)


def test_expected_estimate_is_the_exact_gradient_with_every_baseline(case):
    model, ys, p, R, exact = case
    mean_R = float(p @ R)
    linear = LinearBaseline(H)
    linear.weight = np.random.default_rng(1).normal(size=H)   # any weights: still unbiased
    linear.bias = 0.3
    sc = float(greedy_reward(model)[0])
    baselines = {"none": lambda run, y: None,
                 "moving average": lambda run, y: mean_R,
                 "linear": lambda run, y: linear(run.hidden.data),
                 "self-critical": lambda run, y: sc}
    variances = {}
    for name, b in baselines.items():
        g = per_output_estimates(model, ys, R, b)
        mean, variances[name] = moments(g, p)
        np.testing.assert_allclose(mean, exact, rtol=1e-9, atol=1e-12, err_msg=name)
    # a baseline near E[R] lowers the variance; an arbitrary linear one need not, a fitted one does
    assert variances["moving average"] < 0.5 * variances["none"]
    assert variances["self-critical"] < variances["none"]
    fitted = LinearBaseline(H, lr=0.2)
    runs = [rollout(model, model.start(1), BOS, MAXLEN, truth=padded([y]), eps=1.0,
                    features=decoder_features) for y in ys]
    feats = np.concatenate([r.hidden.data for r in runs], axis=1)          # (T, N, H)
    masks = np.concatenate([sequence_mask(r.chosen, EOS) for r in runs], axis=1)
    for _ in range(2000):   # weighted by p(y): the regression a sampler would see
        fitted.update(feats, R[None, :], masks * p[None, :] * len(ys))
    g = per_output_estimates(model, ys, R, lambda run, y: fitted(run.hidden.data))
    mean, var_fitted = moments(g, p)
    np.testing.assert_allclose(mean, exact, rtol=1e-9, atol=1e-12)
    assert var_fitted < 0.5 * variances["none"]
    print({k: round(v, 4) for k, v in variances.items()}, "fitted linear", round(var_fitted, 4))


@pytest.mark.parametrize("baseline", [None, "moving average", "self-critical", "linear"])
def test_mixer_monte_carlo_converges_to_the_exact_gradient(case, baseline):
    """mixer_loss with delta=None (plain REINFORCE) on N samples: within 4 standard errors
    (the exact variance from the enumeration) of the exact gradient, and closer with more."""
    model, ys, p, R, exact = case
    _, var = moments(per_output_estimates(model, ys, R, lambda run, y: None), p)
    errors = []
    for N in (500, 20000):
        targets = np.tile(np.array(REF + [EOS])[:, None], (1, N))
        b = {None: None, "self-critical": "self-critical",
             "moving average": MovingAverageBaseline(), "linear": LinearBaseline(H)}[baseline]
        if baseline == "moving average":
            b.update(np.full(3, float(p @ R)))
        out = mixer_loss(model, model.start(N), BOS, EOS, targets, np.full(N, 3), None, reward,
                         baseline=b, rng=N)
        assert not out.run.from_truth.any()
        got = flat([-g.data for g in mg.grad(out.loss, model.params)])
        errors.append(np.linalg.norm(got - exact))
        assert errors[-1] < 4 * np.sqrt(var / N), (N, errors[-1], np.sqrt(var / N))
    assert errors[1] < errors[0]


def test_mixer_splits_the_steps_at_length_minus_delta():
    """Steps t < L - Delta are teacher-forced and scored by cross-entropy (checked against the
    teacher-forced log-probabilities summed by hand); the rest are sampled."""
    model = Tiny(3)
    targets = np.array([[1, 0, 1], [0, 1, EOS], [1, EOS, 0], [EOS, 0, 0]])   # (T=4, B=3)
    L = np.array([4, 2, 3])
    out = mixer_loss(model, model.start(3), BOS, EOS, targets, L, 1, reward, rng=0)
    forced = np.arange(4)[:, None] < (L - 1)
    np.testing.assert_array_equal(out.run.from_truth, forced)
    np.testing.assert_array_equal(out.run.chosen[forced], targets[forced])
    h, prev, ce = model.start(3), np.full(3, BOS), 0.0
    for t in range(4):
        lp, h = model.step(prev, h)
        ce -= sum(lp.data[b, targets[t, b]] for b in range(3) if forced[t, b])
        prev = out.run.chosen[t]
    np.testing.assert_allclose(float(out.cross_entropy.data), ce / 3, rtol=1e-12)
    hyp = [out.run.chosen[:, b] for b in range(3)]
    np.testing.assert_allclose(out.rewards, reward(rewards.strip(hyp, eos=EOS),
                                                   rewards.strip(targets.T, eos=EOS)))


def test_mixer_delta_zero_is_cross_entropy():
    model = Tiny(4)
    targets = np.array([[1, 0], [0, EOS], [EOS, 0]])
    out = mixer_loss(model, model.start(2), BOS, EOS, targets, [3, 2], 0, reward, rng=0)
    assert float(out.reinforce.data) == 0.0 and out.run.from_truth[:2, 0].all()


def test_mixer_delta_schedule():
    assert [schedules.mixer_delta(e, every=3, initial=2, maximum=4) for e in range(10)] == \
        [2, 2, 2, 3, 3, 3, 4, 4, 4, 4]


def test_bad_baseline_is_named():
    model = Tiny()
    with pytest.raises(ValueError, match="mixer_loss: baseline"):
        mixer_loss(model, model.start(1), BOS, EOS, np.array([[EOS]]), [1], None, reward,
                   baseline="greedy")
