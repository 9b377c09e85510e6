"""Entry points to the backward walk: `grad` (gradients of outputs with respect to chosen inputs,
without touching `.grad`) and `backward` (several outputs in one pass), then the functional
transforms built on them: `vjp`, `jvp`, `jacobian`, `hessian`, `hvp`.

Costs, for f: R^n -> R^m whose forward pass costs one F: a `vjp` is one forward and one backward
(about 2-3 F); a `jvp` two backward passes, the second through the first (double-vjp trick, about
4-6 F, no forward mode needed); `jacobian` m backward passes (one per output element); `hvp` of a
scalar f one forward, one recorded backward and one backward through it (about 4-6 F, never
forming the Hessian); `hessian` n backward passes through that recorded gradient.
"""
from __future__ import annotations

import numpy as np

from minigrad import backend, engine
from minigrad.engine import make_tensor
from minigrad.tensor import Tensor, seed_grad


def grad(outputs, inputs, grad_outputs=None, retain_graph=None, create_graph=False,
         allow_unused=False):
    """Return d(sum of outputs * grad_outputs)/d(input) for each input, as Tensors.

    `outputs` and `inputs` are Tensors or sequences of them; a single-element output needs no
    `grad_outputs`. Leaves' `.grad` are left as they were. An input the outputs do not depend on
    raises ValueError, or gives None with `allow_unused=True`. With `create_graph=True` the
    backward pass is recorded: the results have a graph and can be differentiated again (the
    forward graph is then kept: `retain_graph` defaults to `create_graph`).

    >>> import minigrad as mg
    >>> x = mg.tensor(2.0, dtype="float64", requires_grad=True)
    >>> (dx,) = mg.grad(x ** 3, [x], create_graph=True)     # 3 x^2
    >>> mg.grad(dx, x)                                        # 6 x
    tensor(12., dtype=float64)
    """
    single = isinstance(inputs, Tensor)
    outputs, grad_outputs = roots_and_grads("grad", outputs, grad_outputs)
    inputs = [inputs] if single else list(inputs)
    for t in outputs + inputs:
        if not isinstance(t, Tensor):
            raise TypeError(f"grad: expected Tensors, got {type(t).__name__}")
    for k, t in enumerate(inputs):
        if not t.requires_grad:
            raise ValueError(f"grad: input {k} (shape {t.shape}) does not require grad")
    seeds = [seed_grad(o, g, "grad", create_graph) for o, g in zip(outputs, grad_outputs)]
    live = [(o, s) for o, s in zip(outputs, seeds) if o.requires_grad]
    keep = create_graph if retain_graph is None else retain_graph
    got = engine.run_backward([o for o, _ in live], [s for _, s in live], retain_graph=keep,
                              create_graph=create_graph, capture=inputs)
    result = []
    for k, g in enumerate(got):
        if g is None and not allow_unused:
            raise ValueError(f"grad: input {k} (shape {inputs[k].shape}) was not used to compute "
                             "the outputs; pass allow_unused=True to get None for it")
        result.append(g if g is None or isinstance(g, Tensor) else make_tensor(g))
    return result[0] if single else tuple(result)


def backward(tensors, grad_tensors=None, retain_graph=None, create_graph=False) -> None:
    """Backpropagate from several outputs in one pass, accumulating into every leaf's `.grad`.

    Computes d(sum_i <tensors[i], grad_tensors[i]>)/d(leaf): shared parts of the graph are
    walked once (unlike calling `.backward()` on each output, which also needs retain_graph).
    A single-element output needs no gradient.

    >>> import minigrad as mg
    >>> x = mg.tensor([1.0, 2.0], requires_grad=True)
    >>> mg.autograd.backward([(x * x).sum(), (3 * x).sum()])
    >>> x.grad
    tensor([5., 7.], dtype=float32)
    """
    tensors, grad_tensors = roots_and_grads("backward", tensors, grad_tensors,
                                            ("tensors", "grad_tensors"))
    for k, t in enumerate(tensors):
        if not isinstance(t, Tensor):
            raise TypeError(f"backward: tensor {k} is a {type(t).__name__}, expected a Tensor")
        if not t.requires_grad:
            raise RuntimeError(f"backward: tensor {k} (shape {t.shape}) does not require grad")
    seeds = [seed_grad(t, g, "backward", create_graph) for t, g in zip(tensors, grad_tensors)]
    keep = create_graph if retain_graph is None else retain_graph
    engine.finish_leaves(engine.run_backward(tensors, seeds, retain_graph=keep,
                                             create_graph=create_graph))


