"""Soft attention: a query (B, Dq) reads a weighted mean of values (B, S, Dv) over S source
positions, the weights a softmax of how well the query matches each key (B, S, Dk).

    e_j = score(query, key_j)            a = softmax(e) over the unmasked j       c = sum_j a_j v_j

Every module is called `attn(query, keys, values, mask=None) -> (context (B, Dv), weights (B, S))`.
Scores differ (Bahdanau's additive v^T tanh(W q + U k), Luong's bilinear q^T W k, the dot
product, and the location-aware score that also reads the previous weights). The part of a score
that depends on the keys alone is `attn.precompute(keys)`: a decoder computes it once per source
and passes it back as `projected=` at every step, so U k is not recomputed T times.

Padded source positions (`mask` False, see `source_mask`) get weight exactly 0 and their keys and
values gradient exactly 0: their scores are replaced by -inf before the softmax, and `where`
passes no gradient to the branch it did not take.

`HardAttention` wraps any of them: it reads one position sampled from the weights, and its score
is trained with the REINFORCE estimator of `rnn.reinforce`.
"""
from __future__ import annotations

import math

import numpy as np

import minigrad as mg
from minigrad import backend
from minigrad.nn import Linear, Module, Parameter
from rnn.reinforce import sample_categorical

__all__ = ["AdditiveAttention", "Attention", "BilinearAttention", "DotAttention", "HardAttention",
           "LocationAwareAttention", "masked_softmax", "source_mask"]


def _generator(rng) -> np.random.Generator:
    # one generator for all of a module's layers (an int seed given to each would repeat weights)
    if isinstance(rng, np.random.Generator):
        return rng
    if rng is None:
        return mg.random.default_generator()
    if isinstance(rng, (int, np.integer)) and not isinstance(rng, bool):
        return np.random.default_rng(int(rng))
    raise TypeError(f"attention: rng must be a numpy Generator or an int seed, got "
                    f"{type(rng).__name__}")


def source_mask(lengths, S: int, device=None):
    """Bool array (B, S), True at positions j < lengths[b] (inside source b), on `device`.

    >>> source_mask([3, 1], 4).tolist()
    [[True, True, True, False], [True, False, False, False]]
    """
    a = lengths.data if isinstance(lengths, mg.Tensor) else lengths
    if not isinstance(a, np.ndarray) and hasattr(a, "shape"):
        a = backend.to_host(a)
    a = np.asarray(a)
    if a.ndim != 1 or a.dtype.kind not in "iu" and not (
            a.dtype.kind == "f" and np.all(a == np.round(a))):
        raise ValueError(f"source_mask: lengths must be integers of shape (B,), got dtype "
                         f"{a.dtype} shape {a.shape}")
    if a.size and (a.min() < 1 or a.max() > S):
        raise ValueError(f"source_mask: lengths must lie in [1, S={S}], got {a.tolist()}")
    mask = np.arange(S)[None, :] < a.astype(np.int64)[:, None]
    return mask if device is None else backend.to_device(mask, device)


def masked_softmax(scores: mg.Tensor, mask=None) -> mg.Tensor:
    """softmax(scores (B, S)) over the positions where `mask` (B, S) is True; exactly 0 elsewhere,
    with exactly 0 gradient to the masked scores. Every row needs at least one True."""
    if mask is None:
        return mg.softmax(scores, axis=-1)
    m = mask.data if isinstance(mask, mg.Tensor) else mask
    if isinstance(m, np.ndarray) or not hasattr(m, "shape"):
        m = np.asarray(m)
        if m.dtype != np.bool_:
            raise TypeError(f"masked_softmax: mask must be bool (B, S), got dtype {m.dtype}")
        if m.shape != scores.shape:
            raise ValueError(f"masked_softmax: mask of shape {m.shape} does not match the scores "
                             f"{scores.shape} (B, S)")
        if not m.any(axis=-1).all():
            raise ValueError("masked_softmax: a row of the mask has no True position (an empty "
                             "source); every source needs length >= 1")
        m = backend.to_device(m, scores.device)
    elif tuple(m.shape) != scores.shape:
        raise ValueError(f"masked_softmax: mask of shape {tuple(m.shape)} does not match the "
                         f"scores {scores.shape} (B, S)")
    return mg.softmax(mg.where(m, scores, -math.inf), axis=-1)


