"""Checkpointed unrolling: BPTT whose memory grows as sqrt(T) instead of T.

`rnn.unroll(cell, inputs, checkpoint_every=K)` cuts the T steps into segments of K steps. Each
segment but the last runs inside one `mg.checkpoint` node, which keeps only the state entering
the segment; its K steps are recomputed, one segment at a time, during backward. Memory for
backward: T/K boundary states plus the insides of one segment, smallest near K = sqrt(T)
(`checkpoint_every="sqrt"`). Time: one more forward of all segments but the last. Gradients
equal full BPTT's (same operations, re-run on the same values; dropout draws are replayed).

The policy lives here (where to cut); the mechanism is `minigrad.checkpoint`. Any cell works,
fused or composed, with lengths, in `Bidirectional` and `Stacked` (they pass
`checkpoint_every` to `unroll`).
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np

import minigrad as mg
from minigrad.checkpoint import checkpoint
from rnn.cell import state_tensors
from rnn.unroll import _unroll

__all__ = ["run_steps", "segment_length", "unroll_checkpointed"]


def segment_length(checkpoint_every, T: int) -> int:
    """Steps per segment: `checkpoint_every` (a positive int) or ceil(sqrt(T)) for "sqrt"."""
    if checkpoint_every == "sqrt":
        return max(1, math.ceil(math.sqrt(T)))
    if isinstance(checkpoint_every, (bool, np.bool_)) or not isinstance(
            checkpoint_every, (int, np.integer)) or checkpoint_every < 1:
        raise ValueError(f"unroll: checkpoint_every must be a positive int or 'sqrt', "
                         f"got {checkpoint_every!r}")
    return int(checkpoint_every)


def unroll_checkpointed(cell, inputs, state, lengths, checkpoint_every, per_step: bool = False,
                        state_hook: Callable | None = None):
    """`rnn.unroll` with checkpointed segments of K = `checkpoint_every` steps.

    inputs (T, B, I) Tensor, state as the cell's (None: `cell.initial_state(B)`), lengths a
    host int array (B,) or None. Returns (outputs (T, B, H), final state), equal to `unroll`'s.
    The inputs are split once (one node, no copy: each segment gets a view of its K steps), so
    a checkpoint node keeps only its view and its boundary state.

    >>> import minigrad as mg, rnn
    >>> cell = rnn.LSTMCell(3, 8, rng=0)
    >>> out, (h, c) = rnn.unroll(cell, mg.randn(100, 2, 3), checkpoint_every="sqrt")
    >>> out.shape
    (100, 2, 8)
    """
    T, B = inputs.shape[0], inputs.shape[1]
    K = segment_length(checkpoint_every, T)
    if state is None:
        state = cell.initial_state(B)
    if K >= T or not mg.is_grad_enabled() or (lengths is not None and lengths.max() == 0):
        return run_steps(cell, inputs, state, lengths, per_step, state_hook)
    cuts = list(range(K, T, K))
    xs = mg.split(inputs, cuts, axis=0)
    tensors = state_tensors(state)
    as_tuple = isinstance(state, (tuple, list))
    outs = []
    for k, t0 in enumerate([0] + cuts):
        t1 = min(t0 + K, T)
        seg_lengths = None if lengths is None else np.clip(lengths - t0, 0, t1 - t0)
        if seg_lengths is not None and seg_lengths.max() == 0:
            break  # every sequence ended: the remaining outputs are zeros, the state is final
        run = _Segment(cell, seg_lengths, per_step, state_hook, t0, as_tuple)
        with mg.tag_scope("segment", k):
            # the last segment's insides are needed first in backward: keep them, skip a rerun
            res = run(xs[k], *tensors) if t1 == T else checkpoint(run, xs[k], *tensors)
        outs.append(res[0])
        tensors = res[1:]
    out = mg.concat(outs, axis=0) if len(outs) > 1 else outs[0]
    if out.shape[0] < T:
        out = mg.pad(out, ((0, T - out.shape[0]),) + ((0, 0),) * (out.ndim - 1))
    return out, (tuple(tensors) if as_tuple else tensors[0])


def run_steps(cell, inputs, state, lengths=None, per_step: bool = False,
              state_hook: Callable | None = None, t0: int = 0):
    """Run `cell` over inputs (T, B, I) from `state`: (outputs (T, B, H), final state).

    Unlike `unroll`, `lengths` (B,) may hold zeros (sequences that ended before these steps keep
    their state and output zeros), and a fused cell keeps its whole-sequence kernel then.
    `state_hook` sees the absolute step `t0 + t`. Used for segments and TBPTT windows.
    """
    if lengths is not None and lengths.min() >= inputs.shape[0]:
        lengths = None  # no sequence ends inside: nothing to mask
    if (not per_step and state_hook is None and getattr(cell, "fused", False)
            and hasattr(cell, "sequence_kernel")):
        # the fused kernels accept zero lengths; `_unroll` would fall back to the step loop
        return cell.sequence_kernel(inputs, state, lengths)
    hook = None if state_hook is None else _Shifted(state_hook, t0)
    return _unroll(cell, inputs, state, lengths, per_step, hook, allow_empty=True)


class _Segment:
    """One segment as a function of (x_seg, *state tensors) -> (out, *new state tensors)."""

    def __init__(self, cell, lengths, per_step, state_hook, t0, as_tuple):
        self.args = (cell, lengths, per_step, state_hook, t0)
        self.as_tuple = as_tuple

    def __call__(self, x, *tensors):
        cell, lengths, per_step, state_hook, t0 = self.args
        state = tuple(tensors) if self.as_tuple else tensors[0]
        out, new = run_steps(cell, x, state, lengths, per_step, state_hook, t0)
        return (out, *state_tensors(new))


class _Shifted:
    """state_hook(t, state) called with the absolute step t = t0 + the step in the segment."""

    def __init__(self, hook, t0):
        self.hook, self.t0 = hook, t0

    def __call__(self, t, state):
        return self.hook(self.t0 + t, state)
