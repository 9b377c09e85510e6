"""Tracing: run a function once on Tensors and keep the ops it applied as a straight-line `Tape`.

`trace(fn, inputs)` makes fresh leaves (requiring grad) of `inputs`, runs `fn` on them with the
engine's recorder active (`state.recorder(fn, inputs, results, kwargs)` is called for every
recorded op) and numbers every tensor it sees with a *slot*:

- `Tape.inputs`: the slots of the traced function's inputs, in order;
- `Tape.captured`: `[(slot, tensor), ...]`, tensors read from outside the inputs (parameters,
  a tensor made before the call, a constant tensor made inside it without any op recorded);
- `Tape.ops`: `TapeOp(fn_class, kwargs, args, outs)` in the order they ran; `args` has per
  positional input an `int` slot or a `Const(value)` (a plain number or array the op was given);
- `Tape.outputs`: the slots of what `fn` returned (flattened by the caller's `flatten`);
- `Tape.meta[slot] = (shape, dtype)`.

Ops whose inputs need no gradient are not recorded by the engine: their results show up as
captured tensors. `compare` of two traces of the same function on different data takes only
what is the same in both (ops, keywords, numbers, the tensors read from outside): a tensor or
array made anew in each trace may depend on the data (read through `.data`, detached), and
data-dependent Python control flow shows as different ops.

`replay(tape, values)` runs a tape on Tensors again through each op's `apply` (a graph, one node
per op), which is what a compiled program's `composed` twin does for second order.
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import numpy as np

from minigrad.engine import make_tensor, state
from minigrad.tensor import Tensor
from minigrad.modes import enable_grad

__all__ = ["Const", "Tape", "TapeOp", "compare", "replay", "trace", "is_random"]


class Const:
    """A plain value (number, array, None) an op was given instead of a Tensor."""
    __slots__ = ("value",)

    def __init__(self, value):
        self.value = value

    def __repr__(self):
        v = self.value
        return f"Const({'array' + str(v.shape) if hasattr(v, 'shape') else repr(v)})"


class TapeOp(NamedTuple):
    fn_class: type
    kwargs: dict
    args: tuple   # per positional input: int slot or Const
    outs: tuple   # output slots


class Tape:
    """A straight-line program over numbered slots (see the module docstring)."""

    def __init__(self):
        self.ops: list[TapeOp] = []
        self.inputs: list[int] = []
        self.captured: list[tuple[int, Tensor]] = []
        self.outputs: list[int] = []
        self.meta: dict[int, tuple] = {}

    @property
    def n_slots(self) -> int:
        return len(self.meta)

    def __repr__(self):
        lines = [f"Tape(inputs={self.inputs}, captured={[s for s, _ in self.captured]}, "
                 f"outputs={self.outputs})"]
        for op in self.ops:
            lines.append(f"  {op.outs} = {op.fn_class.__name__}{op.args} {op.kwargs}")
        return "\n".join(lines)


def is_random(op: TapeOp) -> bool:
    """Whether the op draws random numbers (a Generator among its keywords): never hoisted or
    dropped, so its draws happen in the order of the per-op run."""
    return any(isinstance(v, np.random.Generator) for v in op.kwargs.values())


def trace(fn: Callable, inputs: list, flatten: Callable = None) -> tuple:
    """Run `fn(*leaves)` once on fresh leaves requiring grad made from `inputs` (Tensors or
    arrays) with the recorder active; returns `(tape, results)`, `results` what fn returned.
    `flatten(results) -> list of Tensors` gives the outputs (default: a Tensor or a tuple)."""
    tape = Tape()
    slots: dict[int, int] = {}
    keep = []  # every tensor numbered stays alive, so its id is not reused during the trace

    def slot_of(t):
        k = slots.get(id(t))
        if k is None:
            k = slots[id(t)] = len(tape.meta)
            tape.meta[k] = (tuple(t.data.shape), t.data.dtype)
            tape.captured.append((k, t))
            keep.append(t)
        return k

    def record(fn_obj, op_inputs, results, kwargs):
        args = tuple(slot_of(t) if isinstance(t, Tensor) else Const(t) for t in op_inputs)
        outs = []
        for r in results:
            k = slots[id(r)] = len(tape.meta)
            tape.meta[k] = (tuple(r.data.shape), r.data.dtype)
            keep.append(r)
            outs.append(k)
        tape.ops.append(TapeOp(type(fn_obj), dict(kwargs), args, tuple(outs)))

    leaves = []
    for a in inputs:
        data = a.data if isinstance(a, Tensor) else a
        t = make_tensor(data, True)
        k = slots[id(t)] = len(tape.meta)
        tape.meta[k] = (tuple(data.shape), data.dtype)
        tape.inputs.append(k)
        leaves.append(t)
        keep.append(t)
    prev = state.recorder
    if prev is None:
        state.recorder = record
    else:
        def both(fn_obj, op_inputs, results, kwargs):
            prev(fn_obj, op_inputs, results, kwargs)
            record(fn_obj, op_inputs, results, kwargs)
        state.recorder = both
    try:
        with enable_grad():
            results = fn(*leaves)
    finally:
        state.recorder = prev
    outs = flatten(results) if flatten is not None else (
        list(results) if isinstance(results, tuple) else [results])
    for t in outs:
        if not isinstance(t, Tensor):
            raise TypeError(f"trace: the traced function returned a {type(t).__name__}, "
                            "not a Tensor")
        tape.outputs.append(slot_of(t))
    return tape, results


def _same_value(a, b) -> bool:
    if a is b:
        return True
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        # two arrays made anew at each step: equal on two steps says nothing about the others
        # (a mask or an argmax index computed from the data often is), so they are never the
        # same; only the same array object is
        return False
    if isinstance(a, (tuple, list)) or isinstance(b, (tuple, list)):
        return (type(a) is type(b) and len(a) == len(b)
                and all(_same_value(x, y) for x, y in zip(a, b)))
    if isinstance(a, dict) or isinstance(b, dict):
        return (type(a) is type(b) and a.keys() == b.keys()
                and all(_same_value(a[k], b[k]) for k in a))
    if isinstance(a, (int, float, complex, bool, str, slice, type(None), type(Ellipsis),
                      np.generic, np.dtype, type)):
        try:
            return type(a) is type(b) and bool(a == b)
        except Exception:  # noqa: BLE001 - an odd value that cannot be compared: not the same
            return False
    return False  # any other object (a Generator made per step): the same object only


def compare(a: Tape, b: Tape) -> str | None:
    """Why two traces of one function are not the same program, or None when they are: the
    same op sequence, keywords and plain numbers, the same tensors read from outside (the same
    objects: parameters, a context). An array or a tensor made anew in each trace is never
    taken for a constant: equal on two steps says nothing of the others (a mask or an argmax
    index computed from the data often is)."""
    if len(a.ops) != len(b.ops):
        return f"the two traced steps ran {len(a.ops)} and {len(b.ops)} ops"
    if a.n_slots != b.n_slots or a.outputs != b.outputs or a.inputs != b.inputs:
        return "the two traced steps used their values differently"
    for i, (x, y) in enumerate(zip(a.ops, b.ops)):
        where = f"op {i} ({x.fn_class.__name__})"
        if x.fn_class is not y.fn_class:
            return f"{where}: the second step ran {y.fn_class.__name__} there"
        if x.outs != y.outs or len(x.args) != len(y.args):
            return f"{where}: different inputs in the two steps"
        for p, q in zip(x.args, y.args):
            if isinstance(p, Const) != isinstance(q, Const):
                return (f"{where}: an input is a tensor in one step, a plain value in the "
                        "other")
            if isinstance(p, Const):
                if not _same_value(p.value, q.value):
                    return (f"{where}: a plain value it was given differs between steps, or is "
                            "an array made anew at each step (data-dependent Python code?)")
            elif p != q:
                return f"{where}: different inputs in the two steps"
        if not _same_value(x.kwargs, y.kwargs):
            return (f"{where}: its keyword arguments differ between steps, or hold an array "
                    "made anew at each step")
    cb = dict(b.captured)
    for k, t in a.captured:
        u = cb.get(k)
        if u is None:
            return "the two traced steps read different tensors from outside"
        if u is not t:
            return (f"a tensor made inside the step without a recorded op (shape "
                    f"{a.meta[k][0]}: read through .data, detached, a new constant) is made "
                    "anew at each step, so it may depend on the data")
    return None


def replay(tape: Tape, values: dict) -> dict:
    """Run the tape's ops on Tensors through `apply` (recorded as usual); `values`: slot ->
    Tensor for its inputs and captured slots. Returns slot -> Tensor for every slot."""
    env = dict(values)
    for op in tape.ops:
        args = [a.value if isinstance(a, Const) else env[a] for a in op.args]
        res = op.fn_class.apply(*args, **op.kwargs)
        if len(op.outs) == 1:
            env[op.outs[0]] = res
        else:
            for k, r in zip(op.outs, res):
                env[k] = r
    return env
