"""One decoder run for every training method: at each step a per-token coin flip between the
ground truth and the model's own token.

Any model offering the step protocol of `rnn.decoding` (`step(tokens (N,), state) ->
(log_probs (N, V), state[, attention])`, or a plain callable) can be run:

    for t = 0 .. T-1:   log p_t, s_t = step(c_{t-1}, s_{t-1})          (c_{-1} = BOS)
                        m_t = pick from p_t  (a sample, or the argmax)  no gradient
                        c_t = y_t with probability eps_t, else m_t      one coin per token

The coin is flipped independently for every example and every step (Bengio et al. 2015's
scheduled sampling is per token, not per sequence). eps is a number, a (T,) array (one per step,
e.g. MIXER's teacher-forced prefix) or a (T, B) array; past the end of the ground truth
(t >= truth.shape[0]) the coin always says "model". The choice c_t is a host integer: no gradient
flows through it (the paper's choice), only through log p_t and the hidden states.

>>> import numpy as np, minigrad as mg
>>> from rnn.training.rollout import rollout
>>> def step(tokens, state):                       # a model that always predicts token 2
...     return mg.log_softmax(mg.tensor(np.eye(3)[np.full(len(tokens), 2)] * 5.0)), state
>>> run = rollout(step, None, bos=0, steps=3, truth=np.ones((3, 2), int), eps=0.0,
...               pick="argmax", batch_size=2)
>>> run.chosen.tolist()
[[2, 2], [2, 2], [2, 2]]
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

import minigrad as mg
from minigrad import checks
from rnn import state as st
from rnn.decoding.protocol import batch_size_of, host

__all__ = ["Rollout", "decoder_features", "generator", "rollout", "sequence_mask"]


class Rollout(NamedTuple):
    """What `rollout` returns.

    log_probs (T, B, V) Tensor: log p_t for every step (with the graph); chosen (T, B) int64: the
    token c_t fed at step t + 1; from_truth (T, B) bool: the coin (True: c_t is the ground truth);
    picked (T, B) int64: the model's own pick m_t (sampled or argmax) at every step; hidden
    (T, B, H) Tensor or None: `features(state)` after each step (the state that gave p_t);
    state: the final state.
    """
    log_probs: mg.Tensor
    chosen: np.ndarray
    from_truth: np.ndarray
    picked: np.ndarray
    hidden: mg.Tensor | None
    state: object


def generator(rng) -> np.random.Generator:
    """A Generator from a Generator, a seed or None."""
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


def decoder_features(state) -> mg.Tensor:
    """The hidden state a step leaves, as one (N, H) Tensor: the floating-point (N, H) Tensors of
    the state concatenated (for an `rnn.Seq2SeqState`, of its decoder part only: the source
    context is not a hidden state). With `AttentionDecoderCell(keep_weights=True)` H includes the
    attention weights (N, S), so it depends on the source length: pass your own `features=`."""
    part = state.decoder if hasattr(state, "decoder") else state
    tensors = [t for t in st.flatten(part)[0]
               if t.ndim == 2 and np.dtype(t.dtype).kind == "f"]
    if not tensors:
        raise ValueError("decoder_features: the state holds no floating-point (N, H) Tensor; "
                         "pass features=")
    return tensors[0] if len(tensors) == 1 else mg.concat(tensors, axis=1)


def _eps_table(eps, T: int, B: int, truth_len: int) -> np.ndarray:
    e = np.asarray(eps, dtype=np.float64)
    if e.ndim == 1:
        e = e[:, None]
    try:
        e = np.array(np.broadcast_to(e, (T, B)))
    except ValueError as err:
        raise ValueError(f"rollout: eps must be a number, (T,) or (T, B) = ({T}, {B}), got "
                         f"shape {np.shape(eps)}") from err
    if not np.isfinite(e).all() or (e < 0).any() or (e > 1).any():
        raise ValueError("rollout: eps must be probabilities in [0, 1]")
    e[truth_len:] = 0.0
    return e


def rollout(model, state, bos: int, steps: int, *, truth=None, eps=0.0, pick: str = "sample",
            rng=None, features=None, batch_size: int | None = None) -> Rollout:
    """Run `model`'s step `steps` times from `state`, feeding back at every step the ground truth
    `truth` (T_y, B) ints with probability `eps`, else the model's own pick ("sample": a draw
    from p_t; "argmax"). `features(state) -> (B, H)` Tensor (e.g. `decoder_features`) records
    the hidden states; None records none. `rng`: a Generator or seed for the coins and samples.
    See the module docstring for the recursion.
    """
    where = "rollout"
    fn = getattr(model, "step", model)
    if not callable(fn):
        raise TypeError(f"{where}: the model must offer step(tokens, state) or be such a callable,"
                        f" got {type(model).__name__}")
    T = checks.integer(steps, where, "steps", low=1)
    bos = checks.integer(bos, where, "bos", low=0)
    if pick not in ("sample", "argmax"):
        raise ValueError(f"{where}: pick must be 'sample' or 'argmax', got {pick!r}")
    B = batch_size_of(state, where) if batch_size is None else \
        checks.integer(batch_size, where, "batch_size", low=1)
    if truth is None:
        y = np.zeros((0, B), np.int64)
    else:
        y = np.asarray(truth)
        if y.ndim != 2 or y.shape[1] != B or y.dtype.kind not in "iu":
            raise ValueError(f"{where}: truth must be int token ids (T_y, B) with B = {B}, got "
                             f"{y.dtype} {y.shape}")
    e = _eps_table(eps, T, B, len(y))
    gen = generator(rng)
    tokens = np.full(B, bos, np.int64)
    log_probs, hidden = [], []
    chosen, coins, picked = (np.zeros((T, B), np.int64), np.zeros((T, B), bool),
                             np.zeros((T, B), np.int64))
    for t in range(T):
        out = fn(tokens, state)
        lp, state = out[0], out[1]
        log_probs.append(lp)
        if features is not None:
            hidden.append(features(state))
        p = host(lp)
        if pick == "argmax":
            picked[t] = p.argmax(axis=1)
        else:
            cdf = np.cumsum(np.exp(p - p.max(axis=1, keepdims=True)), axis=1)
            u = gen.random(B)[:, None] * cdf[:, -1:]
            picked[t] = np.minimum((cdf <= u).sum(axis=1), p.shape[1] - 1)
        coins[t] = gen.random(B) < e[t]
        chosen[t] = np.where(coins[t], y[t] if t < len(y) else 0, picked[t])
        tokens = chosen[t]
    return Rollout(mg.stack(log_probs, axis=0), chosen, coins, picked,
                   mg.stack(hidden, axis=0) if hidden else None, state)


def sequence_mask(chosen: np.ndarray, eos: int, start=0) -> np.ndarray:
    """(T, B) float: 1 from step `start` (a number or (B,)) up to and including each column's
    first `eos`, 0 elsewhere (the steps a sequence-level loss counts)."""
    c = np.asarray(chosen)
    T = c.shape[0]
    is_eos = c == eos
    first = np.where(is_eos.any(axis=0), is_eos.argmax(axis=0), T - 1)
    t = np.arange(T)[:, None]
    return ((t <= first) & (t >= np.asarray(start))).astype(np.float64)
