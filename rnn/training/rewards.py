"""Sequence-level rewards for training on the evaluation metric (REINFORCE, MIXER, RAML).

Every reward takes a batch: `hypotheses` and `references` are sequences of token-id sequences
(lists, 1-D arrays, or the rows of a 2-D array), one pair per example, and returns a float64
array (B,) of rewards, higher is better. Any function with that signature is a reward too, so a
user's own metric plugs in unchanged. Sequences are compared as given: strip BOS, EOS and
padding first (`strip`).

>>> from rnn.training import rewards
>>> rewards.edit_distance([[1, 2, 3]], [[1, 3]]).tolist()
[1.0]
>>> round(float(rewards.bleu([[1, 2, 3, 4]], [[1, 2, 3, 4]])[0]), 6)
1.0
"""
from __future__ import annotations

import numpy as np

from minigrad import checks

__all__ = ["bleu", "edit_distance", "hamming_distance", "negative_edit_distance", "strip",
           "token_accuracy"]


def _batch(hypotheses, references, where: str):
    hyps = [np.asarray(h, dtype=np.int64).ravel() for h in hypotheses]
    refs = [np.asarray(r, dtype=np.int64).ravel() for r in references]
    if len(hyps) != len(refs):
        raise ValueError(f"{where}: {len(hyps)} hypotheses but {len(refs)} references")
    if not hyps:
        raise ValueError(f"{where}: got an empty batch")
    return hyps, refs


def _padded(seqs):
    lengths = np.array([len(s) for s in seqs], dtype=np.int64)
    out = np.full((len(seqs), max(1, lengths.max())), -1, dtype=np.int64)
    for i, s in enumerate(seqs):
        out[i, :len(s)] = s
    return out, lengths


def strip(sequences, *, eos: int | None = None, pad: int | None = None,
          bos: int | None = None) -> list[np.ndarray]:
    """Each sequence cut at its first EOS (excluded), with padding and a leading BOS removed."""
    out = []
    for s in sequences:
        s = np.asarray(s, dtype=np.int64).ravel()
        if bos is not None and len(s) and s[0] == bos:
            s = s[1:]
        if eos is not None:
            hit = np.flatnonzero(s == eos)
            s = s[:hit[0]] if len(hit) else s
        if pad is not None:
            s = s[s != pad]
        out.append(s)
    return out


def edit_distance(hypotheses, references) -> np.ndarray:
    """Levenshtein distance (insertions, deletions, substitutions, each costing 1), (B,).

    One dynamic programme for the whole batch: row i of the table is computed for every example
    at once, so the cost is O(max len_h * max len_r) array operations of size B.
    """
    hyps, refs = _batch(hypotheses, references, "edit_distance")
    h, lh = _padded(hyps)
    r, lr = _padded(refs)
    B, Tr = len(hyps), r.shape[1]
    row = np.broadcast_to(np.arange(Tr + 1, dtype=np.float64), (B, Tr + 1)).copy()
    result = row[np.arange(B), lr].copy()  # the distance for empty hypotheses
    for i in range(1, h.shape[1] + 1):
        new = np.empty_like(row)
        new[:, 0] = i
        sub = row[:, :-1] + (h[:, i - 1:i] != r)  # (B, Tr)
        for j in range(1, Tr + 1):
            new[:, j] = np.minimum(np.minimum(row[:, j] + 1, new[:, j - 1] + 1), sub[:, j - 1])
        row = new
        ends = lh == i
        result[ends] = row[ends, lr[ends]]
    return result


def negative_edit_distance(hypotheses, references) -> np.ndarray:
    """-edit_distance: a reward, 0 for an exact match."""
    return -edit_distance(hypotheses, references)


def hamming_distance(hypotheses, references) -> np.ndarray:
    """Positions that differ, counting the length difference as differing positions, (B,)."""
    hyps, refs = _batch(hypotheses, references, "hamming_distance")
    h, lh = _padded(hyps)
    r, lr = _padded(refs)
    T = max(h.shape[1], r.shape[1])
    h = np.pad(h, ((0, 0), (0, T - h.shape[1])), constant_values=-1)
    r = np.pad(r, ((0, 0), (0, T - r.shape[1])), constant_values=-2)
    live = np.arange(T) < np.maximum(lh, lr)[:, None]
    return ((h != r) & live).sum(axis=1).astype(np.float64)


