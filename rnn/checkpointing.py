"""Checkpointed unrolling: BPTT whose memory grows as sqrt(T) instead of T.

`rnn.unroll(cell, inputs, checkpoint_every=K)` cuts the T steps into segments of K steps. Each
segment but the last runs inside one `mg.checkpoint` node, which keeps only the state entering
the segment; its K steps are recomputed, one segment at a time, during backward. Memory for
backward: T/K boundary states plus the insides of one segment, smallest near K = sqrt(T)
(`checkpoint_every="sqrt"`). Time: one more forward of all segments but the last. Gradients
equal full BPTT's (same operations, re-run on the same values; dropout draws are replayed).

The policy lives here (where to cut); the mechanism is `minigrad.checkpoint`; the steps of each
segment run through `rnn.steps.run_steps`, the loop `unroll` uses. Any cell works, fused or
composed, with any state structure (flattened by `rnn.state` at each cut), a context (an
explicit input of every segment), lengths, in `Bidirectional` and `Stacked` (they pass
`checkpoint_every` to `unroll`).
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np

import minigrad as mg
from minigrad.checkpoint import checkpoint
from rnn import state as st
from rnn.lengths import as_lengths
from rnn.steps import run_steps

__all__ = ["segment_length", "unroll_checkpointed"]


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
                        state_hook: Callable | None = None, *, context=None, t0: int = 0):
    """`rnn.unroll` with checkpointed segments of K = `checkpoint_every` steps.

    inputs (T, B, I) Tensor, state as the cell's (None: `cell.initial_state(B)`), lengths (B,)
    with values in [0, T] or None, `context` as for `unroll`. Returns (outputs (T, B, H), final
    state), equal to `unroll`'s. `t0` is the real index of the first step (a TBPTT window's
    start), for the time tags and `state_hook`. The inputs are split once (one node, no copy:
    each segment gets a view of its K steps); each segment's checkpoint node keeps its view, its
    boundary state and the context, all passed as explicit inputs, so the gradient of each
    reaches it once per use, as in full BPTT.

    >>> import minigrad as mg, rnn
    >>> cell = rnn.LSTMCell(3, 8, rng=0)
    >>> out, (h, c) = rnn.unroll(cell, mg.randn(100, 2, 3), checkpoint_every="sqrt")
    >>> out.shape
    (100, 2, 8)
    """
    T, B = inputs.shape[0], inputs.shape[1]
    K = segment_length(checkpoint_every, T)
    lengths = as_lengths(lengths, B, T, f"unroll_checkpointed: {type(cell).__name__}",
                         min_length=0)
    if state is None:
        state = cell.initial_state(B)
    plain = dict(context=context, t0=t0, per_step=per_step, state_hook=state_hook)
    if K >= T or not mg.is_grad_enabled() or (lengths is not None and lengths.max() == 0):
        return run_steps(cell, inputs, state, lengths, **plain)
    cuts = list(range(K, T, K))
    xs = mg.split(inputs, cuts, axis=0)
    tensors, spec = st.flatten(state)
    ctx_tensors, ctx_spec = st.flatten(context, "context") if context is not None else ([], None)
    outs = []
    for k, a in enumerate([0] + cuts):
        b = min(a + K, T)
        seg_lengths = None if lengths is None else np.clip(lengths - a, 0, b - a)
        if seg_lengths is not None and seg_lengths.max() == 0:
            break  # every sequence ended: the remaining outputs are zeros, the state is final
        run = _Segment(cell, seg_lengths, spec, ctx_spec, dict(plain, context=None, t0=t0 + a))
        with mg.tag_scope("segment", k):
            # the last segment's insides are needed first in backward: keep them, skip a rerun
            args = (xs[k], *tensors, *ctx_tensors)
            res = run(*args) if b == T else checkpoint(run, *args)
        outs.append(res[0])
        tensors = res[1:]
    out = mg.concat(outs, axis=0) if len(outs) > 1 else outs[0]
    if out.shape[0] < T:
        out = mg.pad(out, ((0, T - out.shape[0]),) + ((0, 0),) * (out.ndim - 1))
    return out, st.unflatten(spec, tensors)


class _Segment:
    """One segment as a function of (x_seg, *state tensors, *context tensors) ->
    (out, *new state tensors): the structures are rebuilt from their specs."""

    def __init__(self, cell, lengths, spec, ctx_spec, options):
        self.cell, self.lengths, self.spec, self.ctx_spec = cell, lengths, spec, ctx_spec
        self.options = options

    def __call__(self, x, *tensors):
        n = self.spec.size
        state = st.unflatten(self.spec, tensors[:n])
        context = None if self.ctx_spec is None else st.unflatten(self.ctx_spec, tensors[n:])
        out, new = run_steps(self.cell, x, state, self.lengths, **dict(self.options,
                                                                       context=context))
        return (out, *st.flatten(new)[0])