def roots_and_grads(op, outputs, grads, names=("outputs", "grad_outputs")):
    """`outputs` (a Tensor or a sequence) as a list, with their seed gradients as a list of the
    same length (None: implicit, for a single-element output); ValueError naming `op` if the
    counts differ."""
    outputs = [outputs] if isinstance(outputs, Tensor) else list(outputs)
    if grads is None:
        grads = [None] * len(outputs)
    elif isinstance(grads, Tensor):
        grads = [grads]
    if len(grads) != len(outputs):
        raise ValueError(f"{op}: {len(outputs)} {names[0]} but {len(grads)} {names[1]}")
    return outputs, grads


# --- functional transforms ---------------------------------------------------------------------

def _inputs(op, inputs, f):
    """`inputs` (a Tensor or a sequence) as fresh leaves requiring grad, and whether it was one;
    `f`, the function to differentiate, must be callable."""
    if not callable(f):
        raise TypeError(f"{op}: f must be callable, got {type(f).__name__}")
    single = isinstance(inputs, Tensor)
    if not single and not isinstance(inputs, (list, tuple)):
        raise TypeError(f"{op}: inputs must be a Tensor or a list/tuple of Tensors, got "
                        f"{type(inputs).__name__}")
    xs = [inputs] if single else list(inputs)
    for k, x in enumerate(xs):
        if not isinstance(x, Tensor):
            raise TypeError(f"{op}: input {k} is a {type(x).__name__}, expected a Tensor")
        if x.dtype.kind != "f":
            raise TypeError(f"{op}: input {k} has dtype {x.dtype}; it must be a float tensor")
    return [make_tensor(x.data, True) for x in xs], single


def _outputs(op, out):
    outs = [out] if isinstance(out, Tensor) else list(out)
    for k, o in enumerate(outs):
        if not isinstance(o, Tensor):
            raise TypeError(f"{op}: f returned a {type(o).__name__} as output {k}, "
                            "expected Tensors")
    return outs


def _grads(outs, xs, vs, create_graph):
    """d<outs, vs>/d xs, zeros (not None) for inputs the outputs do not use."""
    live = [(o, v) for o, v in zip(outs, vs) if o.requires_grad]
    if not live:
        return [make_tensor(x.data * 0) for x in xs]
    got = grad([o for o, _ in live], xs, [v for _, v in live], retain_graph=True,
               create_graph=create_graph, allow_unused=True)
    return [make_tensor(x.data * 0) if g is None else g for g, x in zip(got, xs)]


def vjp(f, inputs, v=None, create_graph=False):
    """(f(inputs), v^T J): the outputs and the vector-Jacobian product, one gradient per input.

    `v` has the outputs' shapes (optional for a single-element output). Cost: one forward and
    one backward pass.

    >>> import minigrad as mg
    >>> x = mg.tensor([1.0, 2.0], dtype="float64")
    >>> out, (g,) = mg.vjp(lambda x: x * x, [x], [mg.ones(2, dtype="float64")])
    >>> g
    tensor([2., 4.], dtype=float64)
    """
    xs, single = _inputs("vjp", inputs, f)
    outs = _outputs("vjp", f(*xs))
    vs = roots_and_grads("vjp", outs, v, ("outputs", "v"))[1]
    vs = [seed_grad(o, g, "vjp", True) for o, g in zip(outs, vs)]
    gs = _grads(outs, xs, vs, create_graph)
    outs = outs if create_graph else [o.detach() for o in outs]
    out = outs[0] if len(outs) == 1 else tuple(outs)
    return out, (gs[0] if single else tuple(gs))


def jvp(f, inputs, v):
    """(f(inputs), J v): the outputs and the Jacobian-vector product (forward-mode derivative in
    direction `v`, one tensor per input), by the double-vjp trick: g(u) = u^T J is linear in u,
    so J v = d<g(u), v>/du. Cost: one forward and two backward passes, the second through the
    recorded first.

    >>> import minigrad as mg
    >>> x = mg.tensor([1.0, 2.0], dtype="float64")
    >>> out, jv = mg.jvp(lambda x: x * x, [x], [mg.ones(2, dtype="float64")])
    >>> jv
    tensor([2., 4.], dtype=float64)
    """
    xs, single = _inputs("jvp", inputs, f)
    vs = [v] if isinstance(v, Tensor) else list(v)
    if len(vs) != len(xs):
        raise ValueError(f"jvp: {len(xs)} inputs but {len(vs)} directions v")
    outs = _outputs("jvp", f(*xs))
    us = [make_tensor(o.data * 0, True) for o in outs]  # dummy cotangents: g is linear in them
    gs = _grads(outs, xs, us, create_graph=True)
    live = [(g, seed_grad(x, w, "jvp")) for g, x, w in zip(gs, xs, vs) if g.requires_grad]
    if live:
        got = grad([g for g, _ in live], us, [w for _, w in live], allow_unused=True)
    else:
        got = [None] * len(us)
    jv = [make_tensor(o.data * 0) if j is None else j for j, o in zip(got, outs)]
    out = outs[0].detach() if len(outs) == 1 else tuple(o.detach() for o in outs)
    return out, (jv[0] if len(jv) == 1 else tuple(jv))


