"""Professor forcing's losses against a hand computation (a mean-pooling linear discriminator,
where every quantity has a closed form), the default discriminator's double backward against
finite differences, and a short adversarial run without NaN."""
from __future__ import annotations

import numpy as np

import minigrad as mg
from minigrad.optim import Adam
from rnn.training import professor_forcing as pf


class MeanLinear:
    """logit_b = w . mean_t h_tb + c (the equal-length case)."""

    def __init__(self, w, c):
        self.w = mg.tensor(np.asarray(w, float), dtype="float64", requires_grad=True)
        self.c = mg.tensor(float(c), dtype="float64", requires_grad=True)

    def __call__(self, h, lengths=None):
        return (h.mean(axis=0) @ self.w) + self.c


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


def test_losses_match_a_hand_computation():
    tf = np.array([[[1.0, 0.0], [0.5, -1.0]], [[0.0, 2.0], [1.5, 0.0]]])      # (T=2, B=2, H=2)
    fr = np.array([[[-1.0, 0.5], [0.0, 0.0]], [[-2.0, 1.0], [1.0, -1.0]]])
    w, c, gamma = np.array([0.8, -0.3]), 0.1, 0.7
    d = MeanLinear(w, c)
    l_tf = tf.mean(axis=0) @ w + c            # by hand: [0.5 * 0.8 - 0.3 * 1.0 + 0.1, ...]
    l_fr = fr.mean(axis=0) @ w + c
    np.testing.assert_allclose(l_tf, [0.5 * 0.8 - 0.3 * 1.0 + 0.1, 1.0 * 0.8 + 0.3 * 0.5 + 0.1])
    d_loss_hand = np.mean(-np.log(sigmoid(l_tf))) + np.mean(-np.log(1 - sigmoid(l_fr)))
    # d logit_b / d h_tb = w / T for each t: ||.||^2 summed over T steps = ||w||^2 / T
    penalty_hand = gamma * (w @ w) / 2
    g_loss_hand = np.mean(-np.log(sigmoid(l_fr)))
    both_hand = g_loss_hand + np.mean(-np.log(1 - sigmoid(l_tf)))
    acc_hand = ((l_tf > 0).sum() + (l_fr <= 0).sum()) / 4

    ht, hf = mg.tensor(tf, dtype="float64"), mg.tensor(fr, dtype="float64")
    loss, acc = pf.discriminator_loss(d, ht, hf)
    np.testing.assert_allclose(float(loss.data), d_loss_hand, rtol=1e-12)
    assert acc == acc_hand
    loss_gp, _ = pf.discriminator_loss(d, ht, hf, gradient_penalty=gamma)
    np.testing.assert_allclose(float(loss_gp.data), d_loss_hand + penalty_hand, rtol=1e-12)
    # the penalty trains D: its gradient in w is gamma * 2 w / T on top of the BCE's
    (gw_plain,) = mg.grad(loss, [d.w])
    (gw_gp,) = mg.grad(loss_gp, [d.w])
    np.testing.assert_allclose(gw_gp.data - gw_plain.data, gamma * w, rtol=1e-12)
    hand_gw = (np.mean((sigmoid(l_tf) - 1)[:, None] * tf.mean(axis=0), axis=0)
               + np.mean(sigmoid(l_fr)[:, None] * fr.mean(axis=0), axis=0))
    np.testing.assert_allclose(gw_plain.data, hand_gw, rtol=1e-12)
    np.testing.assert_allclose(float(pf.generator_loss(d, ht, hf).data), g_loss_hand, rtol=1e-12)
    np.testing.assert_allclose(float(pf.generator_loss(d, ht, hf, both=True).data), both_hand,
                               rtol=1e-12)


def test_the_discriminator_loss_reaches_only_the_discriminator():
    model = Tiny()
    tf, fr = pf.runs(model, mg.zeros(3, 4, dtype="float64"), 0, np.ones((4, 3), np.int64), rng=0)
    d = pf.GRUDiscriminator(4, 3, rng=0, dtype="float64")
    loss, _ = pf.discriminator_loss(d, tf.hidden, fr.hidden)
    grads = mg.grad(loss, [model.E] + list(d.parameters()), allow_unused=True)
    assert grads[0] is None and all(g is not None for g in grads[1:])
    g = mg.grad(pf.generator_loss(d, tf.hidden, fr.hidden), [model.E])[0]
    assert np.abs(g.data).sum() > 0       # the free-running states carry the generator's term


def test_gradient_penalty_through_the_gru_discriminator_is_exact():
    """The penalised loss's gradient in the discriminator's parameters (a second-order
    gradient through the bidirectional GRU) against finite differences."""
    r = np.random.default_rng(0)
    tf = mg.tensor(r.normal(size=(3, 2, 2)), dtype="float64")
    fr = mg.tensor(r.normal(size=(3, 2, 2)), dtype="float64")
    d = pf.GRUDiscriminator(2, 2, rng=1, dtype="float64")
    params = list(d.parameters())

    def loss():
        return float(pf.discriminator_loss(d, tf, fr, [3, 2], gradient_penalty=0.5)[0].data)
    grads = mg.grad(pf.discriminator_loss(d, tf, fr, [3, 2], gradient_penalty=0.5)[0], params)
    for p, g in zip(params, grads):   # a central difference along a random direction each
        base, direction, eps = p.data.copy(), r.normal(size=p.shape), 1e-6
        p.data = base + eps * direction
        up = loss()
        p.data = base - eps * direction
        down = loss()
        p.data = base
        np.testing.assert_allclose((up - down) / (2 * eps), (g.data * direction).sum(),
                                   rtol=1e-5, atol=1e-9)


class Tiny:
    def __init__(self, seed=0):
        r = np.random.default_rng(seed)
        self.E = mg.tensor(r.normal(size=(5, 4)), dtype="float64", requires_grad=True)
        self.W = mg.tensor(r.normal(size=(4, 4)) * 0.5, dtype="float64", requires_grad=True)
        self.U = mg.tensor(r.normal(size=(4, 5)), dtype="float64", requires_grad=True)

    def step(self, tokens, h):
        h = mg.tanh(mg.take(self.E, np.asarray(tokens), axis=0) + h @ self.W)
        return mg.log_softmax(h @ self.U, axis=-1), h


def test_adversarial_training_runs_and_the_discriminator_learns():
    model = Tiny(1)
    d = pf.GRUDiscriminator(4, 8, rng=0, dtype="float64")
    d_opt, g_opt = Adam(list(d.parameters()), lr=0.03), Adam([model.E, model.W, model.U],
                                                              lr=0.01)
    targets = np.tile(np.array([1, 2, 3, 1, 2, 3])[:, None], (1, 16))
    accuracies = []
    for i in range(25):
        tf, fr = pf.runs(model, mg.zeros(16, 4, dtype="float64"), 0, targets, rng=i)
        d_loss, acc = pf.discriminator_loss(d, tf.hidden, fr.hidden, gradient_penalty=0.1)
        d_opt.zero_grad()
        d_loss.backward()
        d_opt.step()
        nll = -mg.gather(tf.log_probs, targets[:, :, None], axis=2).mean()
        g_loss = nll + pf.generator_loss(d, tf.hidden, fr.hidden)
        g_opt.zero_grad()
        g_loss.backward()
        g_opt.step()
        accuracies.append(acc)
        assert np.isfinite(float(d_loss.data)) and np.isfinite(float(g_loss.data))
    assert np.mean(accuracies[-10:]) > 0.6, accuracies
