"""The one step loop: `run_steps` runs a cell over the steps of a sequence, from a given state.

`rnn.unroll`, each segment of checkpointed unrolling and each window of truncated BPTT call it,
so they share one set of rules: a cell's declared fast paths (`Cell.sequence_kernel`, then
`Cell.precompute_inputs` with `Cell.step`), masking by lengths through `rnn.state`, the context
passed to every step of a cell that takes one, the check of what the cell returned, and the time
tags `("time", t)` with t the step's real index in the whole sequence.

Also here, because every entry point needs them: `as_inputs` (inputs to a checked (T, B, I)
Tensor) and `start_state` (the initial state, checked against the cell's).
"""
from __future__ import annotations

from typing import Callable

import numpy as np

import minigrad as mg
from minigrad import backend
from minigrad.engine import state as engine_state
from rnn import compiled
from rnn import state as st
from rnn.cell import Cell, check_input

__all__ = ["as_inputs", "check_context", "run_steps", "start_state"]


def _steps(x):
    """The T steps of x (T, ...) as T tensors through one op, `mg.unstack` (slicing each would
    cost T ops and T full-size gradient buffers in backward)."""
    return mg.unstack(x)


def as_inputs(cell, inputs, who: str = "unroll") -> mg.Tensor:
    """`inputs` (a Tensor or array (T, B, I), or a list of T Tensors (B, I)) as a Tensor
    (T, B, I), checked against the cell's features and device; errors name `who` and the cell."""
    if not isinstance(cell, Cell):
        raise TypeError(f"{who}: expected an rnn.Cell, got {type(cell).__name__}")
    name = type(cell).__name__
    if isinstance(inputs, np.ndarray):
        inputs = mg.tensor(inputs)
    elif isinstance(inputs, (list, tuple)):
        if not inputs:
            raise ValueError(f"{who}: {name} got an empty list of steps")
        for x in inputs:
            check_input(cell, x, ndim=2)
        inputs = mg.stack(list(inputs), axis=0)
    check_input(cell, inputs, ndim=3)
    for p in cell.parameters():  # the first weight tells the cell's device
        if p.device != inputs.device:
            raise ValueError(f"{name}: inputs are on device '{inputs.device}' but the cell's "
                             f"weights on '{p.device}'; move one with .to(device)")
        break
    if inputs.shape[0] == 0:
        raise ValueError(f"{who}: {name} got an empty sequence, shape {inputs.shape}")
    return inputs


def start_state(cell, state, B: int, who: str = "unroll", context=None):
    """`cell.initial_state(B)` (or `initial_state(B, context)` for a cell whose initial_state
    reads the context) when `state` is None, else `state` after checking it has that structure
    and those shapes (`rnn.state.StateError` naming the cell and the path)."""
    want = (cell.initial_state(B, context) if cell.initial_state_reads_context
            else cell.initial_state(B))
    if state is None:
        return want
    st.check(state, want, f"{who}: {type(cell).__name__}: the initial state for batch size {B}")
    return state


def check_context(cell, context, who: str = "unroll") -> None:
    """TypeError unless `context` is None or a structure of Tensors given to a cell that takes
    one (`Cell.takes_context`)."""
    if context is None:
        return
    name = type(cell).__name__
    if not cell.takes_context:
        raise TypeError(f"{who}: {name} takes no context (its forward is forward(x_t, state)); "
                        "a cell that reads one defines forward(self, x_t, state, context)")
    try:
        st.flatten(context, "context")
    except st.StateError as e:
        raise st.StateError(f"{who}: {name}: {e}") from None


def _check_step(who: str, result, state, B: int, batch_axis: int = 0):
    """(output, new_state) from what a cell's step (batch_axis 0) or sequence kernel (1)
    returned, checked once per run; errors start with `who` (the cell and the step)."""
    if not isinstance(result, (tuple, list)) or len(result) != 2:
        got = (f"a Tensor of shape {result.shape}" if isinstance(result, mg.Tensor)
               else f"a {type(result).__name__}" + (f" of length {len(result)}"
                                                     if isinstance(result, (tuple, list)) else ""))
        raise st.StateError(f"{who}: the cell returned {got}; a cell returns the pair "
                            "(output, new_state), e.g. `return h, h`")
    out, new = result
    if not isinstance(out, mg.Tensor) or out.ndim <= batch_axis or out.shape[batch_axis] != B:
        got = out.shape if isinstance(out, mg.Tensor) else type(out).__name__
        layout = "(B, ...)" if batch_axis == 0 else "(T, B, ...)"
        raise st.StateError(f"{who}: the output must be a Tensor {layout} with B = {B}, got "
                            f"{got}")
    st.check(new, state, f"{who}: the new state")
    return out, new