def jacobian(f, inputs):
    """d f / d inputs: for one output of shape O and one input of shape I, an array-backed Tensor
    of shape O + I (a tuple over inputs, or outputs, when there are several). Cost: one forward
    and one backward pass per output element.

    >>> import minigrad as mg
    >>> x = mg.tensor([1.0, 2.0], dtype="float64")
    >>> mg.jacobian(lambda x: x * x, x)
    tensor([[2., 0.],
            [0., 4.]], dtype=float64)
    """
    xs, single = _inputs("jacobian", inputs, f)
    outs = _outputs("jacobian", f(*xs))
    result = []
    for o in outs:
        rows = []
        for k in range(o.size):
            e = np.zeros(o.size, o.dtype)
            e[k] = 1
            e = backend.to_device(e.reshape(o.shape), o.device)
            rows.append([g.data for g in _grads([o], xs, [make_tensor(e)], False)])
        per_input = []
        for i, x in enumerate(xs):
            xp = backend.get_array_module(x.data)
            stacked = xp.stack([r[i] for r in rows]) if rows else xp.zeros((0,) + x.shape)
            per_input.append(make_tensor(stacked.reshape(o.shape + x.shape)))
        result.append(per_input[0] if single else tuple(per_input))
    return result[0] if len(result) == 1 else tuple(result)


def hvp(f, inputs, v):
    """(f(inputs), H v) for a scalar f: the Hessian-vector product, one tensor per input, as the
    gradient of <grad f, v> (a backward through the recorded backward). The Hessian is never
    formed. Cost: one forward, one recorded backward, one backward through both.

    >>> import minigrad as mg
    >>> x = mg.tensor([1.0, 2.0], dtype="float64")
    >>> out, hv = mg.hvp(lambda x: (x ** 3).sum(), [x], [mg.ones(2, dtype="float64")])
    >>> hv                                              # 6 x * v
    (tensor([ 6., 12.], dtype=float64),)
    """
    xs, single = _inputs("hvp", inputs, f)
    vs = [v] if isinstance(v, Tensor) else list(v)
    if len(vs) != len(xs):
        raise ValueError(f"hvp: {len(xs)} inputs but {len(vs)} vectors v")
    for x, w in zip(xs, vs):  # checked even where f is linear in x (then v is never used)
        seed_grad(x, w, "hvp")
    out = f(*xs)
    if not isinstance(out, Tensor) or out.size != 1:
        raise ValueError(f"hvp: f must return a single-element Tensor, got "
                         f"{getattr(out, 'shape', type(out).__name__)}")
    gs = _grads([out], xs, [None], create_graph=True)
    live = [(g, seed_grad(x, w, "hvp")) for g, x, w in zip(gs, xs, vs) if g.requires_grad]
    zeros = [make_tensor(x.data * 0) for x in xs]
    if not live:
        return out.detach(), (zeros[0] if single else tuple(zeros))
    got = grad([g for g, _ in live], xs, [w for _, w in live], allow_unused=True)
    hv = [z if g is None else g for g, z in zip(got, zeros)]
    return out.detach(), (hv[0] if single else tuple(hv))


def hessian(f, inputs):
    """d^2 f / d inputs^2 of a scalar f: for one input of shape I a Tensor of shape I + I (for
    several, a tuple of tuples of blocks I_i + I_j). Cost: one recorded backward, then one backward
    through it per input element.

    >>> import minigrad as mg
    >>> x = mg.tensor([1.0, 2.0], dtype="float64")
    >>> mg.hessian(lambda x: (x ** 3).sum(), x)
    tensor([[ 6.,  0.],
            [ 0., 12.]], dtype=float64)
    """
    xs, single = _inputs("hessian", inputs, f)
    out = f(*xs)
    if not isinstance(out, Tensor) or out.size != 1:
        raise ValueError(f"hessian: f must return a single-element Tensor, got "
                         f"{getattr(out, 'shape', type(out).__name__)}")
    gs = _grads([out], xs, [None], create_graph=True)
    blocks = []
    for g, xi in zip(gs, xs):
        rows = []
        for k in range(g.size):
            e = np.zeros(g.size, g.dtype)
            e[k] = 1
            if g.requires_grad:
                e = make_tensor(backend.to_device(e.reshape(g.shape), g.device))
                rows.append([h.data for h in _grads([g], xs, [e], False)])
            else:
                rows.append([x.data * 0 for x in xs])
        xp = backend.get_array_module(xi.data)
        blocks.append(tuple(
            make_tensor(xp.stack([r[j] for r in rows]).reshape(xi.shape + xj.shape)
                        if rows else xp.zeros(xi.shape + xj.shape, xi.dtype))
            for j, xj in enumerate(xs)))
    return blocks[0][0] if single else tuple(blocks)
