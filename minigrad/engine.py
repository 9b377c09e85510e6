"""The autograd engine: `Function` (one op), recording the graph, and the backward walk.

Read in this order: `make_tensor`, `Function.apply`
(forward, then record the node), then `run_backward` and its named steps (count consumers, seed,
run each node once every consumer has sent its gradient, send the results on, free) and
`finish_leaves` (hooks, then `.grad`). With `create_graph=True` the walk runs every backward
formula on Tensors instead of arrays, so the gradients it returns have a graph of their own.
This module imports nothing of the Tensor class: `minigrad.tensor` (above it, as its operators
apply ops) names that class with `use_tensor_class` when it loads.
"""
from __future__ import annotations

import itertools

import numpy as np

from minigrad.backend import array_types, device_of
from minigrad.checks import IndexRangeError, IndexTypeError
from minigrad.modes import (AnomalyError, all_finite, detect_anomaly, enable_grad,  # noqa: F401
                            is_grad_enabled, no_grad, state, tag_scope, user_line)


class GraphFreedError(RuntimeError):
    """Backward asked to run through a graph whose saved arrays were already freed."""


# --- tensors ---------------------------------------------------------------------------------

Tensor = None  # the Tensor class, named by minigrad.tensor through use_tensor_class


def use_tensor_class(cls) -> None:
    """Called once by minigrad.tensor: the class of every tensor the engine makes."""
    global Tensor, _new_tensor
    Tensor, _new_tensor = cls, object.__new__


def make_tensor(data, requires_grad=False, node=None, idx=0, into=None):
    """A Tensor of `data` made by `node` (output `idx`), or `into` filled: the one place a
    tensor's fields are set (`Tensor(...)`, op outputs and gradients come here)."""
    t = _new_tensor(Tensor) if into is None else into
    t.data = data
    t.grad = None
    t.requires_grad = requires_grad
    t._node = node
    t._idx = idx
    t._version = 0
    t._hooks = None
    t.name = None
    return t


# --- ops and recording -----------------------------------------------------------------------

