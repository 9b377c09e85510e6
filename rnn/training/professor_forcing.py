"""Professor forcing (Lamb et al. 2016): a discriminator learns to tell the decoder's hidden
states under teacher forcing from those of a free-running run; the generator is trained, besides
its likelihood, to make its free-running dynamics look teacher-forced.

With D(h) = sigmoid(logit(h)) the discriminator's probability that a hidden sequence h (T, B, H)
came from teacher forcing, h^tf the teacher-forced and h^fr the free-running sequences:

    discriminator:  L_D = mean_b [ -log D(h^tf_b) - log(1 - D(h^fr_b)) ]
                          (+ gamma * mean_b ||d logit(h^tf_b) / d h^tf_b||^2, the optional
                           gradient penalty, recorded with create_graph so it trains D)
    generator:      L_G = NLL(teacher-forced) + mean_b [ -log D(h^fr_b) ]
                          (+ mean_b [ -log(1 - D(h^tf_b)) ] with both=True, the paper's option)

L_D is computed on detached hidden states (it trains D only); the generator's term flows into
the generator through h^fr (and h^tf with both=True); step only the generator's parameters with
it. `runs` gives the two runs of any model with the `rnn.decoding` step (`rnn.training.rollout`
with eps = 1 and eps = 0 over the same number of steps).

>>> import numpy as np, minigrad as mg, rnn
>>> from rnn.training import professor_forcing as pf
>>> model = rnn.Seq2Seq(5, 6, 4, rnn.GRU(4, 5, rng=0), rnn.GRUCell(4, 5, rng=1), rng=2)
>>> src, tgt = np.array([[1, 2], [3, 4]]), np.array([[2, 3], [4, 5], [1, 1]])
>>> tf, fr = pf.runs(model, model.start(src, [2, 2]), bos=0, targets=tgt, rng=0)
>>> disc = pf.GRUDiscriminator(5, 8, rng=0)
>>> d_loss, accuracy = pf.discriminator_loss(disc, tf.hidden, fr.hidden, [3, 3])
>>> g_loss = pf.generator_loss(disc, tf.hidden, fr.hidden, [3, 3])
>>> tf.hidden.shape, bool(np.isfinite(float(d_loss)) and np.isfinite(float(g_loss)))
((3, 2, 5), True)
"""
from __future__ import annotations

import numpy as np

import minigrad as mg
from minigrad.nn import Linear, Module
from rnn.layers import GRU
from rnn.training.rollout import Rollout, decoder_features, rollout

__all__ = ["GRUDiscriminator", "discriminator_loss", "generator_loss", "runs"]


class GRUDiscriminator(Module):
    """The default discriminator: a bidirectional GRU over hidden states (T, B, H) with lengths,
    its two final states concatenated, then a linear layer: logits (B,).

    The GRU runs the composed (unfused) cell so that a gradient penalty can differentiate it
    twice."""

    def __init__(self, in_features: int, hidden_size: int = 32, *, rng=None, dtype=None):
        super().__init__()
        gen = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
        self.gru = GRU(in_features, hidden_size, bidirectional=True, fused=False, rng=gen,
                       dtype=dtype)
        self.out = Linear(2 * hidden_size, 1, rng=gen, dtype=dtype)

    def forward(self, hidden: mg.Tensor, lengths=None) -> mg.Tensor:
        _, states = self.gru(hidden, lengths=lengths)
        forward_state, backward_state = states[-1]
        return mg.squeeze(self.out(mg.concat([forward_state, backward_state], axis=-1)), -1)


def runs(model, state, bos: int, targets, *, pick: str = "sample", rng=None,
         features=decoder_features) -> tuple[Rollout, Rollout]:
    """(teacher-forced run, free-running run) of `model` from `state` over targets (T, B)'s T
    steps, both recording `features(state)` as their `hidden` (T, B, H)."""
    y = np.asarray(targets)
    if y.ndim != 2:
        raise ValueError(f"professor_forcing.runs: targets must be (T, B), got shape {y.shape}")
    tf = rollout(model, state, bos, y.shape[0], truth=y, eps=1.0, features=features,
                 batch_size=y.shape[1])
    fr = rollout(model, state, bos, y.shape[0], eps=0.0, pick=pick, rng=rng, features=features,
                 batch_size=y.shape[1])
    return tf, fr


def _bce(logits: mg.Tensor, label: float) -> mg.Tensor:
    return mg.binary_cross_entropy_with_logits(
        logits, mg.full(logits.shape, label, dtype=logits.dtype, device=logits.device))


def discriminator_loss(discriminator, teacher_forced: mg.Tensor, free_running: mg.Tensor,
                       lengths=None, *, gradient_penalty: float = 0.0) -> tuple[mg.Tensor, float]:
    """(L_D, the discriminator's accuracy on this batch: the share of the 2B sequences it
    classifies right). The hidden states are detached here; `discriminator(h, lengths) ->
    logits (B,)` is any sequence classifier (default `GRUDiscriminator`)."""
    if not gradient_penalty >= 0:
        raise ValueError(f"discriminator_loss: gradient_penalty must be >= 0, got "
                         f"{gradient_penalty!r}")
    tf = mg.tensor(teacher_forced.data, requires_grad=gradient_penalty > 0)
    fr = free_running.detach()
    logit_tf, logit_fr = discriminator(tf, lengths), discriminator(fr, lengths)
    loss = _bce(logit_tf, 1.0) + _bce(logit_fr, 0.0)
    if gradient_penalty > 0:
        (g,) = mg.grad(logit_tf.sum(), [tf], create_graph=True)
        loss = loss + (g * g).sum() * (gradient_penalty / tf.shape[1])
    accuracy = float(((logit_tf.data > 0).sum() + (logit_fr.data <= 0).sum())
                     / (2 * logit_tf.shape[0]))
    return loss, accuracy


def generator_loss(discriminator, teacher_forced: mg.Tensor, free_running: mg.Tensor,
                   lengths=None, *, both: bool = False) -> mg.Tensor:
    """The generator's extra term: mean_b -log D(h^fr_b) (plus mean_b -log(1 - D(h^tf_b)) with
    `both`). It also reaches the discriminator's parameters: step the generator's only."""
    loss = _bce(discriminator(free_running, lengths), 1.0)
    if both:
        loss = loss + _bce(discriminator(teacher_forced, lengths), 0.0)
    return loss
