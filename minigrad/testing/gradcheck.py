"""Gradient checking against central finite differences, for users' ops and cells and our own.

The default check is directional: for random unit directions `u` (inputs) and `v` (outputs) it
compares `v . J u` from backward with `(v . f(x + eps u) - v . f(x - eps u)) / (2 eps)`. Its cost
is two forward passes and one backward per direction, whatever the input size. The elementwise
mode perturbs every input element and reports the worst index with both values.
"""
from __future__ import annotations

import numpy as np

from minigrad import backend, checks
from minigrad.autograd import grad as _grad
from minigrad.modes import enable_grad, no_grad
from minigrad.tensor import Tensor


class GradcheckError(AssertionError):
    """Analytic and numerical gradients disagree."""


def _outputs(fn, inputs):
    out = fn(*inputs)
    outs = out if isinstance(out, (tuple, list)) else (out,)
    outs = tuple(o for o in outs if isinstance(o, Tensor))
    if not outs:
        raise TypeError(f"gradcheck: {_name(fn)} returned no Tensor")
    return outs


def _name(fn):
    return getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or repr(fn)


def _host(a):
    return np.asarray(backend.to_host(a), dtype=np.float64)


def gradcheck(fn, inputs, *, eps=1e-6, atol=1e-6, rtol=1e-4, mode="directional",
              n_directions=2, seed=0) -> bool:
    """Check the gradients of `fn(*inputs)` for every input Tensor that requires grad.

    `inputs` should be float64 Tensors (others are passed through unchanged). `fn` may return a
    Tensor or a tuple of Tensors. Raises `GradcheckError` naming the function, shapes and seed;
    returns True when the check passes.

    >>> import minigrad as mg
    >>> x = mg.tensor([0.3, -1.2], dtype="float64", requires_grad=True)
    >>> gradcheck(lambda x: mg.tanh(x) * x, [x])
    True
    """
    return _check("gradcheck", fn, inputs, eps=eps, atol=atol, rtol=rtol, mode=mode,
                  n_directions=n_directions, seed=seed)


def _check(what, fn, inputs, *, eps, atol, rtol, mode, n_directions, seed) -> bool:
    """gradcheck's work; `what` names the check in its errors (gradcheck, gradgradcheck)."""
    if mode not in ("directional", "elementwise"):
        raise ValueError(f"gradcheck: mode must be 'directional' or 'elementwise', got {mode!r}")
    eps = checks.real(eps, "gradcheck", "eps", low=0, low_open=True)
    atol = checks.real(atol, "gradcheck", "atol", low=0)
    rtol = checks.real(rtol, "gradcheck", "rtol", low=0)
    n_directions = checks.integer(n_directions, "gradcheck", "n_directions", low=1)
    if not callable(fn):
        raise TypeError(f"gradcheck: fn must be callable, got {type(fn).__name__}")
    if isinstance(inputs, Tensor):
        raise TypeError("gradcheck: inputs must be a list of Tensors, got a single Tensor; "
                        "wrap it in a list")
    inputs = list(inputs)
    checked = [i for i, t in enumerate(inputs) if isinstance(t, Tensor) and t.requires_grad]
    if not checked:
        raise ValueError("gradcheck: no input Tensor has requires_grad=True")
    for i in checked:
        if inputs[i].dtype != np.float64:
            raise TypeError(f"gradcheck: input {i} is {inputs[i].dtype}; finite differences need "
                            "float64 (make the inputs with dtype='float64')")
    rng = np.random.default_rng(seed)
    outs = _outputs(fn, inputs)
    shapes = ", ".join(str(inputs[i].shape) for i in checked)
    where = f"{_name(fn)} with input shapes [{shapes}], seed {seed}"

    def loss_with(v, values):
        """v . f(inputs with `values` substituted for the checked ones) (no graph)."""
        saved = [inputs[i].data for i in checked]
        try:
            for i, val in zip(checked, values):
                inputs[i].data = val
            with no_grad():
                o = _outputs(fn, inputs)
            return sum(float((_host(a.data) * b).sum()) for a, b in zip(o, v))
        finally:
            for i, val in zip(checked, saved):
                inputs[i].data = val

    for d in range(n_directions if mode == "directional" else 1):
        v = [rng.standard_normal(o.shape) for o in outs]
        gouts = [Tensor(backend.to_device(vi.astype(o.dtype), o.device)) for vi, o in zip(v, outs)]
        live = [(o, g) for o, g in zip(outs, gouts) if o.requires_grad]
        if not live:
            raise GradcheckError(f"gradcheck: no output of {where} requires grad")
        grads = _grad([o for o, _ in live], [inputs[i] for i in checked],
                      grad_outputs=[g for _, g in live], retain_graph=True, allow_unused=True)
        analytic = []
        for i, g in zip(checked, grads):
            if g is None:
                analytic.append(np.zeros(inputs[i].shape))
                continue
            if g.shape != inputs[i].shape:
                raise GradcheckError(f"gradcheck: gradient of input {i} has shape {g.shape}, "
                                     f"expected {inputs[i].shape} ({where})")
            analytic.append(_host(g.data))
        base = [inputs[i].data for i in checked]
        if mode == "directional":
            us = [rng.standard_normal(inputs[i].shape) for i in checked]
            norm = np.sqrt(sum(float((u * u).sum()) for u in us)) or 1.0
            us = [u / norm for u in us]
            plus = [b + backend.to_device(u, inputs[i].device) * eps
                    for i, b, u in zip(checked, base, us)]
            minus = [b - backend.to_device(u, inputs[i].device) * eps
                     for i, b, u in zip(checked, base, us)]
            numeric = (loss_with(v, plus) - loss_with(v, minus)) / (2 * eps)
            exact = sum(float((a * u).sum()) for a, u in zip(analytic, us))
            if not abs(exact - numeric) <= atol + rtol * abs(numeric):
                raise GradcheckError(
                    f"{what} failed for {where}, direction {d}: backward gives "
                    f"{exact:.10g}, finite differences give {numeric:.10g} "
                    f"(difference {abs(exact - numeric):.3g})")
        else:
            worst = (0.0, None)
            for k, i in enumerate(checked):
                flat = _host(base[k]).ravel()
                for j in range(flat.size):
                    vals_p, vals_m = list(base), list(base)
                    p, m = flat.copy(), flat.copy()
                    p[j] += eps
                    m[j] -= eps
                    vals_p[k] = backend.to_device(p.reshape(base[k].shape), inputs[i].device)
                    vals_m[k] = backend.to_device(m.reshape(base[k].shape), inputs[i].device)
                    numeric = (loss_with(v, vals_p) - loss_with(v, vals_m)) / (2 * eps)
                    exact = analytic[k].ravel()[j]
                    err = abs(exact - numeric) - (atol + rtol * abs(numeric))
                    if err > worst[0]:
                        idx = np.unravel_index(j, inputs[i].shape)
                        worst = (err, (i, tuple(int(t) for t in idx), exact, numeric))
            if worst[1] is not None:
                i, idx, exact, numeric = worst[1]
                raise GradcheckError(
                    f"{what} failed for {where}: worst at input {i}, index {idx}: backward "
                    f"gives {exact:.10g}, finite differences give {numeric:.10g}")
    return True