class Function:
    """One op and, once applied with gradients on, one node of the graph.

    Subclasses write `forward(self, *arrays, **kw) -> array | tuple of arrays` and
    `backward(self, *gouts) -> gradient | tuple of gradients` (one per input, None where
    `self.needs_input_grad[i]` is False). Keep what backward needs with `save_for_backward`;
    plain values (an axis, a shape) may be stored as attributes.

    Higher order (`create_graph=True`): a backward written only with operators and methods that
    arrays and Tensors share may declare `differentiable_backward = True`; the engine then runs it
    on Tensors (saved inputs, and the outputs named in `saved_outputs`, as the live tensors;
    anything else saved as a constant; `self.xp` as `tensor_xp`).
    Otherwise a `composed` staticmethod, taking the op's inputs (Tensors) and keywords and
    returning its outputs built from differentiable ops, is re-run and differentiated instead
    (a node of such an op keeps its input tensors until its backward ran, to re-run it).
    """

    # parents: None when the node is not recorded, else per input None (no gradient),
    # (node, output index, shape) or (leaf, -1, shape). Rare state (hooks on outputs, version
    # checks, several outputs, anomaly origin, another array module) is a class default that the
    # few nodes needing it override in their own __dict__: each write saved is time saved per op.
    __slots__ = ("parents", "saved", "gouts", "seq", "tags", "freed", "__weakref__", "__dict__")

    differentiable = True
    differentiable_backward = False
    composed = None    # staticmethod(inputs..., **kw) -> outputs, for create_graph
    tensor_xp = None   # xp -> the array namespace on Tensors (ops.Primitive sets it)
    xp = np            # the array module of the inputs (cupy on a GPU)
    n_out = 1
    out_meta = None    # ((shape, dtype), ...) of each output when n_out > 1
    out_hooks = None   # {output index: [hook, ...]} from Tensor.register_hook on an output
    checks = None      # [(tensor, version), ...] for saved inputs: see `_note_saved`
    saved_outputs = ()  # ((position in saved, output index), ...): the outputs it saves
    inputs = None      # (inputs, kwargs), kept for `composed` only
    origin = "<unknown>"  # "file:line" of the user code that made the node, in anomaly mode

    def save_for_backward(self, *arrays) -> None:
        """Keep `arrays` for backward; the engine frees them once this node's backward ran."""
        self.saved = arrays

    @property
    def needs_input_grad(self) -> list:
        """Per input, whether a gradient for it is wanted (backward may skip the others)."""
        parents = self.parents
        if parents is None:
            return _NO_GRADS
        return [p is not None for p in parents]

    @property
    def name(self) -> str:
        return type(self).__name__

    def forward(self, *arrays, **kwargs):  # pragma: no cover - abstract
        raise NotImplementedError

    def backward(self, *gouts):  # pragma: no cover - abstract
        raise NotImplementedError(f"{type(self).__name__} has no backward")

    @classmethod
    def apply(cls, *inputs, **kwargs):
        """Run the op on Tensors (and plain scalars/arrays); record the node when needed."""
        # The hot path of every op, kept to plain loops and as few objects as possible: one
        # pass over the inputs, per-input work only for inputs that need a gradient, and the
        # single-output case (almost every op) without tuples around the result.
        record = state.grad_enabled and cls.differentiable
        arrays = []
        atype = parents = None
        for t in inputs:
            if isinstance(t, Tensor):
                a = t.data
                if record and t.requires_grad:
                    if parents is None:
                        parents = [None] * len(inputs)
                    node = t._node
                    parents[len(arrays)] = ((t, -1, a.shape) if node is None
                                            else (node, t._idx, a.shape))
            else:
                a = t
            ta = type(a)
            if ta is not atype:
                if ta in array_types:
                    if atype is not None:
                        _device_mismatch(cls, inputs)
                    atype = ta
                elif a is not None and not isinstance(a, _PLAIN):
                    raise TypeError(f"{cls.__name__}: unsupported input type {ta.__name__}")
            arrays.append(a)
        fn = object.__new__(cls)
        fn.saved = ()
        fn.parents = parents  # set before forward, which may read needs_input_grad
        if atype is not np.ndarray and atype is not None:
            fn.xp = array_types[atype].xp
        try:
            out = fn.forward(*arrays, **kwargs)
        except FORWARD_ERRORS as e:
            raise op_error(cls.__name__, e, arrays) from e
        if type(out) is not atype:
            if type(out) is tuple:
                return _apply_multi(fn, inputs, out, kwargs)
            out = _as_device_array(fn, out)
        if state.anomaly:
            _check_forward(fn, (out,), inputs)
        if state.collector is not None:
            _collect(inputs)
        if parents is None:
            return make_tensor(out)
        t = make_tensor(out, True, fn)
        # record the node (as `_record`, written out here: this line runs for every op)
        fn.gouts = None
        fn.freed = False
        fn.tags = state.tags
        fn.seq = _next_seq()
        if fn.saved:
            _note_saved(fn, inputs, kwargs)
        if state.recorder is not None:
            state.recorder(fn, inputs, (t,), kwargs)
        return t


def _apply_multi(fn, inputs, outs, kwargs):
    """The end of `Function.apply` for an op with several outputs."""
    outs = tuple([_as_device_array(fn, o) for o in outs])
    if state.anomaly:
        _check_forward(fn, outs, inputs)
    if state.collector is not None:
        _collect(inputs)
    if fn.parents is None:
        return tuple([make_tensor(o) for o in outs])
    fn.n_out = len(outs)
    fn.out_meta = tuple([(o.shape, o.dtype) for o in outs])
    results = tuple([make_tensor(o, True, fn, k) for k, o in enumerate(outs)])
    _record(fn, inputs, results, kwargs)
    return results


