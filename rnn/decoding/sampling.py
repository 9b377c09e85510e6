"""Greedy decoding and sampling (temperature, top-k, nucleus), one hypothesis per example.

Both run the model's step on all B examples at once, under `no_grad`, within the search space
of `rnn.decoding.protocol` (min/max length, banned tokens, prefix, n-gram blocking), and stop
when every example has emitted EOS. Sampling gives every example its own random stream, so an
example draws the same tokens in any batch as alone.
"""
from __future__ import annotations

import numpy as np

import minigrad as mg
from minigrad import checks
from rnn.decoding.protocol import Constraints, Hypothesis, batch_size_of, constrain, step_function

__all__ = ["filter_log_probs", "greedy", "sample", "streams"]


def filter_log_probs(log_probs: np.ndarray, temperature: float = 1.0, top_k: int | None = None,
                     top_p: float | None = None) -> np.ndarray:
    """Sampling log-weights (N, V): log_probs / temperature, with -inf outside the top-k tokens
    and outside the nucleus (the fewest most probable tokens whose probability reaches top_p;
    always at least one). The kept weights are not renormalised (sampling does not need it).

    >>> import numpy as np
    >>> lp = np.log(np.array([[0.5, 0.3, 0.15, 0.05]]))
    >>> np.isfinite(filter_log_probs(lp, top_p=0.7)).tolist()
    [[True, True, False, False]]
    """
    z = np.array(log_probs, dtype=np.float64) / temperature
    V = z.shape[1]
    if top_k is not None and top_k < V:
        kth = np.partition(z, V - top_k, axis=1)[:, V - top_k:V - top_k + 1]
        z = np.where(z >= kth, z, -np.inf)
    if top_p is not None and top_p < 1.0:
        order = np.argsort(-z, axis=1, kind="stable")
        zs = np.take_along_axis(z, order, axis=1)
        p = np.exp(zs - zs[:, :1])
        p /= p.sum(axis=1, keepdims=True)
        before = np.cumsum(p, axis=1) - p  # probability of the tokens ranked above
        keep_sorted = before < top_p
        keep = np.empty_like(keep_sorted)
        np.put_along_axis(keep, order, keep_sorted, axis=1)
        z = np.where(keep, z, -np.inf)
    return z


def streams(rng, B: int, where: str) -> list[np.random.Generator]:
    """One Generator per example: `rng` is a list of B seeds or Generators, or one int seed
    (example b then draws from the stream seeded with (seed, b)), or None (fresh entropy)."""
    if isinstance(rng, (list, tuple)):
        if len(rng) != B:
            raise ValueError(f"{where}: rng lists {len(rng)} streams for {B} examples")
        return [r if isinstance(r, np.random.Generator)
                else np.random.default_rng(checks.integer(r, where, "rng seed", low=0))
                for r in rng]
    if rng is None:
        seed = int(np.random.SeedSequence().entropy % (2 ** 63))
    elif isinstance(rng, np.random.Generator):
        seed = int(rng.integers(2 ** 63))
    else:
        seed = checks.integer(rng, where, "rng", low=0)
    return [np.random.default_rng((seed, b)) for b in range(B)]


def _one_path(where, model, state, bos, eos, max_len, min_len, banned, prefix, ngram,
              batch, choose) -> list[Hypothesis]:
    step = step_function(model, where)
    B = batch_size_of(state, where) if batch is None else checks.integer(batch, where,
                                                                         "batch_size", low=1)
    rules = Constraints.build(where, B, eos, max_len, min_len, banned, prefix, ngram)
    bos = checks.integer(bos, where, "bos", low=0)
    example = np.arange(B)
    history = np.zeros((B, 0), np.int64)
    log_prob = np.zeros(B)
    done = np.zeros(B, bool)
    dead = np.zeros(B, bool)
    length = np.zeros(B, np.int64)
    attention: list = []
    tokens = np.full(B, bos, np.int64)
    with mg.no_grad():
        for t in range(rules.max_len):
            logp, state, attn = step(tokens, state)
            constrain(logp, history, t, example, rules, where)
            tokens = choose(logp)
            chosen = logp[example, tokens]
            dead |= ~done & np.isneginf(chosen)  # the rules left this example no token at all
            done |= dead
            log_prob = np.where(done, log_prob, log_prob + chosen)
            length = np.where(done, length, t + 1)
            attention.append(attn)
            history = np.concatenate([history, tokens[:, None]], axis=1)
            done |= tokens == rules.eos
            if done.all():
                break
    out = []
    for b in range(B):
        if dead[b]:
            out.append(None)
            continue
        att = (np.stack([a[b] for a in attention[:length[b]]])
               if attention and attention[0] is not None else None)
        out.append(Hypothesis(history[b, :length[b]].copy(), float(log_prob[b]),
                              float(log_prob[b]), int(length[b]), att))
    return out


def greedy(model, state, bos: int, eos: int, max_len: int, *, min_len: int = 0,
           banned=(), prefix=None, no_repeat_ngram_size: int = 0,
           batch_size: int | None = None) -> list[Hypothesis]:
    """Pick the most probable allowed token at every step; one Hypothesis per example (None for
    an example that the rules leave without any allowed token at some step).

    `state` is the model's state for B examples (its leaves' first axis; give `batch_size` when
    it is None). Ties go to the lowest token id.
    """
    return _one_path("greedy", model, state, bos, eos, max_len, min_len, banned, prefix,
                     no_repeat_ngram_size, batch_size, lambda logp: logp.argmax(axis=1))


def sample(model, state, bos: int, eos: int, max_len: int, *, temperature: float = 1.0,
           top_k: int | None = None, top_p: float | None = None, rng=None, min_len: int = 0,
           banned=(), prefix=None, no_repeat_ngram_size: int = 0,
           batch_size: int | None = None) -> list[Hypothesis]:
    """Draw every token from softmax(log_probs / temperature), restricted to the top_k tokens
    and to the nucleus top_p (see `filter_log_probs`); one Hypothesis per example (None when the
    rules leave an example no allowed token).

    Every example draws one uniform number per step from its own stream (`streams`), so with
    per-example seeds a batch gives the same samples as each example alone. The Hypothesis'
    log_prob is under the model's own distribution (not the tempered one).
    """
    where = "sample"
    temperature = checks.real(temperature, where, "temperature", low=0, low_open=True)
    if top_k is not None:
        top_k = checks.integer(top_k, where, "top_k", low=1)
    if top_p is not None:
        top_p = checks.real(top_p, where, "top_p", low=0, low_open=True, high=1)
    B = batch_size_of(state, where) if batch_size is None else batch_size
    gens = streams(rng, B, where)

    def choose(logp):
        z = filter_log_probs(logp, temperature, top_k, top_p)
        top = z.max(axis=1, keepdims=True)
        z = z - np.where(np.isfinite(top), top, 0.0)  # a row with nothing allowed stays -inf
        cdf = np.cumsum(np.exp(z), axis=1)
        u = np.array([g.random() for g in gens]) * cdf[:, -1]
        return np.minimum((cdf <= u[:, None]).sum(axis=1), z.shape[1] - 1)

    return _one_path(where, model, state, bos, eos, max_len, min_len, banned, prefix,
                     no_repeat_ngram_size, batch_size, choose)