def _keep_ended(m, new, old):
    """new where m (rows still running), else old, tensor by tensor; a bare Tensor directly (the
    common case, and a per-step cost). The (B, 1) mask is reshaped to (B, 1, ..., 1) for a state
    of more axes (an NTM's memory (B, N, M)), which it would otherwise broadcast against wrongly."""
    if isinstance(new, mg.Tensor):
        return mg.where(_rows(m, new.ndim), new, old)
    return st.map(lambda a, b: mg.where(_rows(m, a.ndim), a, b), new, old)


def _rows(m, ndim: int):
    return m if ndim == 2 else m.reshape((m.shape[0],) + (1,) * (ndim - 1))


def run_steps(cell, inputs, state, lengths=None, *, context=None, t0: int = 0,
              per_step: bool = False, state_hook: Callable | None = None) -> tuple:
    """Run `cell` over inputs (T, B, I) from `state`: returns (outputs (T, B, H), final state).

    Arguments are already checked: `state` has the cell's structure; `lengths` is None or a host
    int64 array (B,) with values in [0, T] (a row of length 0 keeps its state and outputs zeros:
    a sequence that ended before these steps); `context` goes to every step of a cell that takes
    one. `t0` is the real index of the first step: the steps are tagged ("time", t0 + t) and
    `state_hook(t0 + t, new_state) -> new_state` sees it. `per_step` or a `state_hook` rule out
    the whole-sequence kernel (it has no per-step states).
    """
    T, B = inputs.shape[0], inputs.shape[1]
    extra = (context,) if cell.takes_context else ()
    if lengths is not None and lengths.min() >= T:
        lengths = None  # no sequence ends inside: nothing to mask
    if not per_step and state_hook is None:
        res = cell.sequence_kernel(inputs, state, lengths, *extra)
        if res is not None:
            return _check_step(f"{type(cell).__name__}.sequence_kernel", res, state, B, 1)
        res = compiled.run(cell, inputs, state, lengths, context)
        if res is not None:
            return res

    # sequences that ended need no more steps: stop at the longest, pad the outputs after
    n = T if lengths is None else max(int(lengths.max()), 1)
    if n < T:
        inputs = inputs[:n]
    masks = [None] * n
    if lengths is not None:
        dev = backend.device_of(inputs.data)
        for t in range(int(lengths.min()), n):
            masks[t] = backend.to_device((lengths > t)[:, None], dev)  # (B, 1) rows still running
    projected = cell.precompute_inputs(inputs)
    module = (("module", cell.module_path),)
    if projected is not None:
        xs, first, step = _steps(projected), cell.step, cell.step
    else:
        # the first step goes through Cell.__call__, which checks x_t and the state (and adds
        # the module tag itself); the later ones call forward directly, with the same tags
        xs, first, step = _steps(inputs), cell, cell.forward
    outputs = []
    base = engine_state.tags
    try:
        for t in range(n):
            # a plain save/restore of the tags: a with-block per step costs more than a small op
            if t:
                engine_state.tags = base + (("time", t0 + t),) + module
                out, new = step(xs[t], state, *extra)
            else:
                engine_state.tags = base + (("time", t0),) + (() if first is cell else module)
                who = f"{type(cell).__name__}, step {t0}"
                out, new = _check_step(who, first(xs[t], state, *extra), state, B)
            m = masks[t]
            if m is not None:
                out = mg.where(m, out, 0.0)
                new = _keep_ended(m, new, state)
            if state_hook is not None:
                new = state_hook(t0 + t, new)
            outputs.append(out)
            state = new
    finally:
        engine_state.tags = base
    out = mg.stack(outputs, axis=0)
    if n < T:
        out = mg.pad(out, ((0, T - n),) + ((0, 0),) * (out.ndim - 1))
    return out, state