def _as_device_array(fn, out):
    """NumPy turns 0-d results into scalars: make them arrays again (in `saved` too). A result
    that is not of the inputs' array type is also where an op that wraps anything (roll,
    broadcast_to) shows that it was given no numbers at all (None): refused here, off the hot
    path."""
    a = out if type(out) in array_types else np.asarray(out)
    if a.dtype.kind not in "biufc":  # None or a string reached an op that wraps anything
        raise TypeError(f"{fn.name}: an input is not numbers (the result has dtype {a.dtype})")
    if a is out:
        return out
    if fn.saved:
        fn.saved = tuple([a if s is out else s for s in fn.saved])
    return a


def _record(fn, inputs, results, kwargs):
    """Make `fn` a node of the graph: the state backward needs, what it saved, and the memory
    tracker and viz recorder when they are active."""
    fn.gouts = None
    fn.freed = False
    fn.tags = state.tags
    fn.seq = _next_seq()
    if fn.saved:
        _note_saved(fn, inputs, kwargs)
    if state.recorder is not None:
        state.recorder(fn, inputs, results, kwargs)


def _note_saved(fn, inputs, kwargs) -> None:
    """Record (tensor, version) in `fn.checks` for every input whose array `fn` saved: backward
    refuses one that was changed in place since, and under create_graph uses the live tensor.
    A node with a composed twin keeps its inputs (to re-run it); the memory tracker counts."""
    if fn.composed is not None:
        fn.inputs = (inputs, kwargs)
    if state.tracker is not None:
        state.tracker.hold(fn, inputs)
    checks = None
    for t in inputs:
        if isinstance(t, Tensor):
            a = t.data
            for s in fn.saved:
                if s is a:
                    if checks is None:
                        checks = []
                    checks.append((t, t._version))
                    break
    if checks is not None:
        fn.checks = checks


def note_inplace(t) -> None:
    """Called by Tensor's in-place methods after bumping `t._version`.

    An output saved by the op that made it (tanh saves its result) is checked once it changes:
    recording the check at every op would cost a reference per op. The check refers to `t` from
    t's own node, a cycle that the garbage collector frees; it only exists after such a change.
    """
    node = t._node
    if node is not None and not node.freed and any(s is t.data for s in node.saved):
        node.checks = (node.checks or []) + [(t, t._version - 1)]


# what a forward may raise on bad input; anything else (MemoryError, a bug's RuntimeError,
# FloatingPointError asked for with np.errstate) passes through as it is
FORWARD_ERRORS = (ValueError, TypeError, IndexError, AttributeError, ZeroDivisionError,
                   OverflowError)


def op_error(name, e, arrays) -> Exception:
    """The error an op's forward raised, as a ValueError/TypeError naming the op and its inputs.

    Built anew rather than as `type(e)(message)`: NumPy's own classes (the ufunc loop errors)
    cannot be made from a message. Index errors become `IndexRangeError` / `IndexTypeError`
    (still IndexErrors); a non-array reaching an op (an AttributeError such as "'float' object
    has no attribute 'ndim'") is a TypeError; overflow and division by zero are ValueErrors.
    """
    shapes = ", ".join(str(tuple(a.shape)) if type(a) in array_types else type(a).__name__
                       for a in arrays)
    dtypes = ", ".join(str(a.dtype) for a in arrays if type(a) in array_types)
    inputs = f"input shapes: {shapes}; dtypes: {dtypes}"
    message = f"{name}: {e} ({inputs})"
    if isinstance(e, IndexError):
        return (IndexTypeError if isinstance(e, TypeError) else IndexRangeError)(message)
    if isinstance(e, AttributeError):
        return TypeError(f"{name}: an input is not an array ({e}) ({inputs})")
    return TypeError(message) if isinstance(e, TypeError) else ValueError(message)


def _check_forward(fn, outs, inputs):
    fn.origin = user_line()
    if not all_finite(outs):
        raise AnomalyError(_anomaly_source(fn, inputs))


