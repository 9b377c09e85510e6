"""Sequence losses that ignore padding: time-major logits (T, B, V), targets (T, B)."""
from __future__ import annotations

import numpy as np

import minigrad as mg
from minigrad import backend
from rnn.lengths import as_lengths


def sequence_cross_entropy(logits, targets, lengths=None, weights=None, reduction: str = "mean",
                           average: str = "token") -> mg.Tensor:
    """Softmax cross-entropy summed over a sequence: loss_b = sum_t w_tb * CE(logits_tb, y_tb).

    logits (T, B, V); targets (T, B) integers (anything past a sequence's end is ignored, so
    padding may hold any value); lengths (B,) in [0, T] masks steps t >= lengths[b]; weights
    (T, B) (or anything broadcasting to it) scales each token, default 1. With m_tb the mask and
    l_tb = m_tb * w_tb * CE(logits_tb, y_tb):

    - `average="token"`: "none" returns l (T, B); "sum" returns sum_tb l; "mean" returns
      sum_tb l / sum_tb m_tb w_tb (the weighted mean over real tokens; with no weights, the
      mean over real tokens).
    - `average="sequence"`: "none" returns the per-sequence sums sum_t l_tb (B,); "sum" returns
      their sum; "mean" returns their mean over the B sequences.

    >>> import minigrad as mg, rnn
    >>> logits = mg.zeros(3, 2, 4)                                   # uniform: CE = log 4 each
    >>> loss = rnn.sequence_cross_entropy(logits, [[0, 1], [2, 3], [1, 0]], lengths=[3, 1])
    >>> round(float(loss), 4) == round(float(mg.log(mg.tensor(4.0))), 4)
    True
    """
    name = "sequence_cross_entropy"
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"{name}: reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
    if average not in ("token", "sequence"):
        raise ValueError(f"{name}: average must be 'token' or 'sequence', got {average!r}")
    if not isinstance(logits, mg.Tensor) or logits.ndim != 3:
        raise ValueError(f"{name}: logits must be a (T, B, V) Tensor, got shape "
                         f"{getattr(logits, 'shape', type(logits).__name__)}")
    T, B, V = logits.shape
    dev = backend.device_of(logits.data)
    y = targets.data if isinstance(targets, mg.Tensor) else targets
    y = backend.to_host(y) if backend.is_array(y) else np.asarray(y)
    if y.shape != (T, B):
        raise ValueError(f"{name}: targets of shape {y.shape} do not match logits of shape "
                         f"{logits.shape} (expected (T, B) = {(T, B)})")
    if y.dtype.kind not in "iu":
        raise TypeError(f"{name}: targets must be integers, got dtype {y.dtype}")
    mask = np.ones((T, B), dtype=bool)
    n = as_lengths(lengths, B, T, name, min_length=0)   # 0: a TBPTT window after the end
    if n is not None:
        mask = np.arange(T)[:, None] < n[None, :]
    y = np.where(mask, y, 0)  # padding may hold anything, even out-of-range ids
    ce = mg.cross_entropy(logits, backend.to_device(y.astype(np.int64), dev), reduction="none")
    scale = mask.astype(logits.dtype)
    if weights is not None:
        w = weights.data if isinstance(weights, mg.Tensor) else weights
        w = backend.to_host(w) if backend.is_array(w) else np.asarray(w)
        try:
            scale = scale * np.broadcast_to(w, (T, B)).astype(logits.dtype)
        except ValueError as e:
            raise ValueError(f"{name}: weights of shape {w.shape} do not broadcast to (T, B) = "
                             f"{(T, B)}") from e
    loss = ce * backend.to_device(scale, dev)                       # (T, B)
    if average == "sequence":
        loss = loss.sum(axis=0)                                      # (B,)
        if reduction == "mean":
            return loss.mean()
    elif reduction == "mean":
        return loss.sum() / max(float(scale.sum()), np.finfo(scale.dtype).tiny)
    return loss.sum() if reduction == "sum" else loss