class Attention(Module):
    """Base class: `attn(query (B, Dq), keys (B, S, Dk), values (B, S, Dv), mask=None, *,
    projected=None, previous=None) -> (context (B, Dv), weights (B, S))`.

    A subclass defines `precompute(keys) -> projected` (the keys' share of the score, once per
    source) and `score(query, projected, previous) -> (B, S)`. `previous` (B, S) holds the last
    step's weights; only location-aware scores read it (`uses_previous = True`).
    """

    uses_previous = False

    def __init__(self, query_size: int, key_size: int):
        super().__init__()
        for name, n in (("query_size", query_size), ("key_size", key_size)):
            if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n <= 0:
                raise ValueError(f"{type(self).__name__}: {name} must be a positive int, got "
                                 f"{n!r}")
        self.query_size, self.key_size = int(query_size), int(key_size)

    def precompute(self, keys: mg.Tensor):
        return keys

    def score(self, query, projected, previous=None):  # pragma: no cover - abstract
        raise NotImplementedError(f"{type(self).__name__} must define score()")

    def forward(self, query, keys, values, mask=None, *, projected=None, previous=None) -> tuple:
        name = type(self).__name__
        if query.ndim != 2 or query.shape[1] != self.query_size:
            raise ValueError(f"{name}: query must be (B, Dq={self.query_size}), got "
                             f"{query.shape}")
        if keys.ndim != 3 or keys.shape[2] != self.key_size or keys.shape[0] != query.shape[0]:
            raise ValueError(f"{name}: keys must be (B={query.shape[0]}, S, Dk={self.key_size}), "
                             f"got {keys.shape}")
        if values.ndim != 3 or values.shape[:2] != keys.shape[:2]:
            raise ValueError(f"{name}: values must be (B, S, Dv) with (B, S) = {keys.shape[:2]} "
                             f"as the keys, got {values.shape}")
        if projected is None:
            projected = self.precompute(keys)
        scores = self.score(query, projected, previous)
        weights = masked_softmax(scores, mask)
        context = mg.matmul(mg.expand_dims(weights, 1), values)        # (B, 1, Dv)
        return mg.squeeze(context, 1), weights


class AdditiveAttention(Attention):
    """Bahdanau's additive score e_j = v^T tanh(W q + U k_j + b).

    Parameters: `query_proj` W (A, Dq) with the bias b, `key_proj` U (A, Dk), `v` (A,);
    A = `attention_size`. `precompute(keys)` = U k (B, S, A).

    >>> import minigrad as mg, rnn
    >>> attn = rnn.AdditiveAttention(4, 6, 8, rng=0)
    >>> c, a = attn(mg.randn(2, 4), mg.randn(2, 5, 6), mg.randn(2, 5, 3), mask=None)
    >>> c.shape, a.shape
    ((2, 3), (2, 5))
    """

    def __init__(self, query_size: int, key_size: int, attention_size: int, *, rng=None,
                 dtype=None, device=None):
        super().__init__(query_size, key_size)
        gen = _generator(rng)
        self.attention_size = int(attention_size)
        self.query_proj = Linear(query_size, attention_size, rng=gen, dtype=dtype, device=device)
        self.key_proj = Linear(key_size, attention_size, bias=False, rng=gen, dtype=dtype,
                               device=device)
        bound = 1.0 / math.sqrt(attention_size)
        v = gen.uniform(-bound, bound, attention_size)
        self.v = Parameter(v.astype(self.query_proj.weight.dtype), device=device)

    def precompute(self, keys):
        return self.key_proj(keys)

    def score(self, query, projected, previous=None):
        hidden = mg.tanh(projected + mg.expand_dims(self.query_proj(query), 1))
        return mg.matmul(hidden, self.v)

    def extra_repr(self):
        return f"{self.query_size}, {self.key_size}, {self.attention_size}"


class BilinearAttention(Attention):
    """Luong's "general" score e_j = q^T W k_j, W (Dq, Dk). `precompute(keys)` = k W^T (B, S, Dq).

    >>> import minigrad as mg, rnn
    >>> attn = rnn.BilinearAttention(4, 6, rng=0)
    >>> attn(mg.randn(2, 4), mg.randn(2, 5, 6), mg.randn(2, 5, 6))[1].shape
    (2, 5)
    """

    def __init__(self, query_size: int, key_size: int, *, rng=None, dtype=None, device=None):
        super().__init__(query_size, key_size)
        self.key_proj = Linear(key_size, query_size, bias=False, rng=_generator(rng),
                               dtype=dtype, device=device)

    def precompute(self, keys):
        return self.key_proj(keys)

    def score(self, query, projected, previous=None):
        return mg.squeeze(mg.matmul(projected, mg.expand_dims(query, 2)), 2)

    def extra_repr(self):
        return f"{self.query_size}, {self.key_size}"


class DotAttention(Attention):
    """The dot-product score e_j = q . k_j (Dq = Dk), divided by sqrt(Dk) when `scaled`.
    No parameters; `precompute(keys)` is the keys (scaled).

    >>> import minigrad as mg, rnn
    >>> attn = rnn.DotAttention(4, scaled=True)
    >>> attn(mg.randn(2, 4), mg.randn(2, 5, 4), mg.randn(2, 5, 3))[0].shape
    (2, 3)
    """

    def __init__(self, size: int, scaled: bool = False):
        super().__init__(size, size)
        self.scaled = bool(scaled)

    def precompute(self, keys):
        return keys * (1.0 / math.sqrt(self.key_size)) if self.scaled else keys

    def score(self, query, projected, previous=None):
        return mg.squeeze(mg.matmul(projected, mg.expand_dims(query, 2)), 2)

    def extra_repr(self):
        return f"{self.query_size}, scaled={self.scaled}"