def _anomaly_source(fn, inputs) -> str:
    """Where a NaN/Inf in fn's outputs came from: one of its inputs already held it (a leaf, a
    constant, or a tensor made outside anomaly mode), or fn produced it."""
    for k, t in enumerate(inputs):
        a = t.data if isinstance(t, Tensor) else t
        if type(a) in array_types and a.dtype.kind in "fc" and not all_finite((a,)):
            shape = tuple(a.shape)
            if not isinstance(t, Tensor):
                what = f"a constant array of shape {shape}"
            elif t._node is None:
                what = f"the leaf tensor {t.name + ' ' if t.name else ''}of shape {shape}"
            else:
                what = (f"a tensor of shape {shape} made by {t._node.name} outside "
                        "detect_anomaly")
            return (f"NaN/Inf came in through input {k} of {fn.name}: {what}; {fn.name} did "
                    f"not produce it (called at {fn.origin})")
    return f"{fn.name} produced NaN/Inf in forward, created at {fn.origin}"


def _collect(inputs):
    """Hand the leaves that require grad among `inputs` to the active collector (checkpoint)."""
    for t in inputs:
        if isinstance(t, Tensor) and t.requires_grad and t._node is None:
            state.collector.append(t)


def _device_mismatch(cls, inputs):
    names = sorted({device_of(t.data if isinstance(t, Tensor) else t).name for t in inputs
                    if t is not None and type(getattr(t, "data", t)) in array_types})
    raise ValueError(f"{cls.__name__}: inputs are on different devices ({' and '.join(names)}); "
                     "move them to one device with .to(device)")


# needs_input_grad of a node that is not recorded (its backward never runs; a forward may read
# it): one shared tuple instead of a new one per op, long enough for any op's inputs
_NO_GRADS = (False,) * 1024
_NO_GRADIENTS = itertools.repeat(None)  # zipped with the parents of a node no gradient reached
# what may be passed to an op besides Tensors and device arrays (tuples/lists: shapes, indices)
_PLAIN = (int, float, bool, np.generic, tuple, list)
_next_seq = itertools.count().__next__  # node numbers in creation order


class Identity(Function):
    """out = x;  gx = gout. A new node over a tensor: the place where a nested walk stops."""
    differentiable_backward = True

    def forward(self, x):
        return x

    def backward(self, gout):
        return gout


# --- the backward walk -----------------------------------------------------------------------

def run_backward(roots, seeds, *, retain_graph=False, create_graph=False, capture=None,
                 stop_at_capture=False, run_hooks=True, visit=None) -> dict | list:
    """Backpropagate from `roots` (Tensors) seeded with `seeds` (arrays, or Tensors under
    create_graph). Returns {id(leaf): [leaf, summed gradient, owned]} of the leaves reached, or
    with `capture` (Tensors) the list of gradients that reached each of them.

    `stop_at_capture`: the captured tensors' nodes do not run (a node's own backward uses this:
    the partial derivatives at its inputs, not through them). `visit(fn, gouts, gxs)` is called
    for every node run (viz.Stepper), with gradients already summed to the inputs' shapes.
    """
    graph = create_graph
    want, stops, captured = _capture_plan(capture, stop_at_capture)
    deps = count_consumers(roots, stops=stops)                      # 1. order
    leaves, ready = _seed(roots, seeds, deps, graph)                # 2. seed
    prev_grad, prev_tags, tracker, anomaly = (state.grad_enabled, state.tags, state.tracker,
                                              state.anomaly)
    state.grad_enabled = graph  # a graph-mode backward records; an array one never needs to
    try:
        while ready:                                                # 3. run each ready node
            fn = ready.pop()
            gouts = fn.gouts
            fn.gouts = None
            if want and fn in want:
                for idx, k in want[fn]:
                    captured[k] = _gouts_filled(fn, gouts, graph)[idx] if gouts else None
                if stops is not None:
                    continue
            if gouts is not None:  # else no gradient reached this node (an unused output)
                if fn.n_out > 1 or fn.out_hooks is not None or fn.checks is not None:
                    gouts = before_backward(fn, gouts, graph, run_hooks)
                gxs = backward_on_graph(fn, gouts) if graph else fn.backward(*gouts)
                if type(gxs) is not tuple:
                    gxs = (gxs,)
                if anomaly or len(gxs) != len(fn.parents):
                    _bad_backward(fn, gxs)
            else:
                gxs = None
            if visit is not None:
                gxs = [None if g is None or p is None else fit(g, p, fn)
                       for g, p in zip(gxs or _NO_GRADIENTS, fn.parents)]
                visit(fn, gouts, gxs)
            if not retain_graph:                                    # 4. free what it saved
                fn.saved = ()
                fn.freed = True
                if fn.inputs is not None:  # kept for a composed twin (create_graph) only
                    fn.inputs = None
                if tracker is not None:
                    tracker.release(fn)
            # 5. accumulate: each input's gradient goes to the node (or leaf) that made it,
            # summed back to the input's shape; a node whose consumers all sent theirs is ready
            for p, g in zip(fn.parents, gxs or _NO_GRADIENTS):
                if p is None:
                    continue
                target, idx, shape = p
                if g is not None:
                    if graph:
                        g = _as_graph_gradient(g)
                    elif type(g) not in array_types:
                        g = np.asarray(g)
                    if g.shape != shape:
                        g = fit(g, p, fn)
                    if idx < 0:
                        _add_leaf(leaves, target, g, graph)
                        continue
                    tg = target.gouts
                    if tg is None:
                        target.gouts = tg = [None] * target.n_out
                    tg[idx] = g if tg[idx] is None else tg[idx] + g
                elif idx < 0:
                    continue
                n = deps[target] - 1
                deps[target] = n
                if n == 0:
                    ready.append(target)
    finally:
        state.grad_enabled, state.tags = prev_grad, prev_tags
    if capture is None:
        return leaves
    for k, t in enumerate(capture):  # with stop_at_capture, their hooks are the outer pass's
        if t._node is None and id(t) in leaves:
            captured[k] = finish_leaf(t, leaves[id(t)], run_hooks and not stop_at_capture)
    return captured