def token_accuracy(hypotheses, references) -> np.ndarray:
    """Share of positions where hypothesis and reference agree, over the longer of the two
    (so extra or missing tokens count as errors); 1.0 when both are empty."""
    hyps, refs = _batch(hypotheses, references, "token_accuracy")
    longest = np.array([max(len(a), len(b)) for a, b in zip(hyps, refs)], dtype=np.float64)
    wrong = hamming_distance(hyps, refs)
    return np.where(longest > 0, 1.0 - wrong / np.maximum(longest, 1), 1.0)


def _ngrams(seqs, n: int, base: int):
    """Every n-gram of every sequence as rows (sequence index, code), code = the n-gram read as
    an n-digit number in `base`; (M, 2) int64."""
    rows = []
    for i, s in enumerate(seqs):
        if len(s) < n:
            continue
        windows = np.lib.stride_tricks.sliding_window_view(s, n)
        code = np.zeros(len(windows), dtype=np.int64)
        for k in range(n):
            code = code * base + windows[:, k]
        rows.append(np.stack([np.full(len(code), i, np.int64), code], axis=1))
    return np.concatenate(rows) if rows else np.zeros((0, 2), np.int64)


def _counts(grams):
    if len(grams) == 0:
        return grams, np.zeros(0, np.int64)
    return np.unique(grams, axis=0, return_counts=True)


def bleu(hypotheses, references, max_n: int = 4, smoothing: str = "add1") -> np.ndarray:
    """Sentence-level BLEU (Papineni et al. 2002) per example, in [0, 1], (B,).

    BLEU = BP * exp(mean_{n=1..max_n} log p_n), p_n = clipped n-gram matches / hypothesis
    n-grams, BP = exp(1 - len_ref / len_hyp) when the hypothesis is shorter, else 1. One
    sentence often has no 4-gram match, so p_n is smoothed: "add1" (Lin & Och 2004) adds 1 to the
    numerator and denominator of p_n for n >= 2; "none" leaves it (then any p_n = 0 gives 0). An
    empty hypothesis scores 0. The n-grams of the whole batch are counted together (one sort).
    """
    max_n = checks.integer(max_n, "bleu", "max_n", low=1)
    if smoothing not in ("add1", "none"):
        raise ValueError(f"bleu: smoothing must be 'add1' or 'none', got {smoothing!r}")
    hyps, refs = _batch(hypotheses, references, "bleu")
    B = len(hyps)
    top = max(max((int(s.max()) for s in hyps + refs if len(s)), default=0) + 1, 2)
    if (any(len(s) and s.min() < 0 for s in hyps + refs)
            or np.log(top) * max_n >= np.log(2.0 ** 62)):
        raise ValueError("bleu: token ids must be >= 0 and small enough that an n-gram fits "
                         "in 62 bits")
    log_p = np.zeros(B)
    for n in range(1, max_n + 1):
        h_keys, h_count = _counts(_ngrams(hyps, n, top))
        r_keys, r_count = _counts(_ngrams(refs, n, top))
        # clip every hypothesis n-gram's count by its count in the reference: number the
        # distinct (sentence, n-gram) rows of both, then look the reference counts up by number
        _, number = np.unique(np.concatenate([h_keys, r_keys]), axis=0, return_inverse=True)
        number = number.ravel()
        in_ref = np.zeros(len(h_keys) + len(r_keys), np.int64)
        in_ref[number[len(h_keys):]] = r_count
        clipped = np.minimum(h_count, in_ref[number[:len(h_keys)]]).astype(np.float64)
        matches = np.bincount(h_keys[:, 0], weights=clipped, minlength=B) if len(h_keys) \
            else np.zeros(B)
        total = np.array([max(len(h) - n + 1, 0) for h in hyps], dtype=np.float64)
        if smoothing == "add1" and n >= 2:
            matches, total = matches + 1, total + 1
        with np.errstate(divide="ignore", invalid="ignore"):
            log_p += np.where(total > 0, np.log(matches / np.where(total > 0, total, 1)), -np.inf)
    lh = np.array([len(h) for h in hyps], dtype=np.float64)
    lr = np.array([len(r) for r in refs], dtype=np.float64)
    with np.errstate(divide="ignore"):
        log_bp = np.where(lh < lr, 1.0 - lr / np.maximum(lh, 1e-300), 0.0)
    score = np.exp(log_bp + log_p / max_n)
    return np.where(lh > 0, score, 0.0)
