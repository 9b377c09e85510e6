"""Gradient checkpointing: run a function without keeping its insides, recompute them in backward.

`checkpoint(fn, *inputs)` records ONE node for the whole call of `fn`. That node keeps only the
inputs (to run `fn` again) and no intermediate array of `fn`; its backward re-runs `fn` with the
gradient on, backpropagates through that fresh graph and frees it. Memory for `fn`'s insides is
traded for one more forward pass.
"""
from __future__ import annotations

import sys

from minigrad import random
from minigrad.engine import Function, Identity, make_tensor, run_backward
from minigrad.modes import enable_grad, no_grad, state
from minigrad.tensor import Tensor

__all__ = ["checkpoint"]


def checkpoint(fn, *inputs):
    """Call `fn(*inputs)` keeping only `inputs` for backward; `fn` runs again during backward.

    `fn` returns a Tensor or a tuple/list of Tensors (other items are passed through). Gradients
    equal those of a plain call: the default random generator (`minigrad.random`, used by
    dropout) is replayed so the second run draws the same numbers, and every leaf tensor `fn`
    uses without receiving it as an input (a module's parameters) gets its gradient as an input
    of the checkpoint node, so `mg.grad`, hooks on it and `.grad` work as usual. Checkpoints
    nest: a checkpoint inside `fn` is recomputed in turn when the outer one is.

    Memory: plain call = every array `fn` saves; checkpointed = the non-leaf inputs, plus, while
    its backward runs, the insides of one call. Time: one more forward of `fn`.

    Rules for `fn`: every non-leaf tensor it reads must be passed in `inputs` (a tensor reached
    only through a closure would be backpropagated into twice); it must not change tensors in
    place; hooks registered inside it run during the recomputation (and are skipped in the first
    run, where no graph is recorded).

    >>> import minigrad as mg
    >>> w = mg.randn(4, 4, requires_grad=True)
    >>> x = mg.randn(2, 4, requires_grad=True)
    >>> y = mg.checkpoint(lambda h: mg.tanh(mg.tanh(h @ w) @ w), x)
    >>> y.sum().backward()          # w.grad and x.grad as without the checkpoint
    """
    if not callable(fn):
        raise TypeError(f"checkpoint: fn must be callable, got {type(fn).__name__}")
    if not state.grad_enabled:
        return fn(*inputs)
    slots = [i for i, a in enumerate(inputs) if isinstance(a, Tensor)]
    tensors = [inputs[i] for i in slots]
    rng_state = random.get_state()
    tags = state.tags
    # First run: no graph. Inputs are replaced by aliases so that the leaves `fn` uses on its
    # own (parameters) are told apart from the inputs by the engine's collector.
    aliases = [_alias(t, t.requires_grad) for t in tensors]
    outer, collected = state.collector, []
    state.collector = collected
    try:
        with no_grad():
            out = fn(*_with(inputs, slots, aliases))
    finally:
        state.collector = outer
    alias_ids = {id(a) for a in aliases}
    params, seen = [], set()
    for t in collected:
        if id(t) not in alias_ids and id(t) not in seen:
            seen.add(id(t))
            params.append(t)
    if outer is not None:
        outer.extend(params)  # an enclosing checkpoint's first run: its fn uses them too

    single = isinstance(out, Tensor)
    outs = [out] if single else out
    if not isinstance(outs, (tuple, list)):
        raise TypeError(f"checkpoint: fn must return a Tensor or a tuple/list of Tensors, "
                        f"got {type(out).__name__}")
    out_slots = [i for i, o in enumerate(outs) if isinstance(o, Tensor)]
    if not out_slots:
        raise TypeError("checkpoint: fn returned no Tensor")
    results = Checkpoint.apply(
        *tensors, *params, fn=fn, inputs=inputs, slots=slots, params=params,
        outs=tuple(outs[i].data for i in out_slots), rng_state=rng_state, tags=tags)
    results = results if isinstance(results, tuple) else (results,)
    if single:
        return results[0]
    merged = list(outs)
    for i, r in zip(out_slots, results):
        merged[i] = r
    return tuple(merged) if isinstance(outs, tuple) else merged


def _alias(t, requires_grad):
    """A new leaf sharing `t`'s array (no copy)."""
    return make_tensor(t.data, requires_grad)


def _with(inputs, slots, tensors):
    args = list(inputs)
    for i, t in zip(slots, tensors):
        args[i] = t
    return args


class Checkpoint(Function):
    """outs = fn(*inputs) computed without a graph;  backward: re-run fn with the graph on (same
    random draws), then backpropagate `gouts` through it to the inputs and the leaves fn used.

    Saves the input arrays only (needed to re-run fn); parameters are held by reference.
    Under create_graph the saved inputs arrive as the live tensors: fn re-runs on aliases joined
    to them, so the gradients it returns can be differentiated again.
    """

    differentiable_backward = True

    def forward(self, *arrays, fn, inputs, slots, params, outs, rng_state, tags):
        self.save_for_backward(*arrays[:len(slots)])
        # keep the non-tensor arguments only: tensors would keep their arrays alive after _free
        self.args = _with(inputs, slots, [None] * len(slots))
        self.fn, self.slots, self.params = fn, slots, params
        self.rng_state, self.scope = rng_state, tags
        return outs if len(outs) > 1 else outs[0]

    def backward(self, *gouts):
        needs = self.needs_input_grad
        graph = isinstance(gouts[0], Tensor)
        if graph:
            xs = [Identity.apply(t) if needs[i] else t for i, t in enumerate(self.saved)]
        else:
            xs = [make_tensor(a, bool(needs[i])) for i, a in enumerate(self.saved)]
        now_rng, now_tags = random.get_state(), state.tags
        random.set_state(self.rng_state)
        state.tags = self.scope
        try:
            with enable_grad():
                out = self.fn(*_with(self.args, self.slots, xs))
            outs = [out] if isinstance(out, Tensor) else [o for o in out if isinstance(o, Tensor)]
            live = [(o, g) for o, g in zip(outs, gouts) if o.requires_grad]
            want = [i for i in range(len(self.parents)) if needs[i]]
            wrt = [(xs + self.params)[i] for i in want]
            got = run_backward([o for o, _ in live], [g for _, g in live], retain_graph=graph,
                               create_graph=graph, capture=wrt, stop_at_capture=True
                               ) if live else [None] * len(wrt)
        finally:
            random.set_state(now_rng)
            state.tags = now_tags
        grads = [None] * len(self.parents)
        for i, g in zip(want, got):
            grads[i] = g
        return tuple(grads)


class _CallableModule(type(random)):
    """Importing `minigrad.checkpoint` makes the package attribute `mg.checkpoint` this module
    (Python sets it after the import); calling the module calls the function, so both work."""

    def __call__(self, fn, *inputs):
        return checkpoint(fn, *inputs)


sys.modules[__name__].__class__ = _CallableModule
