"""What a model offers to be decoded, and the bookkeeping every decoder shares.

A model decodes if it offers one step: `model.step(tokens (N,), state) -> (log_probs (N, V),
new_state)` or, with attention for the coverage penalty, `(log_probs, new_state, attention
(N, S))`. A plain callable with that signature works too. `tokens` are host int64 ids; `state` is
any structure (tuples, lists, NamedTuples, dicts) of Tensors or arrays whose first axis is the N
hypotheses; the decoders reorder it between steps with one `take` per leaf.

The search space every decoder here shares: a hypothesis emits tokens y_1 .. y_L and then EOS.
`min_len` is the least L (EOS is masked before), `max_len` the most tokens emitted, EOS included
(at step max_len only EOS is allowed, so every result ends in EOS); `banned` tokens are never
emitted; `prefix` forces the first tokens; `no_repeat_ngram_size` = n forbids a token that would
complete an n-gram the hypothesis already holds.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

import minigrad as mg
from minigrad import backend, checks
from rnn import state as st

__all__ = ["Constraints", "Hypothesis", "batch_size_of", "constrain", "host", "reorder",
           "step_function"]


@dataclass
class Hypothesis:
    """One decoded sequence.

    tokens: int64 ids (length,), without BOS, ending in EOS; score: what the search ranked (the
    log-probability with its penalties); log_prob: the sum of the tokens' log-probabilities;
    length: the number of tokens, EOS included; attention: (length, S) weights per emitted token
    when the model returned them, else None.
    """
    tokens: np.ndarray
    score: float
    log_prob: float
    length: int
    attention: np.ndarray | None = None


def step_function(model, where: str):
    """`step(tokens, state) -> (log_probs host float64 (N, V), state, attention or None)`."""
    fn = getattr(model, "step", None)
    if fn is None:
        if not callable(model):
            raise TypeError(f"{where}: the model must offer step(tokens, state) -> (log_probs, "
                            f"state) or be such a callable, got {type(model).__name__}")
        fn = model

    def step(tokens: np.ndarray, state):
        out = fn(tokens, state)
        if not isinstance(out, tuple) or len(out) not in (2, 3):
            raise TypeError(f"{where}: the model's step must return (log_probs, state) or "
                            f"(log_probs, state, attention), got {type(out).__name__}")
        log_probs, new_state = out[0], out[1]
        attention = host(out[2]) if len(out) == 3 and out[2] is not None else None
        lp = host(log_probs)
        if lp.ndim != 2 or lp.shape[0] != len(tokens):
            raise ValueError(f"{where}: the model's step returned log_probs of shape {lp.shape} "
                             f"for {len(tokens)} tokens; expected (N, V)")
        if np.isnan(lp).any() or (lp > 1e-6).any():
            raise ValueError(f"{where}: the model's step must return log-probabilities (<= 0, "
                             "no NaN), e.g. log_softmax of its logits")
        if attention is not None and (attention.ndim != 2 or attention.shape[0] != len(tokens)):
            raise ValueError(f"{where}: the model's attention must be (N, S), got shape "
                             f"{attention.shape}")
        return lp, new_state, attention
    return step


def host(a) -> np.ndarray:
    """A host float64 copy of a Tensor or array."""
    if isinstance(a, mg.Tensor):
        a = a.data
    return np.array(backend.to_host(a) if backend.is_array(a) else a, dtype=np.float64)


def batch_size_of(state, where: str) -> int:
    """N, the first axis shared by every Tensor in `state`."""
    tensors = st.flatten(state, where)[0] if state is not None else []
    sizes = {t.shape[0] for t in tensors if t.ndim > 0}
    if len(sizes) != 1:
        raise ValueError(f"{where}: cannot tell the batch size from the state: its Tensors have "
                         f"first axes {sorted(sizes) or 'none'}; pass batch_size=")
    return sizes.pop()


def reorder(state, index: np.ndarray):
    """`state` (None, a Tensor or any structure of Tensors, see `rnn.state`) with every Tensor
    replaced by its rows `index` (one gather per Tensor)."""
    if state is None:
        return None

    def take(t):
        return mg.take(t, backend.to_device(index, t.device), axis=0)
    with mg.no_grad():
        return st.map(take, state)


@dataclass
class Constraints:
    """The rules of the search space (see the module docstring), checked once."""
    eos: int
    max_len: int
    min_len: int = 0
    banned: tuple = ()
    prefix: np.ndarray | None = None  # (B, P) int64
    no_repeat_ngram_size: int = 0

    @classmethod
    def build(cls, where, B, eos, max_len, min_len, banned, prefix, ngram):
        eos = checks.integer(eos, where, "eos", low=0)
        max_len = checks.integer(max_len, where, "max_len", low=1)
        min_len = checks.integer(min_len, where, "min_len", low=0)
        if min_len > max_len - 1:
            raise ValueError(f"{where}: min_len={min_len} leaves no room for EOS within "
                             f"max_len={max_len} (need min_len <= max_len - 1)")
        ngram = checks.integer(ngram, where, "no_repeat_ngram_size", low=0)
        if isinstance(banned, (int, np.integer)):
            banned = (banned,)
        banned = tuple(checks.integer(b, where, "banned token", low=0) for b in banned)
        if eos in banned:
            raise ValueError(f"{where}: EOS ({eos}) cannot be banned")
        if prefix is not None:
            p = np.asarray(prefix)
            if p.dtype.kind not in "iu":
                raise TypeError(f"{where}: prefix must hold integer token ids, got dtype "
                                f"{p.dtype}")
            if p.ndim == 1:
                p = np.broadcast_to(p, (B, p.shape[0]))
            if p.ndim != 2 or p.shape[0] != B:
                raise ValueError(f"{where}: prefix must be (P,) or (B, P) = (?, {B}), got shape "
                                 f"{p.shape}")
            if (p < 0).any() or (p == eos).any() or np.isin(p, banned).any():
                raise ValueError(f"{where}: prefix holds a negative, EOS or banned token")
            if p.shape[1] > max_len - 1:
                raise ValueError(f"{where}: a prefix of {p.shape[1]} tokens leaves no room for "
                                 f"EOS within max_len={max_len}")
            prefix = p.astype(np.int64)
        return cls(eos, max_len, min_len, banned, prefix, ngram)


def constrain(logp: np.ndarray, history: np.ndarray, t: int, example: np.ndarray,
              rules: Constraints, where: str) -> np.ndarray:
    """Set to -inf in `logp` (N, V) every token the rules forbid at step t (0-based).

    history (N, t) holds the tokens each hypothesis emitted so far; example (N,) the example each
    hypothesis belongs to (for per-example prefixes). Modifies and returns `logp`.
    """
    N, V = logp.shape
    if rules.eos >= V or any(b >= V for b in rules.banned):
        raise ValueError(f"{where}: EOS or a banned token is outside the vocabulary of {V}")
    if rules.banned:
        logp[:, list(rules.banned)] = -np.inf
    if t < rules.min_len:
        logp[:, rules.eos] = -np.inf
    if rules.prefix is not None and t < rules.prefix.shape[1]:
        forced = rules.prefix[example, t]
        if (forced >= V).any():
            raise ValueError(f"{where}: a prefix token is outside the vocabulary of {V}")
        keep = logp[np.arange(N), forced]
        logp[:] = -np.inf
        logp[np.arange(N), forced] = keep
    if t == rules.max_len - 1:
        keep = logp[:, rules.eos].copy()
        logp[:] = -np.inf
        logp[:, rules.eos] = keep
    n = rules.no_repeat_ngram_size
    if n and t >= n - 1:
        for i in range(N):
            h = history[i]
            tail = tuple(h[t - n + 1:t]) if n > 1 else ()
            for j in range(t - n + 1):
                if tuple(h[j:j + n - 1]) == tail:
                    logp[i, h[j + n - 1]] = -np.inf
    return logp
