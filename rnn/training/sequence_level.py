"""Sequence-level training on the evaluation metric: REINFORCE and MIXER (Ranzato et al. 2016).

For a sampled output y = (y_1 .. y_L) (up to and including EOS) and a reward R(y, y*) that has
no gradient (BLEU, negative edit distance, ...), the loss

    L = -(R(y) - b) * sum_t log p(y_t | y_<t, x)

has the REINFORCE estimate of -grad E[R] as its gradient (`rnn.reinforce.reinforce_loss` builds
it). Baselines b, which leave the expectation alone and lower the variance:

- a number or `rnn.reinforce.MovingAverageBaseline` (an average of past rewards),
- `rnn.reinforce.LinearBaseline`: b_t = w . h_t + c on the decoder's hidden state h_t that gave
  p(y_t | y_<t) (it depends on y_<t only, so it stays unbiased), fit to R as training goes,
- "self-critical" (Rennie et al. 2017): b = R(greedy decode of the same model).

MIXER mixes the two: cross-entropy on the first L* - Delta steps of the reference (length L*,
EOS included) with the ground truth fed, then the model samples its own continuation, trained by
REINFORCE on the whole sequence's reward; Delta grows by one every k epochs
(`schedules.mixer_delta`). Delta >= the run's length is plain REINFORCE; Delta = 0 is
cross-entropy.

>>> import numpy as np, minigrad as mg, rnn
>>> from rnn.training import mixer_loss, rewards
>>> model = rnn.Seq2Seq(5, 6, 4, rnn.GRU(4, 5, rng=0), rnn.GRUCell(4, 5, rng=1), rng=2)
>>> src, tgt = np.array([[1, 2], [3, 4]]), np.array([[2, 3], [4, 5], [1, 1]])   # EOS = 1
>>> out = mixer_loss(model, model.start(src, [2, 2]), bos=0, eos=1, targets=tgt,
...                  lengths=[3, 3], delta=2, reward=rewards.token_accuracy, rng=0)
>>> out.loss.backward()
>>> out.rewards.shape, out.run.from_truth[0].tolist()          # step 0 teacher-forced
((2,), [True, True])
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

import minigrad as mg
from rnn.decoding.protocol import host
from rnn.reinforce import LinearBaseline, MovingAverageBaseline, reinforce_loss
from rnn.training.rewards import strip
from rnn.training.rollout import Rollout, decoder_features, rollout, sequence_mask

__all__ = ["MixerStep", "chosen_log_probs", "mixer_loss", "sequence_reinforce_loss"]


def chosen_log_probs(log_probs: mg.Tensor, chosen) -> mg.Tensor:
    """log p(c_t) (T, B) picked from log_probs (T, B, V) at the tokens chosen (T, B)."""
    c = np.asarray(chosen, dtype=np.int64)
    return mg.squeeze(mg.gather(log_probs, c[:, :, None], axis=2), 2)


def sequence_reinforce_loss(log_probs: mg.Tensor, chosen, mask, rewards,
                            baseline=None) -> mg.Tensor:
    """-sum_b sum_t m_tb (R_b - b_tb) log p(c_tb) / B: the REINFORCE surrogate for sequences.

    log_probs (T, B, V); chosen (T, B) the sampled tokens; mask (T, B) the steps that belong to
    each sample (e.g. `sequence_mask`); rewards (B,); baseline None, a number, (B,) or (T, B).
    """
    lp = chosen_log_probs(log_probs, chosen)
    r = np.asarray(host(rewards))
    if r.shape != (lp.shape[1],):
        raise ValueError(f"sequence_reinforce_loss: rewards must be (B,) = ({lp.shape[1]},), got "
                         f"shape {r.shape}")
    b = None if baseline is None else np.asarray(host(baseline))
    if b is not None and b.ndim == 1:
        b = b[None, :]
    return reinforce_loss(lp, r[None, :], b, mask)


class MixerStep(NamedTuple):
    """What `mixer_loss` returns: loss (cross-entropy part + REINFORCE part, both summed over
    steps and averaged over the B examples), cross_entropy and reinforce (the two parts),
    rewards (B,) of the sampled sequences, baseline (T, B) the b used, hypotheses (list of B
    token arrays, EOS stripped), run (the `Rollout`)."""
    loss: mg.Tensor
    cross_entropy: mg.Tensor
    reinforce: mg.Tensor
    rewards: np.ndarray
    baseline: np.ndarray
    hypotheses: list
    run: Rollout


def mixer_loss(model, state, bos: int, eos: int, targets, lengths, delta, reward, *,
               baseline=None, max_len: int | None = None, rng=None,
               features=decoder_features) -> MixerStep:
    """MIXER's loss for one batch (see the module docstring).

    targets (T, B) token ids ending in EOS at lengths[b] - 1; delta: the steps left to
    REINFORCE (None: all, i.e. plain REINFORCE); reward(hypotheses, references) -> (B,) with
    sequences EOS-stripped (any function of `rnn.training.rewards`); baseline: None, a number,
    a `MovingAverageBaseline` (its value is used, then it is updated with the rewards), a
    `LinearBaseline` (used on the detached `features` of each step, then fit one step), or
    "self-critical". max_len: the longest sampled run (default T).
    """
    where = "mixer_loss"
    y = np.asarray(targets)
    if y.ndim != 2 or y.dtype.kind not in "iu":
        raise ValueError(f"{where}: targets must be int token ids (T, B), got {y.dtype} {y.shape}")
    T, B = y.shape
    L = np.asarray(lengths, dtype=np.int64)
    if L.shape != (B,) or L.min() < 1 or L.max() > T:
        raise ValueError(f"{where}: lengths must be (B,) = ({B},) ints in [1, {T}], got "
                         f"{L.tolist()}")
    steps = T if max_len is None else int(max_len)
    first_sampled = np.zeros(B, np.int64) if delta is None else np.maximum(L - int(delta), 0)
    forced = (np.arange(steps)[:, None] < first_sampled).astype(np.float64)  # eps table
    linear = isinstance(baseline, LinearBaseline)
    run = rollout(model, state, bos, steps, truth=y, eps=forced, pick="sample", rng=rng,
                  features=features if linear else None, batch_size=B)
    refs = [y[:L[b], b] for b in range(B)]
    refs = strip(refs, eos=eos)
    hyps = strip(run.chosen.T, eos=eos)
    r = np.asarray(reward(hyps, refs), dtype=np.float64)

    if baseline is None:
        b = np.zeros((steps, B))
    elif isinstance(baseline, str):
        if baseline != "self-critical":
            raise ValueError(f"{where}: baseline must be None, a number, a MovingAverageBaseline, "
                             f"a LinearBaseline or 'self-critical', got {baseline!r}")
        with mg.no_grad():
            greedy = rollout(model, state, bos, steps, truth=y, eps=forced, pick="argmax",
                             batch_size=B)
        b = np.broadcast_to(np.asarray(reward(strip(greedy.chosen.T, eos=eos), refs),
                                       dtype=np.float64), (steps, B))
    elif isinstance(baseline, MovingAverageBaseline):
        b = np.broadcast_to(baseline.value, (steps, B))
    elif linear:
        b = baseline(run.hidden.data)
    else:
        b = np.broadcast_to(np.asarray(baseline, dtype=np.float64), (steps, B))

    sampled = sequence_mask(run.chosen, eos) * (1.0 - forced)
    lp = chosen_log_probs(run.log_probs, run.chosen)
    ce = -(lp * mg.tensor(forced.astype(lp.dtype), device=lp.device)).sum() * (1.0 / B)
    rl = reinforce_loss(lp, r[None, :], b, sampled)
    if isinstance(baseline, MovingAverageBaseline):
        baseline.update(r)
    elif linear:
        baseline.update(run.hidden.data, r[None, :], sampled)
    return MixerStep(ce + rl, ce, rl, r, np.array(b), hyps, run)
