"""`unroll`: run a cell over a time-major sequence (T, B, I) -> (T, B, H), with lengths (B,).

The loop lives here, never in a cell. Dispatch, fastest first: a fused cell's `sequence_kernel`
(the whole loop as one op); else a per-step loop that projects all inputs with one matrix product
when the cell has `precompute_inputs`/`step`, else calls `cell(x_t, state)`. Every step's nodes
are tagged `("time", t)` so drawings can group the graph by time step.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

import minigrad as mg
from minigrad import backend
from minigrad.engine import state as _engine
from rnn.cell import check_input, state_tensors


def _steps(x):
    """The T steps of x (T, ...) as T tensors through one op, `mg.unstack` (slicing each would
    cost T ops and T full-size gradient buffers in backward)."""
    return mg.unstack(x)


def _as_inputs(cell, inputs):
    if isinstance(inputs, np.ndarray):
        inputs = mg.tensor(inputs)
    elif isinstance(inputs, (list, tuple)):
        if not inputs:
            raise ValueError(f"unroll: {type(cell).__name__} got an empty list of steps")
        for x in inputs:
            check_input(cell, x, ndim=2)
        inputs = mg.stack(list(inputs), axis=0)
    check_input(cell, inputs, ndim=3)
    for p in cell.parameters():  # the first weight tells the cell's device
        if p.device != inputs.device:
            raise ValueError(f"{type(cell).__name__}: inputs are on device '{inputs.device}' but "
                             f"the cell's weights on '{p.device}'; move one with .to(device)")
        break
    if inputs.shape[0] == 0:
        raise ValueError(f"unroll: {type(cell).__name__} got an empty sequence, shape "
                         f"{inputs.shape}")
    return inputs


def _as_lengths(cell, lengths, T, B, allow_empty=False):
    """lengths (B,) as a host int64 array, checked against T (None stays None)."""
    if lengths is None:
        return None
    name = type(cell).__name__
    a = lengths.data if isinstance(lengths, mg.Tensor) else lengths
    a = np.asarray(backend.to_host(a)) if type(a) in backend._by_type else np.asarray(a)
    if a.dtype.kind not in "iu" and not (a.dtype.kind == "f" and np.all(a == np.round(a))):
        raise TypeError(f"{name}: lengths must be integers, got dtype {a.dtype}")
    a = a.astype(np.int64)
    if a.shape != (B,):
        raise ValueError(f"{name}: lengths of shape {a.shape} do not match the batch (B,) = ({B},)")
    low = 0 if allow_empty else 1
    if a.size and (a.min() < low or a.max() > T):
        raise ValueError(f"{name}: lengths must lie in [{low}, T={T}] for inputs of {T} steps, "
                         f"got min {int(a.min())} max {int(a.max())} (lengths {a.tolist()})")
    return a


def _check_state(cell, state, B):
    want = state_tensors(cell.initial_state(B))
    got = state_tensors(state)
    ok = len(want) == len(got) and all(
        isinstance(g, mg.Tensor) and g.shape == w.shape for g, w in zip(got, want))
    if not ok:
        shapes = [getattr(g, "shape", type(g).__name__) for g in got]
        raise ValueError(f"{type(cell).__name__}: state of shapes {shapes} does not match the "
                         f"expected {[w.shape for w in want]} for batch size {B}")


def unroll(cell, inputs, state=None, lengths=None, *, checkpoint_every: int | str | None = None,
           per_step: bool = False, state_hook: Callable | None = None) -> tuple:
    """Run `cell` over every step of `inputs`; returns `(outputs, final_state)`.

    `inputs` is (T, B, I) (a Tensor, an array, or a list of T steps (B, I)); `outputs` is
    (T, B, H); `state` defaults
    to `cell.initial_state(B)`. With `lengths` (B,) (ints in [1, T]), sequence b stops after
    `lengths[b]` steps: its outputs past that are zero and carry no gradient, and its final state is
    its state at its own last step, so a padded batch gives what each sequence gives alone.

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
    inputs = _as_inputs(cell, inputs)
    T, B = inputs.shape[0], inputs.shape[1]
    lengths = _as_lengths(cell, lengths, T, B)
    if state is not None:
        _check_state(cell, state, B)
    if checkpoint_every is not None:
        from rnn.checkpointing import unroll_checkpointed
        return unroll_checkpointed(cell, inputs, state, lengths, checkpoint_every,
                                   per_step=per_step, state_hook=state_hook)
    return _unroll(cell, inputs, state, lengths, per_step, state_hook)


