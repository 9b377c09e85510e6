"""Scheduled sampling and the shared rollout: the coin is per token, the inputs are what the
coin chose, the gradient does not pass through the choice, eps = 1 is teacher forcing."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import minigrad as mg
import rnn
from rnn.reinforce import LinearBaseline
from rnn.training import (mixer_loss, professor_forcing, raml, rollout, scheduled_sampling_loss,
                          sequence_mask)


class Recorder:
    """A step that remembers its inputs: log p = log_softmax(E[token] + h W), h = tanh(...)."""

    def __init__(self, V=5, H=3, seed=0):
        r = np.random.default_rng(seed)
        self.E = mg.tensor(r.normal(size=(V, H)), dtype="float64", requires_grad=True)
        self.U = mg.tensor(r.normal(size=(H, V)), dtype="float64", requires_grad=True)
        self.seen = []

    def step(self, tokens, h):
        self.seen.append(np.array(tokens))
        h = mg.tanh(mg.take(self.E, np.asarray(tokens), axis=0) + h)
        return mg.log_softmax(h @ self.U, axis=-1), h


def test_the_coin_is_flipped_per_token():
    T, B, eps = 30, 400, 0.5
    model = Recorder()
    truth = np.random.default_rng(1).integers(0, 5, (T, B))
    run = rollout(model, mg.zeros(B, 3, dtype="float64"), 0, T, truth=truth, eps=eps, rng=2)
    coins = run.from_truth
    # each step: a share eps of the examples; per sequence the count is Binomial(T, eps):
    # variance T eps (1 - eps) = 7.5 (a per-sequence coin would give T^2 eps (1 - eps) = 225)
    assert np.abs(coins.mean(axis=1) - eps).max() < 4 * np.sqrt(eps * (1 - eps) / B)
    assert 5.5 < coins.sum(axis=0).var() < 10.0
    assert abs(np.corrcoef(coins[:-1].ravel(), coins[1:].ravel())[0, 1]) < 0.05
    # what was fed is what the coin chose: the truth or the model's own pick
    np.testing.assert_array_equal(run.chosen, np.where(coins, truth, run.picked))
    np.testing.assert_array_equal(np.array(model.seen[1:]), run.chosen[:-1])
    assert (model.seen[0] == 0).all()


def test_eps_per_step_and_the_ends():
    B = 50
    model = Recorder()
    truth = np.ones((4, B), np.int64)
    run = rollout(model, mg.zeros(B, 3, dtype="float64"), 0, 6, truth=truth,
                  eps=[1, 0, 1, 0, 1, 1], rng=0)
    # eps 1 forces the truth, eps 0 never; past the truth (t >= 4) the model's own token
    assert run.from_truth.all(axis=1).tolist() == [True, False, True, False, False, False]
    assert not run.from_truth[1].any() and not run.from_truth[4:].any()
    with pytest.raises(ValueError, match="rollout: eps"):
        rollout(model, mg.zeros(B, 3, dtype="float64"), 0, 2, truth=truth, eps=1.5)


def test_no_gradient_through_the_choice():
    """The loss and gradient equal those of a teacher-forced run fed the chosen tokens (the
    samples enter as constants), computed here with the step loop written out."""
    T, B = 6, 4
    model = Recorder(seed=3)
    rs = np.random.default_rng(4)
    targets, lengths = rs.integers(0, 5, (T, B)), np.array([6, 3, 5, 1])
    loss, run = scheduled_sampling_loss(model, mg.zeros(B, 3, dtype="float64"), 0, targets,
                                        lengths, 0.4, rng=5)
    got = mg.grad(loss, [model.E, model.U])
    h, prev, total = mg.zeros(B, 3, dtype="float64"), np.zeros(B, np.int64), 0.0
    for t in range(T):
        lp, h = model.step(prev, h)
        live = np.flatnonzero(lengths > t)
        total = total - lp[live, targets[t, live]].sum()
        prev = run.chosen[t]
    want = mg.grad(total * (1.0 / lengths.sum()), [model.E, model.U])
    np.testing.assert_allclose(float(loss.data), float(total.data) / lengths.sum(), rtol=1e-12)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a.data, b.data, rtol=1e-10, atol=1e-14)


def test_eps_one_is_the_seq2seq_teacher_forced_loss():
    mg.manual_seed(0)
    model = rnn.Seq2Seq(6, 7, 4, rnn.GRU(4, 5, bidirectional=True, rng=0),
                        rnn.AttentionDecoderCell(rnn.GRUCell(4 + 6, 6, rng=1),
                                                 rnn.AdditiveAttention(6, 10, 6, rng=2), rng=3),
                        rng=4)
    src = np.array([[1, 2, 3], [4, 5, 0], [1, 0, 0]])
    tgt = np.array([[2, 3, 4], [5, 6, 1], [1, 1, 0]])       # EOS = 1, BOS = 0
    src_len, tgt_len = [3, 2, 1], [3, 3, 2]
    tgt_in = np.concatenate([np.zeros((1, 3), np.int64), tgt[:-1]])
    want = model.loss(src, src_len, tgt_in, tgt, tgt_len)
    got, run = scheduled_sampling_loss(model, model.start(src, src_len), 0, tgt, tgt_len, 1.0,
                                       rng=0)
    np.testing.assert_allclose(float(got.data), float(want.data), rtol=1e-5)
    assert run.from_truth.all()


def test_sequence_mask():
    chosen = np.array([[3, 1, 4], [1, 2, 2], [5, 1, 1]])      # columns are the sequences
    assert sequence_mask(chosen, 1).T.tolist() == [[1, 1, 0], [1, 0, 0], [1, 1, 1]]
    assert sequence_mask(chosen, 1, start=[1, 0, 2]).T.tolist() == [[0, 1, 0], [1, 0, 0],
                                                                    [0, 0, 1]]


def _step(tokens, h):
    return mg.log_softmax(mg.zeros(len(tokens), 3, dtype="float64")), h


_h = mg.zeros(2, 3, dtype="float64")


@pytest.mark.parametrize("call,message", [
    (lambda: rollout(_step, _h, 0, 2, pick="beam"), "rollout: pick"),
    (lambda: rollout(_step, _h, 0, 0), "rollout: steps"),
    (lambda: rollout(_step, _h, 0, 2, truth=np.zeros((2, 3), np.int64)), "rollout: truth"),
    (lambda: rollout(_step, _h, 0, 2, eps=np.ones(5)), "rollout: eps"),
    (lambda: rollout(3, _h, 0, 2), "rollout: the model"),
    (lambda: scheduled_sampling_loss(_step, _h, 0, np.zeros(2, np.int64), [1, 1], 0.5),
     "scheduled_sampling_loss: targets"),
    (lambda: mixer_loss(
        _step, _h, 0, 1, np.zeros((2, 2), np.int64), [3, 1], None, lambda h, r: np.zeros(2)),
     "mixer_loss: lengths"),
    (lambda: LinearBaseline(3)(np.zeros((2, 4))),
     "LinearBaseline: features"),
    (lambda: raml.edit_distance_samples(
        np.array([0, 7]), 5, 1.0, 2), "edit_distance_samples: target"),
    (lambda: professor_forcing.discriminator_loss(
        None, _h, _h, gradient_penalty=-1.0), "discriminator_loss: gradient_penalty"),
])
def test_bad_calls_name_the_function(call, message):
    with pytest.raises((TypeError, ValueError), match=message):
        call()


@settings(max_examples=15, deadline=None)
@given(T=st.integers(1, 6), B=st.integers(1, 4), eps=st.sampled_from([0.0, 1.0]),
       seed=st.integers(0, 100))
def test_rollout_equals_a_reference_loop(T, B, eps, seed):
    """eps = 1 feeds the truth, eps = 0 the argmax: the same tokens and log-probabilities as the
    step loop written out here."""
    model = Recorder(seed=seed)
    truth = np.random.default_rng(seed).integers(0, 5, (T, B))
    run = rollout(model, mg.zeros(B, 3, dtype="float64"), 0, T, truth=truth, eps=eps,
                  pick="argmax", rng=seed)
    h, prev = mg.zeros(B, 3, dtype="float64"), np.zeros(B, np.int64)
    for t in range(T):
        lp, h = model.step(prev, h)
        np.testing.assert_allclose(run.log_probs.data[t], lp.data, rtol=1e-12)
        prev = truth[t] if eps == 1.0 else lp.data.argmax(axis=1)
        np.testing.assert_array_equal(run.chosen[t], prev)
