"""Truncated BPTT for long streams: Williams & Peng's TBPTT(k1, k2).

Full BPTT over a stream of T steps keeps T steps of graph and updates once. TBPTT(k1, k2)
updates every k1 steps and backpropagates through the last k2 steps only: at each update time
`stop` (k1, 2 k1, ..., T) it computes the loss of the steps since the previous update (of the
last k2 steps when k2 < k1) on a graph that starts k2 steps back, from the state carried
across windows with no gradient (detached). k1 = k2 is the common case: the stream is cut into
windows of k steps. k2 > k1 gives every loss at least k2 - k1 steps of history; the overlap is
recomputed from the detached state kept at the graph's start, so memory stays k2 steps.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

import minigrad as mg
from rnn import state as st
from rnn.cell import Cell, check_input
from rnn.checkpointing import unroll_checkpointed
from rnn.lengths import as_lengths
from rnn.steps import as_inputs, check_context, run_steps, start_state

__all__ = ["TBPTTResult", "Window", "tbptt"]


@dataclass(frozen=True)
class Window:
    """One update of `tbptt`: the loss covers steps [start, stop) and the gradient flows back to
    step `graph_start` (stop - k2, or 0). `lengths` (B,) counts each sequence's steps in
    [start, stop) (None without lengths); `index` numbers the updates from 0."""

    index: int
    start: int
    stop: int
    graph_start: int
    lengths: np.ndarray | None


@dataclass
class TBPTTResult:
    """`state`: the final state, detached (pass it to the next call to go on with the stream);
    `losses`: the loss of every window, as floats."""

    state: object
    losses: list


def tbptt(cell: Cell, inputs, k1: int, k2: int | None = None, *, loss_fn: Callable,
          state=None, lengths=None, context=None, on_step: Callable | None = None,
          checkpoint_every=None, input_fn: Callable | None = None) -> TBPTTResult:
    """Train `cell` on `inputs` (T, B, I) with truncated BPTT: update every `k1` steps,
    backpropagating through the last `k2` (default k1) steps.

    For each update (a `Window` w): `loss = loss_fn(outputs, w)` with `outputs` the cell's
    outputs (w.stop - w.start, B, H) for steps [w.start, w.stop) (slice your targets the same
    way); then `loss.backward()`, then `on_step(w, loss)`: step the optimizer and zero the
    gradients there. Without `on_step` the gradients of all windows add up in `.grad`.

    The state starts from `state` (default zeros), is detached, and is carried from window to
    window with no gradient; the result holds the final state (detached) and the losses.
    `lengths` (B,) ints in [1, T]: sequence b stops after lengths[b] steps (later windows see it
    as ended: its state is kept and its outputs are zeros; use `w.lengths` to mask the loss);
    windows after every sequence ended are skipped. `checkpoint_every` checkpoints each
    window's graph (for long k2). The state may be any structure of Tensors (`rnn.state`); it is
    detached tensor by tensor. `context` (fixed over time, see `rnn.unroll`) is read by every
    window; its gradient, like the weights', adds up over the windows. It must be data (leaves):
    a context computed by a graph would be freed by the first window's backward.

    `input_fn` puts input layers inside every window's graph: `inputs` is then any array or
    Tensor with time and batch first, (T, B, ...) (token ids (T, B) for a language model), and
    each window runs the cell on `input_fn(inputs[a:b])`, which must return a Tensor
    (b - a, B, I); an `Embedding` or a projection in there gets its gradient from every window.

    Gradient of window w, in maths: d/dtheta sum_{t in [start, stop)} loss_t, through the steps
    (graph_start, stop] only, with h_{graph_start} treated as a constant.

    >>> import minigrad as mg, rnn
    >>> cell = rnn.GRUCell(3, 8, rng=0)
    >>> head = mg.nn.Linear(8, 1, rng=0)
    >>> opt = mg.optim.SGD(cell.parameters() + head.parameters(), lr=0.1)
    >>> x, y = mg.randn(100, 4, 3), mg.randn(100, 4, 1)
    >>> def loss_fn(out, w):
    ...     return mg.mse_loss(head(out), y[w.start:w.stop])
    >>> def on_step(w, loss):
    ...     opt.step()
    ...     opt.zero_grad()
    >>> res = rnn.tbptt(cell, x, k1=20, loss_fn=loss_fn, on_step=on_step)
    >>> len(res.losses), res.state.shape
    (5, (4, 8))
    """
    name = type(cell).__name__
    k2 = k1 if k2 is None else k2
    for arg, k in (("k1", k1), ("k2", k2)):
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"tbptt: {arg} must be a positive int, got {k!r}")
    if not callable(loss_fn):
        raise TypeError(f"tbptt: loss_fn must be callable, got {type(loss_fn).__name__}")
    if input_fn is None:
        inputs = as_inputs(cell, inputs, "tbptt")
    elif not callable(input_fn):
        raise TypeError(f"tbptt: input_fn must be callable, got {type(input_fn).__name__}")
    elif len(getattr(inputs, "shape", ())) < 2 or inputs.shape[0] == 0:
        raise ValueError(f"tbptt: with input_fn, inputs must be an array or Tensor (T, B, ...) "
                         f"with T >= 1, got {getattr(inputs, 'shape', type(inputs).__name__)}")
    if isinstance(inputs, mg.Tensor) and not inputs.is_leaf and inputs.requires_grad:
        raise ValueError(f"tbptt: {name} got inputs computed by a graph (shape {inputs.shape}); "
                         "every window runs its own backward, so the graph before them would "
                         "be freed by the first one: pass data (a leaf), and compute input "
                         "layers (an embedding) in input_fn")
    check_context(cell, context, "tbptt")
    if context is not None and any(not t.is_leaf and t.requires_grad
                                   for t in st.flatten(context, "context")[0]):
        raise ValueError(f"tbptt: {name} got a context computed by a graph; every window runs "
                         "its own backward, so that graph would be freed by the first one: "
                         "pass data (leaves), e.g. context.detach()")
    T, B = inputs.shape[0], inputs.shape[1]
    lengths = as_lengths(lengths, B, T, name)
    state = _detach(start_state(cell, state, B, "tbptt", context))

    stops = list(range(k1, T, k1)) + [T]
    starts = [max(0, stop - k2) for stop in stops]  # where each window's graph begins
    carry, carry_t = state, 0   # a detached state and its step
    final = state               # the detached state after the last window run
    losses = []
    prev = 0
    def run(state, a, b, checkpoint_every):
        return _run(cell, inputs, state, lengths, a, b, checkpoint_every, input_fn, context)

    for i, stop in enumerate(stops):
        g0 = starts[i]
        start = max(g0, prev)
        if lengths is not None and lengths.max() <= start:
            if lengths.max() > prev:  # no loss is left, but some sequences still run a while
                with mg.no_grad():
                    _, final = run(final, prev, T, None)
            break  # every sequence ended
        if carry_t < g0:  # k2 < k1: the steps before the graph only advance the state
            with mg.no_grad():
                _, carry = run(carry, carry_t, g0, None)
            carry_t = g0
        # k2 > k1: the next window's graph starts inside this one; keep the state there
        nxt = starts[i + 1] if i + 1 < len(stops) else stop
        cuts = [g0, nxt, stop] if g0 < nxt < stop else [g0, stop]
        s, pieces = carry, []
        for a, b in zip(cuts, cuts[1:]):
            out, s = run(s, a, b, checkpoint_every)
            pieces.append(out)
            if b == nxt:
                carry, carry_t = _detach(s), b
        final = _detach(s)
        if nxt >= stop:  # k2 <= k1: go on from here (never rerun steps with updated weights)
            carry, carry_t = final, stop
        out = mg.concat(pieces, axis=0) if len(pieces) > 1 else pieces[0]
        if start > g0:
            out = out[start - g0:]
        w_lengths = None if lengths is None else np.clip(lengths - start, 0, stop - start)
        window = Window(i, start, stop, g0, w_lengths)
        loss = loss_fn(out, window)
        if not isinstance(loss, mg.Tensor) or loss.size != 1:
            raise TypeError(f"tbptt: loss_fn must return a scalar Tensor, got "
                            f"{getattr(loss, 'shape', type(loss).__name__)}")
        loss.backward()
        losses.append(float(loss.item()))
        if on_step is not None:
            on_step(window, loss)
        prev = stop
    return TBPTTResult(final, losses)


def _run(cell, inputs, state, lengths, a, b, checkpoint_every, input_fn, context):
    """Steps [a, b) from `state`, tagged and hooked with their real indices."""
    x = inputs[a:b]
    if input_fn is not None:
        x = input_fn(x)
        check_input(cell, x, ndim=3)
        B = inputs.shape[1]
        if x.shape[:2] != (b - a, B):
            raise ValueError(f"tbptt: input_fn returned shape {x.shape} for steps [{a}, {b}) of "
                             f"a batch of {B}; expected ({b - a}, {B}, features)")
    seg = None if lengths is None else np.clip(lengths - a, 0, b - a)
    if checkpoint_every is not None:
        return unroll_checkpointed(cell, x, state, seg, checkpoint_every, context=context, t0=a)
    return run_steps(cell, x, state, seg, context=context, t0=a)


def _detach(state):
    return st.map(lambda s: s.detach(), state)