def _capture_plan(capture, stop_at_capture):
    """For `mg.grad`: node -> [(output index, position in capture)], the nodes the walk stops
    at (stop_at_capture) or None, and the list the captured gradients go into."""
    if capture is None:
        return {}, None, []
    want = {}
    for k, t in enumerate(capture):
        if t._node is not None:
            want.setdefault(t._node, []).append((t._idx, k))
    stops = set(want) if stop_at_capture else None
    return want, stops, [None] * len(capture)


def _seed(roots, seeds, deps, graph):
    """Each root's gradient into its node's slot (or its leaf's sum); the nodes ready to run."""
    leaves, ready = {}, []
    for t, g in zip(roots, seeds):
        node = t._node
        if node is None:
            if t.requires_grad:
                _add_leaf(leaves, t, g, graph)
            continue
        gouts = node.gouts
        if gouts is None:
            node.gouts = gouts = [None] * node.n_out
        gouts[t._idx] = g if gouts[t._idx] is None else gouts[t._idx] + g
        if deps[node] == 0 and node not in ready:
            ready.append(node)
    return leaves, ready


def count_consumers(roots, freed_hint="pass retain_graph=True to the first call to keep them",
                    stops=None) -> dict:
    """node -> how many recorded consumers it has among the nodes reachable from `roots`
    (not walking past `stops`). Iterative: no recursion limit. A node whose saved arrays were
    freed raises GraphFreedError ending with `freed_hint`."""
    deps = {}
    stack = []
    for t in roots:
        node = t._node
        if node is not None and node not in deps:
            deps[node] = 0
            stack.append(node)
    while stack:
        node = stack.pop()
        if stops is not None and node in stops:
            continue
        if node.freed:
            raise GraphFreedError(f"backward through {node.name} a second time: its saved "
                                  f"arrays were freed after the first backward; {freed_hint}")
        for p in node.parents:
            if p is not None and p[1] >= 0:
                parent = p[0]
                if parent in deps:
                    deps[parent] += 1
                else:
                    deps[parent] = 1
                    stack.append(parent)
    return deps


def _gouts_filled(fn, gouts, graph):
    """Outputs nobody used get zero gradients (several-output ops only)."""
    if fn.n_out > 1:
        for k, (shape, dtype) in enumerate(fn.out_meta):
            if gouts[k] is None:
                z = fn.xp.zeros(shape, dtype)
                gouts[k] = make_tensor(z) if graph else z
    return gouts