def _unroll(cell, inputs, state, lengths, per_step, state_hook, allow_empty=False, t0=0):
    """The loop on checked arguments: inputs (T, B, I) Tensor, lengths a host int array or None.

    `allow_empty=True` lets some lengths be 0 (a segment of a checkpointed run where those
    sequences already ended): such rows keep their state and output zeros. `t0` is the absolute
    time of the first step (a segment's offset), used in the ("time", t) tags only.
    """
    T, B = inputs.shape[0], inputs.shape[1]
    if state is None:
        state = cell.initial_state(B)
    if lengths is not None and lengths.min() >= T:
        lengths = None  # nothing to mask
    if (not per_step and state_hook is None and getattr(cell, "fused", False)
            and hasattr(cell, "sequence_kernel")):
        return cell.sequence_kernel(inputs, state, lengths)

    # sequences that ended need no more steps: stop at the longest, pad the outputs after
    n = T if lengths is None else max(int(lengths.max()), 1)
    if n < T:
        inputs = inputs[:n]
    masks = [None] * n
    if lengths is not None:
        dev = backend.device_of(inputs.data)
        for t in range(int(lengths.min()), n):
            masks[t] = backend.to_device((lengths > t)[:, None], dev)  # (B, 1) rows still running
    fast = hasattr(cell, "precompute_inputs") and hasattr(cell, "step")
    if fast:
        xs = _steps(cell.precompute_inputs(inputs))
        step, module = cell.step, (("module", cell._path),)
    else:
        xs = _steps(inputs)
        step, module = cell, ()
    outputs = []
    base = _engine.tags
    try:
        for t in range(n):
            # a plain save/restore of the tags: a with-block per step costs more than a small op
            _engine.tags = base + (("time", t0 + t),) + module
            out, new = step(xs[t], state)
            m = masks[t]
            if m is not None:
                out = mg.where(m, out, 0.0)
                if isinstance(new, (tuple, list)):
                    new = tuple(mg.where(m, a, b) for a, b in zip(new, state))
                else:
                    new = mg.where(m, new, state)
            if state_hook is not None:
                new = state_hook(t, new)
            outputs.append(out)
            state = new
    finally:
        _engine.tags = base
    out = mg.stack(outputs, axis=0)
    if n < T:
        out = mg.pad(out, ((0, T - n),) + ((0, 0),) * (out.ndim - 1))
    return out, state


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


def mask_from_lengths(lengths, T: int, dtype=None, device=None) -> mg.Tensor:
    """(T, B) float mask: 1 where step t < lengths[b] (inside sequence b), else 0.

    >>> import rnn
    >>> rnn.mask_from_lengths([2, 1], 3).tolist()
    [[1.0, 1.0], [1.0, 0.0], [0.0, 0.0]]
    """
    a = lengths.data if isinstance(lengths, mg.Tensor) else lengths
    a = np.asarray(backend.to_host(a)) if type(a) in backend._by_type else np.asarray(a)
    if a.ndim != 1:
        raise ValueError(f"mask_from_lengths: lengths must be (B,), got shape {a.shape}")
    mask = np.arange(T)[:, None] < a[None, :]
    return mg.tensor(mask.astype(dtype if dtype is not None else mg.get_default_dtype()),
                     device=device)
