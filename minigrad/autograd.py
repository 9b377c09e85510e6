"""`mg.grad` (gradients of outputs with respect to chosen inputs, without touching `.grad`) and
`mg.backward` (backpropagate from several outputs in one pass)."""
from __future__ import annotations

from minigrad.engine import run_backward
from minigrad.tensor import Tensor, _seed_grad


def grad(outputs, inputs, grad_outputs=None, retain_graph=False, allow_unused=False):
    """Return d(sum of outputs * grad_outputs)/d(input) for each input, as Tensors.

    `outputs` and `inputs` are Tensors or sequences of them; a scalar output needs no
    `grad_outputs`. Leaves' `.grad` are left as they were. An input the outputs do not depend on
    raises ValueError, or gives None with `allow_unused=True`.
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
    seeds = [_seed_grad(o, g, "grad") for o, g in zip(outputs, grad_outputs)]
    roots = [o for o in outputs if o.requires_grad]
    seeds = [s for o, s in zip(outputs, seeds) if o.requires_grad]
    got = run_backward(roots, seeds, retain_graph, capture=inputs)
    result = []
    for k, g in enumerate(got):
        if g is None and not allow_unused:
            raise ValueError(f"grad: input {k} (shape {inputs[k].shape}) was not used to compute "
                             "the outputs; pass allow_unused=True to get None for it")
        result.append(None if g is None else Tensor._wrap(g))
    return result[0] if single else tuple(result)


def backward(tensors, grad_tensors=None, retain_graph=False) -> None:
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
    seeds = [_seed_grad(t, g, "backward") for t, g in zip(tensors, grad_tensors)]
    run_backward(tensors, seeds, retain_graph)


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