def before_backward(fn, gouts, graph, run_hooks):
    """The rarer chores before a node's backward: zero gradients for outputs nobody used, hooks on
    its outputs, and the check that nothing it saved was changed in place since."""
    if fn.n_out > 1:
        gouts = _gouts_filled(fn, gouts, graph)
    if run_hooks and fn.out_hooks is not None:
        for k, hooks in fn.out_hooks.items():
            gouts[k] = _run_hooks(hooks, gouts[k], graph)
    if fn.checks is not None:
        check_versions(fn)
    return gouts


def backward_on_graph(fn, gouts):
    """fn's gradients as Tensors with a graph (create_graph): its own formula on Tensors, or the
    gradients of its composed twin, or an error naming the op."""
    if fn.differentiable_backward:
        return _backward_on_tensors(fn, gouts)
    if fn.composed is not None and fn.inputs is not None:
        return _backward_of_composed(fn, gouts)
    raise RuntimeError(
        f"{fn.name}: create_graph=True needs the gradient of its backward, which works on "
        "arrays only; declare `differentiable_backward = True` if backward uses only what "
        "Tensors and arrays share, or a `composed` staticmethod that the engine can re-run")


def _bad_backward(fn, gxs):
    if len(gxs) != len(fn.parents):
        raise RuntimeError(f"{fn.name}.backward returned {len(gxs)} gradients for "
                           f"{len(fn.parents)} inputs")
    if not all_finite([getattr(g, "data", g) for g in gxs]):
        raise AnomalyError(f"{fn.name} produced NaN/Inf in backward, created at {fn.origin}")


def _backward_on_tensors(fn, gouts):
    """Run fn's own backward formula on Tensors, so that what it computes is recorded: the saved
    inputs and outputs as the live tensors (second derivatives flow through them), everything
    else it saved as constants, and `xp` as the same array API on Tensors."""
    arrays, had_xp = fn.saved, "xp" in fn.__dict__
    xp = fn.xp
    live = list(arrays)
    for j, s in enumerate(arrays):
        for t, _ in fn.checks or ():
            if t.data is s:
                live[j] = t
                break
    for j, k in fn.saved_outputs:
        live[j] = make_tensor(arrays[j], True, fn, k)
    order = dict(fn.tags).get("grad", 0) + 1
    state.tags = tuple(t for t in fn.tags if t[0] != "grad") + (("grad", order),)
    fn.saved = tuple(live)
    if fn.tensor_xp is not None:
        fn.xp = fn.tensor_xp(xp)
    try:
        gxs = fn.backward(*[g if isinstance(g, Tensor) else make_tensor(g) for g in gouts])
    finally:
        fn.saved = arrays
        if had_xp:
            fn.xp = xp
        elif "xp" in fn.__dict__:
            del fn.xp
    return gxs


def _backward_of_composed(fn, gouts):
    """fn's gradients from its composed twin: re-run it on (aliases of) fn's inputs, then walk
    its graph back to those aliases with create_graph. Costs one composed forward and backward."""
    inputs, kwargs = fn.inputs
    aliases = [Identity.apply(t) if isinstance(t, Tensor) and t.requires_grad else t
               for t in inputs]
    order = dict(fn.tags).get("grad", 0) + 1
    state.tags = tuple(t for t in fn.tags if t[0] != "grad") + (("grad", order),)
    outs = fn.composed(*aliases, **kwargs)
    outs = outs if isinstance(outs, tuple) else (outs,)
    live = [(o, g) for o, g in zip(outs, gouts) if g is not None and o.requires_grad]
    wrt = [a for a, p in zip(aliases, fn.parents) if p is not None]
    got = run_backward([o for o, _ in live], [g for _, g in live], retain_graph=True,
                       create_graph=True, capture=wrt, stop_at_capture=True)
    got = iter(got)
    return tuple([next(got) if p is not None else None for p in fn.parents])


