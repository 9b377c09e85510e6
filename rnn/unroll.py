"""`unroll`: run a cell over a time-major sequence (T, B, I) -> (T, B, H), with lengths (B,).

The loop lives in `rnn.steps.run_steps`, never in a cell: a cell's declared fast paths first
(its `sequence_kernel`, the whole loop as one op; else `precompute_inputs` and `step`), else
`cell(x_t, state)` (with the context for a cell that takes one) step by step. Every step's nodes
are tagged `("time", t)` so drawings can group the graph by time step. `unroll` checks its
arguments once, here, and hands checkpointed runs to `rnn.checkpointing`.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

import minigrad as mg
from rnn.checkpointing import unroll_checkpointed
from rnn.lengths import as_lengths
from rnn.steps import as_inputs, check_context, run_steps, start_state

__all__ = ["pad_sequences", "unroll"]


def unroll(cell, inputs, state=None, lengths=None, *, context=None,
           checkpoint_every: int | str | None = None, per_step: bool = False,
           state_hook: Callable | None = None) -> tuple:
    """Run `cell` over every step of `inputs`; returns `(outputs, final_state)`.

    `inputs` is (T, B, I) (a Tensor, an array, or a list of T steps (B, I)); `outputs` is
    (T, B, H); `state` defaults to `cell.initial_state(B)` and may be any structure of Tensors
    (`rnn.state`) the cell uses: the cell must return a new state of the same structure and
    shapes (checked at the first step; the error names the cell, the step and the path inside
    the state). With `lengths` (B,) (ints in [1, T]), sequence b stops after `lengths[b]` steps:
    its outputs past that are zero and carry no gradient, and its final state (every tensor in
    it) is its state at its own last step, so a padded batch gives what each sequence gives alone.

    `context`: a Tensor or structure of Tensors fixed over time (encoder outputs, a mask, a
    memory bank) passed to every step of a cell whose forward is `forward(x_t, state, context)`;
    its gradient is the sum over the steps that read it, with or without checkpointing.

    `per_step=True` always runs the per-step loop (the graph shows every step) instead of a fused
    cell's whole-sequence op. `state_hook(t, state) -> state`, if given, is applied to every new
    state (e.g. to clip the gradient flowing into it); it also forces the per-step loop.
    `checkpoint_every` (int or "sqrt") keeps only every k-th state for backward and recomputes the
    rest (see `rnn.checkpointing`).

    >>> import minigrad as mg, rnn
    >>> cell = rnn.GRUCell(3, 5, rng=0)
    >>> out, h = rnn.unroll(cell, mg.randn(4, 2, 3), lengths=[4, 2])
    >>> out.shape, h.shape, float(abs(out[2:, 1]).sum())
    ((4, 2, 5), (2, 5), 0.0)
    """
    inputs = as_inputs(cell, inputs)
    T, B = inputs.shape[0], inputs.shape[1]
    lengths = as_lengths(lengths, B, T, type(cell).__name__)
    check_context(cell, context)
    state = start_state(cell, state, B, context=context)
    if checkpoint_every is not None:
        return unroll_checkpointed(cell, inputs, state, lengths, checkpoint_every,
                                   per_step=per_step, state_hook=state_hook, context=context)
    return run_steps(cell, inputs, state, lengths, context=context, per_step=per_step,
                     state_hook=state_hook)


def pad_sequences(sequences, value: float = 0.0) -> tuple:
    """Pad sequences of different lengths into one time-major batch: returns `(x, lengths)`.

    `sequences` is a list of B arrays or Tensors (T_b, ...); `x` is (T, B, ...) with T = max T_b,
    filled with `value` past each end; `lengths` is a host int64 array (B,). Tensors stay in the
    graph (gradients flow back to each sequence); arrays keep their dtype.

    >>> import numpy as np, rnn
    >>> x, lengths = rnn.pad_sequences([np.ones((3, 2)), np.ones((1, 2))])
    >>> x.shape, lengths.tolist()
    ((3, 2, 2), [3, 1])
    """
    if not sequences:
        raise ValueError("pad_sequences: no sequences given")
    lengths = np.array([len(s) for s in sequences], dtype=np.int64)
    rest = {tuple(s.shape[1:]) for s in sequences}
    if len(rest) != 1:
        raise ValueError(f"pad_sequences: sequences differ beyond the time axis: shapes "
                         f"{[tuple(s.shape) for s in sequences]}")
    T = int(lengths.max())
    if any(isinstance(s, mg.Tensor) for s in sequences):
        padded = [mg.pad(s if isinstance(s, mg.Tensor) else mg.tensor(s),
                         ((0, T - len(s)),) + ((0, 0),) * (s.ndim - 1), value=value)
                  for s in sequences]
        return mg.stack(padded, axis=1), lengths
    arrays = [np.asarray(s) for s in sequences]
    dtype = np.result_type(*arrays)
    if dtype.kind == "f" or not arrays[0].size:
        dtype = dtype if dtype.kind == "f" else mg.get_default_dtype()
    out = np.full((T, len(arrays)) + rest.pop(), value, dtype=dtype)
    for b, a in enumerate(arrays):
        out[:len(a), b] = a
    return mg.tensor(out), lengths
