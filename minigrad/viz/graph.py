"""The recorded graph as plain data: op nodes, tensor nodes and edges, and how to print values.

`record()` keeps, for every node created inside it, the arrays it produced and its constant
inputs; without it a graph still has op names, shapes, names and saved arrays, but no values for
intermediate results (the engine does not keep them).
"""
from __future__ import annotations

import contextlib
import weakref
from dataclasses import dataclass, field

import numpy as np

from minigrad import backend
from minigrad.engine import Function
from minigrad.modes import state
from minigrad.nn.module import Parameter
from minigrad.tensor import Tensor

# Function -> _Record, for nodes created inside `record()`; entries die with their graph.
_records: "weakref.WeakKeyDictionary[Function, _Record]" = weakref.WeakKeyDictionary()


@dataclass
class _Record:
    inputs: tuple      # per input: the raw array / scalar passed to the op
    names: tuple       # per input: the Tensor's name, or None
    outputs: tuple     # the arrays the op produced


def _remember(fn, inputs, results, kwargs=None):
    _records[fn] = _Record(
        tuple(t.data if isinstance(t, Tensor) else t for t in inputs),
        tuple(t.name if isinstance(t, Tensor) else None for t in inputs),
        tuple(r.data for r in results))


@contextlib.contextmanager
def record():
    """Keep the values of every op run inside, so drawings and steppers can show them.

    Recording holds each op's outputs (and constant inputs) for as long as the graph lives;
    use it on small examples.

    >>> import minigrad as mg
    >>> x = mg.tensor([1.0, 2.0], requires_grad=True)
    >>> with mg.viz.record():
    ...     y = (x * x).sum()
    >>> mg.viz.draw(y)  # doctest: +SKIP
    """
    prev = state.recorder
    if prev is None:
        state.recorder = _remember
    else:  # another recorder is active (a nested record(), a test's): feed both

        def both(fn, inputs, results, kwargs):
            prev(fn, inputs, results, kwargs)
            _remember(fn, inputs, results, kwargs)
        state.recorder = both
    try:
        yield
    finally:
        state.recorder = prev


@dataclass
class TensorNode:
    """A tensor drawn as its own node: a leaf (parameter, input), a constant or an output."""

    id: str
    kind: str                 # "param", "leaf", "const", "output"
    name: str
    shape: tuple
    dtype: object = None
    value: object = None      # array, Python scalar, or None when unknown
    grad: object = None       # array or None
    tensor: object = None     # the Tensor, when there is one


@dataclass
class Edge:
    """Data flowing from `src` (an op or tensor node id) into input `pos` of op `dst`.

    `out_idx` is the output of a multi-output op it comes from (0 otherwise); an edge into an
    output node has `pos` -1.
    """

    src: str
    dst: str
    pos: int
    out_idx: int = 0
    shape: tuple = ()
    saved: bool = False       # the consumer kept this array for its backward
    const: bool = False       # no gradient flows back along it


@dataclass
class Graph:
    """Everything reachable from some outputs: ops in forward (creation) order, tensors, edges."""

    ops: list                 # Functions sorted by seq
    tensors: list             # TensorNodes
    edges: list               # Edges
    roots: list               # the output Tensors
    ids: dict = field(default_factory=dict)   # id(Function) -> node id

    def op_id(self, fn) -> str:
        return self.ids[id(fn)]


def op_id(fn) -> str:
    return f"op{fn.seq}"