def check_versions(fn):
    for t, version in fn.checks:
        if t._version != version:
            raise RuntimeError(
                f"{fn.name}: a tensor of shape {t.shape} saved for backward was modified in place "
                f"after the forward pass (version {t._version}, expected {version}); "
                "use an out-of-place op instead")


def fit(g, parent, fn):
    """`g` summed back to the input's shape (the one place broadcasting is undone)."""
    shape = parent[2]
    if g.shape == shape:
        return g
    tail = g.shape[g.ndim - len(shape):] if len(shape) <= g.ndim else None
    if tail is None or not all(n in (1, m) for n, m in zip(shape, tail)):
        raise RuntimeError(f"{fn.name}.backward returned a gradient of shape {tuple(g.shape)} "
                           f"for input {fn.parents.index(parent)} of shape {shape}")
    return unbroadcast(g, shape)


def unbroadcast(g, shape):
    """Sum a gradient `g` back to `shape` (the inverse of NumPy broadcasting)."""
    if g.shape == shape:
        return g
    extra = g.ndim - len(shape)
    axes = tuple(range(extra)) + tuple(
        i + extra for i, n in enumerate(shape) if n == 1 and g.shape[i + extra] != 1)
    if axes:
        g = g.sum(axis=axes, keepdims=True)
    if extra:
        g = g.reshape(shape)
    return g


def _as_graph_gradient(g):
    """A gradient under create_graph is a Tensor (a constant one when backward gave an array)."""
    if isinstance(g, Tensor):
        return g
    return make_tensor(g if type(g) in array_types else np.asarray(g))


def _add_leaf(leaves, leaf, g, graph):
    """Sum `g` into the leaf's gradient of this pass. The first gradient may be shared with other
    nodes (Add passes one array to both inputs), so the first sum is a new array; later ones add
    into it in place (arrays only): a weight used at every step is not reallocated per step."""
    entry = leaves.get(id(leaf))
    if entry is None:
        leaves[id(leaf)] = [leaf, g, False]
    elif entry[2] and entry[1].dtype == g.dtype and entry[1].shape == g.shape:
        entry[1] += g
    else:
        entry[1] = entry[1] + g
        entry[2] = not graph


def finish_leaf(leaf, entry, run_hooks=True):
    """The leaf's gradient of this pass, cast to its dtype, after its hooks."""
    _, g, owned = entry
    if g.dtype != leaf.data.dtype:  # a float32 leaf used with float64 data: float32 grad
        g = g.astype(leaf.data.dtype)
        owned = True
    if run_hooks and leaf._hooks:
        g = _run_hooks(leaf._hooks, g, isinstance(g, Tensor))
        owned = False
    entry[1], entry[2] = g, owned
    return g


def finish_leaves(leaves) -> None:
    """Accumulate each leaf's gradient of this pass into its `.grad` (after its hooks)."""
    for entry in leaves.values():
        leaf = entry[0]
        g = finish_leaf(leaf, entry)
        if isinstance(g, Tensor):  # create_graph: .grad keeps the gradient's graph
            leaf.grad = g if leaf.grad is None else leaf.grad + g
        elif leaf.grad is None:
            # a gradient an op passed on may be shared with other nodes: .grad gets its own copy
            leaf.grad = make_tensor(g if entry[2] else g.copy())
        else:
            leaf.grad.data = leaf.grad.data + g


def _run_hooks(hooks, g, graph):
    for hook in hooks:
        r = hook(g if graph else make_tensor(g))
        if r is None:
            continue
        if graph and g.requires_grad and not getattr(r, "requires_grad", False):
            # a hook that rebuilt the gradient from its array would cut the recorded backward:
            # second derivatives through it would silently miss its part
            raise RuntimeError(
                f"hook {getattr(hook, '__qualname__', hook)!r} returned a gradient without a "
                "graph during a create_graph=True backward; compute it from the gradient "
                "Tensor with minigrad ops (not from its .data) so it can be differentiated")
        g = r if graph else (r.data if isinstance(r, Tensor) else r)
    return g
