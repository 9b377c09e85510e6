"""Scheduled sampling (Bengio et al. 2015): cross-entropy on the ground truth while the decoder
is fed, token by token, the ground truth with probability eps_i and its own token otherwise.

eps_i comes from a schedule over the update count i (`rnn.training.schedules`: linear,
exponential, inverse sigmoid); the coin is flipped per token (`rnn.training.rollout`); no
gradient flows through the model's own token (the paper's choice), only through log p_t.

>>> import numpy as np, minigrad as mg, rnn
>>> from rnn.training import schedules, scheduled_sampling_loss
>>> model = rnn.Seq2Seq(5, 6, 4, rnn.GRU(4, 5, rng=0), rnn.GRUCell(4, 5, rng=1), rng=2)
>>> src, tgt = np.array([[1, 2], [3, 4]]), np.array([[2, 3], [4, 5], [1, 1]])   # EOS = 1
>>> eps = schedules.inverse_sigmoid(10, k=20.0)                 # at update 10
>>> loss, run = scheduled_sampling_loss(model, model.start(src, [2, 2]), bos=0, targets=tgt,
...                                     lengths=[3, 3], eps=eps, rng=0)
>>> loss.backward()
>>> run.from_truth.shape
(3, 2)
"""
from __future__ import annotations

import numpy as np

import minigrad as mg
from rnn.losses import sequence_cross_entropy
from rnn.training.rollout import Rollout, rollout

__all__ = ["scheduled_sampling_loss"]


def scheduled_sampling_loss(model, state, bos: int, targets, lengths, eps, *,
                            pick: str = "sample", rng=None,
                            reduction: str = "mean") -> tuple[mg.Tensor, Rollout]:
    """(cross-entropy of targets (T, B) over the `lengths` (B,) real tokens, the `Rollout`) for a
    run of `model`'s step from `state` where the input at step t + 1 is targets[t] with
    probability eps (number, (T,) or (T, B)), else the model's own token (`pick`: "sample" as in
    the paper, or "argmax"). eps = 1 is teacher forcing; `reduction` as in
    `rnn.sequence_cross_entropy` (per-token mean by default).
    """
    y = np.asarray(targets)
    if y.ndim != 2:
        raise ValueError(f"scheduled_sampling_loss: targets must be (T, B) token ids, got shape "
                         f"{y.shape}")
    run = rollout(model, state, bos, y.shape[0], truth=y, eps=eps, pick=pick, rng=rng,
                  batch_size=y.shape[1])
    return sequence_cross_entropy(run.log_probs, y, lengths, reduction=reduction), run