def build(outputs) -> Graph:
    """Walk back from `outputs` (a Tensor or a sequence of them) without recursion."""
    roots = [outputs] if isinstance(outputs, Tensor) else list(outputs)
    for t in roots:
        if not isinstance(t, Tensor):
            raise TypeError(f"viz: expected Tensors to draw, got {type(t).__name__}")
    seen = {}
    stack = [t.grad_fn for t in roots if t.grad_fn is not None]
    while stack:
        fn = stack.pop()
        if id(fn) in seen:
            continue
        seen[id(fn)] = fn
        for p in fn.parents:
            if p is not None and p[1] >= 0 and id(p[0]) not in seen:
                stack.append(p[0])
    ops = sorted(seen.values(), key=lambda f: f.seq)
    g = Graph(ops, [], [], roots, {id(fn): op_id(fn) for fn in ops})

    leaf_ids = {}
    for fn in ops:
        rec = _records.get(fn)
        dst = g.ids[id(fn)]
        saved = fn.saved if not fn.freed else ()
        for i, p in enumerate(fn.parents):
            is_saved = rec is not None and any(a is rec.inputs[i] for a in saved)
            if p is None:
                if rec is not None and _is_array(rec.inputs[i]):
                    cid = f"{dst}_c{i}"
                    a = rec.inputs[i]
                    g.tensors.append(TensorNode(cid, "const", rec.names[i] or "const",
                                                tuple(a.shape), a.dtype, a))
                    g.edges.append(Edge(cid, dst, i, 0, tuple(a.shape), is_saved, const=True))
                continue
            src, idx, shape = p
            if idx < 0:
                if any(a is src.data for a in saved):
                    is_saved = True
                if id(src) not in leaf_ids:
                    leaf_ids[id(src)] = f"leaf{len(leaf_ids)}"
                    kind = "param" if isinstance(src, Parameter) else "leaf"
                    g.tensors.append(TensorNode(
                        leaf_ids[id(src)], kind, src.name or kind, src.shape, src.dtype,
                        src.data, src.grad.data if src.grad is not None else None, src))
                g.edges.append(Edge(leaf_ids[id(src)], dst, i, 0, shape, is_saved))
            else:
                g.edges.append(Edge(g.ids[id(src)], dst, i, idx, shape, is_saved))
    for k, t in enumerate(roots):
        oid = f"out{k}"
        g.tensors.append(TensorNode(oid, "output", t.name or ("output" if len(roots) == 1
                                                               else f"output {k}"),
                                    t.shape, t.dtype, t.data,
                                    t.grad.data if t.grad is not None else None, t))
        if t.grad_fn is not None:
            g.edges.append(Edge(g.ids[id(t.grad_fn)], oid, -1, t.output_index, t.shape))
    return g


def _is_array(a) -> bool:
    return backend.is_array(a)


def outputs_of(fn):
    """The arrays `fn` produced, when it was recorded (else None)."""
    rec = _records.get(fn)
    return rec.outputs if rec is not None else None


def saved_names(fn) -> list[str]:
    """What `fn` saved for backward, named `in<i>` / `out<k>` when recorded, else by shape."""
    if fn.freed:
        return ["freed"]
    rec = _records.get(fn)
    names = []
    for a in fn.saved:
        name = None
        if rec is not None:
            name = next((f"in{i}" for i, x in enumerate(rec.inputs) if x is a), None) or next(
                (f"out{k}" if len(rec.outputs) > 1 else "out"
                 for k, x in enumerate(rec.outputs) if x is a), None)
        names.append(name or f"{tuple(getattr(a, 'shape', ()))}")
    return names


# --- printing values --------------------------------------------------------------------------

SMALL = 8  # arrays with at most this many elements are printed whole; larger ones summarised


def host(a) -> np.ndarray:
    return np.asarray(backend.to_host(a))


def fmt_value(a, small: int = SMALL) -> str:
    """Whole values for a small array, `min/mean/max/norm` for a large one (one or more lines)."""
    if a is None:
        return "?"
    if not _is_array(a):
        return f"{a:.4g}" if isinstance(a, float) else str(a)
    h = host(a)
    if h.size <= small:
        if h.ndim == 0:
            return f"{h.item():.4g}" if h.dtype.kind in "fc" else str(h.item())
        return np.array2string(h, precision=3, separator=" ", suppress_small=True,
                               max_line_width=60)
    if h.dtype.kind not in "fciub":
        return f"{h.size} values"
    f = h.astype(np.float64)
    return (f"min {f.min():.3g}  mean {f.mean():.3g}\n"
            f"max {f.max():.3g}  norm {np.sqrt((f * f).sum()):.3g}")


def fmt_shape(shape, dtype=None) -> str:
    s = "(" + ", ".join(str(n) for n in shape) + ("," if len(shape) == 1 else "") + ")"
    return f"{s} {np.dtype(dtype).name}" if dtype is not None else s