class LocationAwareAttention(AdditiveAttention):
    """The additive score with the previous step's weights convolved in (Chorowski et al. 2015,
    "Attention-based models for speech recognition"):

        f = F * a_prev   (K filters of odd width w, zero padded: f_j (K,) for each j)
        e_j = v^T tanh(W q + U k_j + L f_j + b)

    Parameters: those of `AdditiveAttention`, `filters` F (K, w) and `location_proj` L (A, K).
    `previous` (B, S) defaults to zeros (the first step: no location term).

    >>> import minigrad as mg, rnn
    >>> attn = rnn.LocationAwareAttention(4, 6, 8, filters=3, width=5, rng=0)
    >>> c, a = attn(mg.randn(2, 4), mg.randn(2, 7, 6), mg.randn(2, 7, 3))
    >>> c2, a2 = attn(mg.randn(2, 4), mg.randn(2, 7, 6), mg.randn(2, 7, 3), previous=a)
    >>> a2.shape
    (2, 7)
    """

    uses_previous = True

    def __init__(self, query_size: int, key_size: int, attention_size: int, filters: int = 8,
                 width: int = 5, *, rng=None, dtype=None, device=None):
        if not isinstance(width, int) or width < 1 or width % 2 == 0:
            raise ValueError(f"LocationAwareAttention: width must be an odd int >= 1, got "
                             f"{width!r}")
        gen = _generator(rng)
        super().__init__(query_size, key_size, attention_size, rng=gen, dtype=dtype,
                         device=device)
        self.width, self.num_filters = width, int(filters)
        f = gen.uniform(-1.0, 1.0, (filters, width)) / math.sqrt(width)
        self.filters = Parameter(f.astype(self.v.dtype), device=device)
        self.location_proj = Linear(filters, attention_size, bias=False, rng=gen, dtype=dtype,
                                    device=device)

    def score(self, query, projected, previous=None):
        hidden = projected + mg.expand_dims(self.query_proj(query), 1)
        if previous is not None:
            B, S = previous.shape
            if projected.shape[:2] != (B, S):
                raise ValueError(f"LocationAwareAttention: previous weights {previous.shape} do "
                                 f"not match the source (B, S) = {projected.shape[:2]}")
            r = self.width // 2
            padded = mg.pad(previous, ((0, 0), (r, r)))
            windows = mg.stack([padded[:, i:i + S] for i in range(self.width)], axis=-1)
            located = mg.matmul(windows, self.filters.T)                # (B, S, K)
            hidden = hidden + self.location_proj(located)
        return mg.matmul(mg.tanh(hidden), self.v)

    def extra_repr(self):
        return (f"{self.query_size}, {self.key_size}, {self.attention_size}, "
                f"filters={self.num_filters}, width={self.width}")


class HardAttention(Module):
    """Hard attention (Xu et al. 2015, "Show, attend and tell"): the weights of a soft attention
    module `soft` are a distribution over the S positions; one position j_b per row is sampled
    from it (or the most likely one, `sample=False`) and the context is its value alone.

    `attn(query, keys, values, mask=None, *, projected=None, previous=None, sample=True)
    -> (context (B, Dv), weights (B, S), log_prob (B,), index (B,) host ints)`, with
    `log_prob = log weights[b, j_b]`. The choice has no gradient: train the score with
    `rnn.reinforce.reinforce_loss(log_prob, reward, baseline)` and everything after the choice
    (the values, the decoder) by ordinary backpropagation through `context`. Draws come from
    minigrad's default generator.

    >>> import minigrad as mg, rnn
    >>> hard = rnn.HardAttention(rnn.AdditiveAttention(4, 6, 8, rng=0))
    >>> c, w, logp, j = hard(mg.randn(2, 4), mg.randn(2, 5, 6), mg.randn(2, 5, 3))
    >>> c.shape, w.shape, logp.shape, j.shape
    ((2, 3), (2, 5), (2,), (2,))
    """

    def __init__(self, soft: Attention):
        super().__init__()
        if not isinstance(soft, Attention):
            raise TypeError(f"HardAttention: expected a soft attention module (rnn.Attention), "
                            f"got {type(soft).__name__}")
        self.soft = soft

    @property
    def uses_previous(self) -> bool:
        return self.soft.uses_previous

    def precompute(self, keys):
        return self.soft.precompute(keys)

    def forward(self, query, keys, values, mask=None, *, projected=None, previous=None,
                sample: bool = True) -> tuple:
        _, weights = self.soft(query, keys, values, mask, projected=projected, previous=previous)
        if sample:
            index = sample_categorical(weights)
        else:
            index = np.asarray(backend.to_host(mg.argmax(weights, axis=1).data), dtype=np.int64)
        B, S = weights.shape
        one_hot = mg.one_hot(backend.to_device(index, weights.device), S, dtype=values.dtype)
        context = mg.squeeze(mg.matmul(mg.expand_dims(one_hot, 1), values), 1)
        # gathered, not log(weights) * one_hot: masked positions hold log 0 = -inf
        chosen = backend.to_device(index[:, None], weights.device)
        log_prob = mg.squeeze(mg.log(mg.gather(weights, chosen, axis=1)), 1)
        return context, weights, log_prob, index