def gradgradcheck(fn, inputs, *, eps=1e-6, atol=1e-5, rtol=1e-4, mode="directional",
                  n_directions=2, seed=0) -> bool:
    """Check the second derivatives of `fn(*inputs)`: the gradients that `create_graph=True`
    records, differentiated again, against finite differences of first-order gradients.

    The function checked is G(inputs, v) = d<fn(inputs), v>/d(inputs) for cotangents `v` drawn
    from `seed` (float64 tensors requiring grad, one per output that requires grad): its backward
    is the second-order backward of `fn` (through the inputs and through v), its values come from
    ordinary backward passes. Directional by default, like `gradcheck`, whose options it takes;
    the error names `fn`, the shapes and the seed.

    >>> import minigrad as mg
    >>> x = mg.tensor([0.3, -1.2], dtype="float64", requires_grad=True)
    >>> gradgradcheck(lambda x: mg.tanh(x) * x, [x])
    True
    """
    inputs = list(inputs)
    checked = [i for i, t in enumerate(inputs) if isinstance(t, Tensor) and t.requires_grad]
    if not checked:
        raise ValueError("gradgradcheck: no input Tensor has requires_grad=True")
    rng = np.random.default_rng(seed + 1)
    live = [k for k, o in enumerate(_outputs(fn, inputs)) if o.requires_grad]
    outs = _outputs(fn, inputs)
    vs = [Tensor(rng.standard_normal(outs[k].shape), dtype=np.float64, device=outs[k].device,
                 requires_grad=True) for k in live]

    def first_gradients(*args):
        xs, v = list(args[:len(inputs)]), args[len(inputs):]
        with enable_grad():
            o = _outputs(fn, xs)
            got = _grad([o[k] for k in live], [xs[i] for i in checked], list(v),
                        create_graph=True, allow_unused=True)
        return tuple(Tensor(backend.get_array_module(xs[i].data).zeros(xs[i].shape))
                     if g is None else g for i, g in zip(checked, got))

    first_gradients.__qualname__ = f"the gradients of {_name(fn)}"
    return _check("gradgradcheck", first_gradients, inputs + vs, eps=eps, atol=atol, rtol=rtol,
                  mode=mode, n_directions=n_directions, seed=seed)
