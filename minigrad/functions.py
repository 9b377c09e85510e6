"""The functions users call (`mg.exp(x)`, `mg.cross_entropy(...)`, `mg.tensor(...)`): each
applies a primitive of `minigrad.ops` or composes a few, and documents the maths.
"""
from __future__ import annotations

import builtins
import numbers

import numpy as np

from minigrad import backend, checks, engine, random
from minigrad.backend import get_default_dtype, set_default_dtype
from minigrad.engine import make_tensor
from minigrad.ops import (Abs, Add, AsType, BCEWithLogits, BroadcastTo, Clip, Concat, CrossEntropy,
                          Div, Dropout, Elu, Embedding, Exp, Flip, Gather, GetItem, LeakyRelu, Log,
                          LogSoftmax, LogSumExp, MatMul, Max, Maximum, Mean, Min, Minimum, Mul,
                          Neg, Pad, Pow, Relu, Reshape, Roll, Sigmoid, Softmax, Softplus, Split,
                          Sqrt, Stack, Sub, Sum, Take, Tanh, Transpose, Unstack, Where)

__all__ = ["get_default_dtype", "set_default_dtype"]  # re-exported from backend


# --- making tensors ------------------------------------------------------------------------------

def tensor(data, requires_grad=False, dtype=None, device=None, name=None):
    """A new leaf tensor. Arrays keep their dtype; Python ints (and lists of them) give int64,
    Python floats float32 (the default dtype), bools bool, as in NumPy and PyTorch.

    >>> x = tensor([[1., 2.], [3., 4.]], requires_grad=True)
    >>> tensor([0, 1]).dtype
    dtype('int64')
    """
    return engine.Tensor(data, requires_grad=requires_grad, dtype=dtype, device=device, name=name)


def _filled(fill, shape, dtype, device, requires_grad, where):
    dtype = checks.dtype(dtype, where) if dtype is not None else get_default_dtype()
    if not isinstance(fill, (numbers.Number, np.generic)):
        raise TypeError(f"{where}: fill_value must be a number, got {type(fill).__name__} "
                        f"{fill!r}")
    xp = backend.get_device(device, where).xp
    try:
        arr = xp.full(shape, fill, dtype=dtype)
    except (OverflowError, ValueError, TypeError) as e:
        raise ValueError(f"{where}: cannot fill a {dtype} tensor with {fill!r}: {e}") from None
    return engine.Tensor(arr, requires_grad=checks.boolean(requires_grad, where, "requires_grad"))


def zeros(*shape, dtype=None, device=None, requires_grad=False):
    return _filled(0, _shape_arg(shape, "zeros"), dtype, device, requires_grad, "zeros")


def ones(*shape, dtype=None, device=None, requires_grad=False):
    return _filled(1, _shape_arg(shape, "ones"), dtype, device, requires_grad, "ones")


def full(shape, fill_value, dtype=None, device=None, requires_grad=False):
    return _filled(fill_value, _shape_arg((shape,), "full"), dtype, device, requires_grad, "full")


def zeros_like(t, dtype=None, requires_grad=False):
    t = _tensor(t, "zeros_like", "t")
    return _filled(0, t.shape, dtype or t.dtype, t.device, requires_grad, "zeros_like")


def ones_like(t, dtype=None, requires_grad=False):
    t = _tensor(t, "ones_like", "t")
    return _filled(1, t.shape, dtype or t.dtype, t.device, requires_grad, "ones_like")


def arange(start, stop=None, step=1, dtype=None, device=None, requires_grad=False):
    """Evenly spaced values in [start, stop) in the default float dtype unless `dtype` says."""
    if stop is None:
        start, stop = 0, start
    start, stop = checks.real(start, "arange", "start"), checks.real(stop, "arange", "stop")
    if checks.real(step, "arange", "step") == 0:
        raise ValueError("arange: step must not be 0")
    dtype = checks.dtype(dtype, "arange") if dtype is not None else get_default_dtype()
    if builtins.abs(stop - start) / builtins.abs(step) > 2 ** 40:
        raise ValueError(f"arange: [{start}, {stop}) in steps of {step} is too many values")
    device = backend.get_device(device, "arange")
    arr = np.arange(start, stop, step, dtype=dtype)
    return engine.Tensor(arr, requires_grad=requires_grad, device=device)


def randn(*shape, rng=None, dtype=None, device=None, requires_grad=False):
    """Standard normal samples from `rng` (a numpy Generator or a seed; default: mg.random)."""
    shape, device = _shape_arg(shape, "randn"), backend.get_device(device, "randn")
    dtype = checks.dtype(dtype, "randn", kinds="f") if dtype is not None else get_default_dtype()
    arr = _generator(rng, "randn").standard_normal(shape).astype(dtype)
    return engine.Tensor(arr, requires_grad=requires_grad, device=device)


def rand(*shape, rng=None, dtype=None, device=None, requires_grad=False):
    """Uniform [0, 1) samples from `rng` (a numpy Generator or a seed; default: mg.random)."""
    shape, device = _shape_arg(shape, "rand"), backend.get_device(device, "rand")
    dtype = checks.dtype(dtype, "rand", kinds="f") if dtype is not None else get_default_dtype()
    arr = _generator(rng, "rand").random(shape).astype(dtype)
    return engine.Tensor(arr, requires_grad=requires_grad, device=device)


def _generator(rng, where):
    try:
        return random.as_generator(rng)
    except TypeError as e:
        raise TypeError(f"{where}: {e}") from None


def _shape_arg(shape, where):
    """A shape given as `f(2, 3)` or `f((2, 3))`: non-negative integers."""
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    for n in shape:
        if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 0:
            raise ValueError(f"{where}: shape must be non-negative integers, got {shape!r}")
    return tuple(int(n) for n in shape)


def _operand(x, where, name):
    """`x` unchanged when it is a Tensor, an array of numbers or a number; else refused."""
    if isinstance(x, engine.Tensor) or isinstance(x, (numbers.Number, np.generic)):
        return x
    if backend.is_array(x):
        if x.dtype.kind not in "biufc":
            raise TypeError(f"{where}: {name} must hold numbers, got dtype {x.dtype}")
        return x
    return _tensor(x, where, name)


def _tensor(x, where, name="x"):
    """`x` as a Tensor: Tensors pass; arrays, numbers and lists of numbers become constants;
    anything else (None, a string, a dict) is refused naming `where` and the argument."""
    if isinstance(x, engine.Tensor):
        return x
    if not (backend.is_array(x) or isinstance(x, (numbers.Number, np.generic, list, tuple))):
        raise TypeError(f"{where}: {name} must be a Tensor, an array or a number, got "
                        f"{type(x).__name__}")
    return make_tensor(backend.as_array(x, where=where))


def raw_index(index):
    """An index with its Tensors replaced by their arrays."""
    if isinstance(index, engine.Tensor):
        return index.data
    if isinstance(index, tuple):
        return tuple(i.data if isinstance(i, engine.Tensor) else i for i in index)
    return index


# --- the ops -------------------------------------------------------------------------------------

def add(x, y):
    """out = x + y (NumPy broadcasting; Python numbers and arrays are constants).

    >>> mg.add(mg.tensor([1.0, 2.0]), 3.0)
    tensor([4., 5.], dtype=float32)
    """
    return Add.apply(x, y)


def sub(x, y):
    """out = x - y (broadcasting)."""
    return Sub.apply(x, y)


def mul(x, y):
    """out = x * y (broadcasting)."""
    return Mul.apply(x, y)


def div(x, y):
    """out = x / y (broadcasting)."""
    return Div.apply(x, y)


def pow(x, y):
    """out = x ** y (broadcasting); the gradient for y is x**y log(x), taken as 0 where x <= 0.

    >>> mg.pow(mg.tensor([2.0, 3.0]), 2)
    tensor([4., 9.], dtype=float32)
    """
    return Pow.apply(x, y)


def neg(x):
    """out = -x."""
    return Neg.apply(x)


def exp(x):
    """out = e**x."""
    return Exp.apply(x)


def log(x):
    """out = ln(x) (natural logarithm)."""
    return Log.apply(x)


def sqrt(x):
    """out = sqrt(x)."""
    return Sqrt.apply(x)


def abs(x):
    """out = |x|; its gradient sign(x) is 0 at x = 0."""
    return Abs.apply(x)


def tanh(x):
    """out = tanh(x);  d out/dx = 1 - out**2."""
    return Tanh.apply(x)


def sigmoid(x):
    """out = 1 / (1 + exp(-x));  d out/dx = out (1 - out).

    >>> mg.sigmoid(mg.tensor([0.0, 1e4, -1e4]))
    tensor([0.5, 1. , 0. ], dtype=float32)
    """
    return Sigmoid.apply(x)


def relu(x):
    """out = max(x, 0); its gradient is 0 at x = 0."""
    return Relu.apply(x)


def leaky_relu(x, slope=0.01):
    """out = x where x > 0, else slope * x."""
    return LeakyRelu.apply(x, slope=checks.real(slope, "leaky_relu", "slope"))


def elu(x, alpha=1.0):
    """out = x where x > 0, else alpha * (exp(x) - 1)."""
    return Elu.apply(x, alpha=checks.real(alpha, "elu", "alpha"))


def softplus(x):
    """out = log(1 + exp(x)), exact and overflow-free at any |x|;  d out/dx = sigmoid(x)."""
    return Softplus.apply(x)


def clip(x, lo=None, hi=None):
    """out = min(max(x, lo), hi) (either bound may be None); the gradient is 1 inside [lo, hi]."""
    if lo is None and hi is None:
        raise ValueError("clip: give lo, hi or both")
    lo = lo if lo is None else checks.real(lo, "clip", "lo", allow_inf=True)
    hi = hi if hi is None else checks.real(hi, "clip", "hi", allow_inf=True)
    if lo is not None and hi is not None and lo > hi:
        raise ValueError(f"clip: lo={lo} is above hi={hi}")
    return Clip.apply(x, lo=lo, hi=hi)


def maximum(x, y):
    """out = max(x, y) elementwise (broadcasting); on ties each input gets half the gradient."""
    return Maximum.apply(x, y)


def minimum(x, y):
    """out = min(x, y) elementwise (broadcasting); on ties each input gets half the gradient."""
    return Minimum.apply(x, y)


def where(cond, x, y):
    """out = x where cond else y (broadcasting); cond carries no gradient.

    >>> x = mg.tensor([-1.0, 2.0])
    >>> mg.where(x > 0, x, 0.0)
    tensor([0., 2.], dtype=float32)
    """
    c = _tensor(cond, "where", "cond").data
    if c.dtype != np.bool_:
        c = c.astype(bool)
    return Where.apply(c, _operand(x, "where", "x"), _operand(y, "where", "y"))


def astype(x, dtype):
    """x cast to `dtype`; the gradient is cast back to x's dtype."""
    return AsType.apply(_operand(x, "astype", "x"), dtype=checks.dtype(dtype, "astype"))


def sum(x, axis=None, keepdims=False):
    """out = sum of x over `axis` (None: all; an int or a tuple; negatives count from the end).

    >>> mg.sum(mg.tensor([[1.0, 2.0], [3.0, 4.0]]), axis=0)
    tensor([4., 6.], dtype=float32)
    """
    return Sum.apply(x, axis=axis, keepdims=checks.boolean(keepdims, "sum", "keepdims"))


def mean(x, axis=None, keepdims=False):
    """out = sum(x, axis) / n, with n the number of elements reduced."""
    return Mean.apply(x, axis=axis, keepdims=checks.boolean(keepdims, "mean", "keepdims"))


def max(x, axis=None, keepdims=False):
    """out = the largest x over `axis`; ties share the gradient evenly."""
    return Max.apply(x, axis=axis, keepdims=checks.boolean(keepdims, "max", "keepdims"))


def min(x, axis=None, keepdims=False):
    """out = the smallest x over `axis`; ties share the gradient evenly."""
    return Min.apply(x, axis=axis, keepdims=checks.boolean(keepdims, "min", "keepdims"))


def logsumexp(x, axis=None, keepdims=False):
    """out = log(sum(exp(x), axis)), computed as m + log(sum(exp(x - m))) with m = max(x):
    no overflow at any |x|;  d out/dx = softmax(x).
    """
    return LogSumExp.apply(x, axis=axis, keepdims=checks.boolean(keepdims, "logsumexp", "keepdims"))


def var(x, axis=None, keepdims=False, ddof=0):
    """Variance (NumPy's `ddof`), composed: mean of squared deviations."""
    x = _tensor(x, "var")
    _refuse_complex("var", x)
    axes = checks.axes(axis, x.ndim, "var")
    ddof = checks.integer(ddof, "var", "ddof", low=0)
    n = int(np.prod([x.shape[a] for a in axes])) if axes else 1
    if n - ddof <= 0:
        raise ValueError(f"var: ddof={ddof} leaves no degrees of freedom for {n} elements")
    d = x - mean(x, axis=axes, keepdims=True)
    return sum(d * d, axis=axes, keepdims=keepdims) * (1.0 / (n - ddof))


def matmul(x, y):
    """out = x @ y with NumPy's rules: 1-D operands are vectors, leading axes are batch axes
    that broadcast.

    >>> mg.matmul(mg.ones(2, 3), mg.ones(3)).shape
    (2,)
    """
    return MatMul.apply(x, y)


def reshape(x, *shape):
    """x with a new shape of the same size (one entry may be -1): `reshape(x, 2, 3)` or
    `reshape(x, (2, 3))`.
    """
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    for n in shape:
        checks.integer(n, "reshape", "each size of the shape", low=-1)
    return Reshape.apply(_operand(x, "reshape", "x"), shape=shape)


def transpose(x, *axes):
    """x with its axes permuted (`transpose(x, 1, 0, 2)`); reversed when no axes are given."""
    if len(axes) == 1 and isinstance(axes[0], (tuple, list)):
        axes = tuple(axes[0])
    for a in axes:
        checks.integer(a, "transpose", "each axis")
    return Transpose.apply(_operand(x, "transpose", "x"), axes=axes or None)


def swapaxes(x, a, b):
    """x with axes `a` and `b` exchanged."""
    x = _tensor(x, "swapaxes")
    nd = x.ndim
    axes = list(range(nd))
    a, b = checks.axis(a, nd, "swapaxes"), checks.axis(b, nd, "swapaxes")
    axes[a], axes[b] = axes[b], axes[a]
    return Transpose.apply(x, axes=tuple(axes))


def expand_dims(x, axis):
    """x with a new size-1 axis at position `axis` of the result (negatives count from the end)."""
    x = _tensor(x, "expand_dims")
    shape = list(x.shape)
    shape.insert(checks.axis(axis, len(shape) + 1, "expand_dims"), 1)
    return Reshape.apply(x, shape=tuple(shape))


def squeeze(x, axis=None):
    """x without its size-1 axes (all of them, or those in `axis`, which must have size 1)."""
    x = _tensor(x, "squeeze")
    if axis is None:
        shape = tuple(n for n in x.shape if n != 1)
    else:
        axes = checks.axes(axis, x.ndim, "squeeze")
        for a in axes:
            if x.shape[a] != 1:
                raise ValueError(f"squeeze: axis {a} has size {x.shape[a]}, not 1 "
                                 f"(shape {x.shape})")
        shape = tuple(n for i, n in enumerate(x.shape) if i not in axes)
    return Reshape.apply(x, shape=shape)


def broadcast_to(x, shape):
    """x broadcast to `shape` (NumPy rules); the gradient is summed back to x's shape."""
    shape = _shape_arg((shape,) if isinstance(shape, (tuple, list)) else (shape,),
                       "broadcast_to")
    return BroadcastTo.apply(_operand(x, "broadcast_to", "x"), shape=shape)


def concat(tensors, axis=0):
    """The tensors joined along an existing `axis`."""
    return Concat.apply(*_tensor_list(tensors, "concat"), axis=axis)


def stack(tensors, axis=0):
    """The tensors (all of one shape) joined along a new `axis`."""
    return Stack.apply(*_tensor_list(tensors, "stack"), axis=axis)


def _tensor_list(tensors, where):
    """A list or tuple of tensors: a Tensor itself is refused (iterating it gives its rows)."""
    if not isinstance(tensors, (list, tuple)):
        raise TypeError(f"{where}: tensors must be a list or tuple of Tensors, got "
                        f"{type(tensors).__name__}")
    return [_operand(t, where, f"tensors[{k}]") for k, t in enumerate(tensors)]


def unstack(x, axis=0):
    """The slices of `x` along `axis`, as a tuple (the inverse of `stack`)."""
    return Unstack.apply(_operand(x, "unstack", "x"), axis=axis)


def split(x, sections, axis=0):
    """Split into equal parts (`sections` an int) or at the given indices; returns a tuple."""
    if type(sections) is int:  # the common call (a cell's gates): no ABC isinstance checks
        integral = True
    elif not isinstance(sections, (numbers.Integral, list, tuple)) or isinstance(sections, bool):
        raise TypeError(f"split: sections must be an int or a list of indices, got "
                        f"{type(sections).__name__} {sections!r}")
    else:
        integral = isinstance(sections, numbers.Integral)
    if integral and sections < 1:
        raise ValueError(f"split: sections must be >= 1, got {sections}")
    out = Split.apply(_operand(x, "split", "x"), sections=sections, axis=axis)
    return out if isinstance(out, tuple) else (out,)


def pad(x, pad_width, value=0.0):
    """Constant padding; `pad_width` as in NumPy: ((before, after), ...) per axis."""
    value = checks.real(value, "pad", "value", allow_inf=True)
    return Pad.apply(_operand(x, "pad", "x"), pad_width=pad_width, value=value)


def roll(x, shift, axis=None):
    """x with its elements shifted by `shift` along `axis` (None: the flattened array), wrapping."""
    for s in shift if isinstance(shift, (tuple, list)) else (shift,):
        checks.integer(s, "roll", "shift")
    return Roll.apply(_operand(x, "roll", "x"), shift=shift, axis=axis)


def flip(x, axis=None):
    """x with the order of elements reversed along `axis` (None: all axes)."""
    return Flip.apply(_operand(x, "flip", "x"), axis=axis)


def getitem(x, index):
    """x[index], NumPy indexing: ints, slices (any step), None, Ellipsis, integer arrays and
    boolean masks. Repeated integer indices accumulate their gradients.

    >>> x = mg.tensor([1.0, 2.0, 3.0], requires_grad=True)
    >>> x[[0, 0, 2]].sum().backward()
    >>> x.grad
    tensor([2., 0., 1.], dtype=float32)
    """
    x = _tensor(x, "getitem")
    index = raw_index(index)
    if type(x.data) is not np.ndarray:  # host index arrays follow x to its device
        items = index if isinstance(index, tuple) else (index,)
        moved = tuple(_index_array(i, x) if isinstance(i, (np.ndarray, list)) else i
                      for i in items)
        index = moved if isinstance(index, tuple) else moved[0]
    return GetItem.apply(x, index=index)


def _index_array(idx, device_of):
    a = idx.data if isinstance(idx, engine.Tensor) else idx
    if not hasattr(a, "dtype"):
        a = np.asarray(a)
        if a.dtype.kind == "f" and a.size == 0:
            a = a.astype(np.int64)
    return backend.to_device(a, backend.device_of(device_of.data)) if not isinstance(
        a, backend.device_of(device_of.data).array_type) and a.size else a


def _indices(idx, x, where, name):
    if idx is None or isinstance(idx, (str, bytes, dict, set, float)):
        raise checks.IndexTypeError(f"{where}: {name} must be integers, got "
                                    f"{type(idx).__name__}")
    return _index_array(idx, x)


def take(x, indices, axis=0):
    """Elements of `x` at `indices` along `axis` (NumPy's `take`; negatives count from the
    end)."""
    x = _tensor(x, "take")
    return Take.apply(x, _indices(indices, x, "take", "indices"), axis=axis)


def embedding(weight, indices):
    """Rows of `weight` (V, D) at integer `indices` in [0, V) of any shape: out
    (*indices.shape, D)."""
    weight = _tensor(weight, "embedding", "weight")
    if weight.ndim != 2:
        raise ValueError(f"embedding: weight must be a (V, D) table, got shape {weight.shape}")
    return Embedding.apply(weight, _indices(indices, weight, "embedding", "indices"), axis=0)


def gather(x, index, axis):
    """`x` taken at `index` along `axis` (NumPy's `take_along_axis`)."""
    x = _tensor(x, "gather")
    return Gather.apply(x, _indices(index, x, "gather", "index"), axis=axis)


def softmax(x, axis=-1):
    """out = exp(x - logsumexp(x, axis)): non-negative, sums to 1 along `axis`.

    >>> mg.softmax(mg.tensor([0.0, 0.0]))
    tensor([0.5, 0.5], dtype=float32)
    """
    return Softmax.apply(x, axis=axis)


def log_softmax(x, axis=-1):
    """out = x - logsumexp(x, axis), exact where log(softmax(x)) would underflow to -inf."""
    return LogSoftmax.apply(x, axis=axis)


def cross_entropy(logits, targets, ignore_index=-100, reduction="mean"):
    """Softmax cross-entropy of `logits` (..., C) against integer `targets` (...).

    loss_i = logsumexp(logits_i) - logits_i[targets_i], or 0 where targets_i == ignore_index.
    `reduction`: "none" (loss_i), "sum", or "mean": the sum over the kept targets divided by
    their count (0 when every target is ignored, so an all-padding batch gives no gradient).

    >>> mg.cross_entropy(mg.tensor([[2.0, 0.0, -1.0]]), np.array([0]))
    tensor(0.16984603, dtype=float32)
    """
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"cross_entropy: reduction must be mean, sum or none, got {reduction!r}")
    logits = _tensor(logits, "cross_entropy", "logits")
    if logits.ndim == 0:
        raise ValueError("cross_entropy: logits must have a class axis (..., C), got a scalar")
    ignore_index = checks.integer(ignore_index, "cross_entropy", "ignore_index")
    t = _indices(targets, logits, "cross_entropy", "targets")
    if tuple(t.shape) != tuple(logits.shape[:-1]):
        raise ValueError(f"cross_entropy: targets of shape {tuple(t.shape)} do not match logits "
                         f"of shape {logits.shape} (expected {logits.shape[:-1]})")
    checks.index_array(t[t != ignore_index], "cross_entropy", "targets", logits.shape[-1])
    return CrossEntropy.apply(logits, t, ignore_index=ignore_index, reduction=reduction)


def _refuse_complex(where, *xs):
    """Composed functions that order values or give a real result refuse complex inputs too."""
    for a in xs:
        dt = getattr(a.data if isinstance(a, engine.Tensor) else a, "dtype", None)
        if dt is not None and dt.kind == "c":
            raise TypeError(f"{where}: complex input ({dt}) is not supported: it orders values "
                            "or gives a real result")


def _reduce(loss, reduction, op):
    if reduction == "mean":
        return mean(loss)
    if reduction == "sum":
        return sum(loss)
    if reduction == "none":
        return loss
    raise ValueError(f"{op}: reduction must be mean, sum or none, got {reduction!r}")


def _shape(x):
    """Shape of a Tensor, device array, scalar or list (np.shape refuses device arrays)."""
    x = getattr(x, "data", x)
    return tuple(x.shape) if hasattr(x, "shape") else np.shape(x)


def _same_shape(x, y, op):
    # losses refuse to broadcast: (B, 1) against (B,) would silently give a (B, B) loss
    xs, ys = _shape(x), _shape(y)
    if xs != ys:
        raise ValueError(f"{op}: input of shape {xs} and target of shape {ys} differ")


def binary_cross_entropy_with_logits(logits, targets, reduction="mean"):
    """-[y log sigmoid(x) + (1 - y) log(1 - sigmoid(x))], computed stably from logits."""
    where = "binary_cross_entropy_with_logits"
    logits, targets = _tensor(logits, where, "logits"), _tensor(targets, where, "targets")
    _same_shape(logits, targets, where)
    return _reduce(BCEWithLogits.apply(logits, targets), reduction,
                   "binary_cross_entropy_with_logits")


def mse_loss(pred, target, reduction="mean"):
    """mean((pred - target)**2) (or "sum", or "none": per element); shapes must be equal."""
    pred, target = _tensor(pred, "mse_loss", "pred"), _tensor(target, "mse_loss", "target")
    _refuse_complex("mse_loss", pred, target)
    _same_shape(pred, target, "mse_loss")
    d = pred - target
    return _reduce(d * d, reduction, "mse_loss")


def dropout(x, p=0.5, training=True, rng=None):
    """Zero each element with probability `p` and scale the rest by 1/(1-p) (when training).

    out = x * keep / (1 - p) with keep = rng.random(x.shape) >= p, drawn on the host from `rng`
    (a numpy Generator; default: `mg.random`), so a NumPy program with the same seed reproduces
    the mask;  gx = gout * keep / (1 - p).

    >>> y = mg.dropout(mg.tensor([1.0, 2.0, 3.0]), p=0.5, rng=np.random.default_rng(0))
    """
    p = checks.probability(p, "dropout", "p")
    if not checks.boolean(training, "dropout", "training") or p == 0:
        return x
    return Dropout.apply(x, p=p, rng=_generator(rng, "dropout"))


def normalize(x, p=2, axis=-1, eps=1e-12):
    """x / max(||x||_p, eps) along `axis`."""
    x = _tensor(x, "normalize")
    _refuse_complex("normalize", x)
    checks.axes(axis, x.ndim, "normalize")
    p = checks.real(p, "normalize", "p", low=0, low_open=True)
    eps = checks.real(eps, "normalize", "eps", low=0)
    if p == 2:
        norm = sqrt(sum(x * x, axis=axis, keepdims=True))
    else:
        norm = sum(abs(x) ** p, axis=axis, keepdims=True) ** (1.0 / p)
    return x / maximum(norm, eps)


def cosine_similarity(x1, x2, axis=-1, eps=1e-8):
    """sum(x1 * x2) / max(||x1|| ||x2||, eps) along `axis`."""
    x1 = _tensor(x1, "cosine_similarity", "x1")
    x2 = _tensor(x2, "cosine_similarity", "x2")
    _refuse_complex("cosine_similarity", x1, x2)
    checks.axes(axis, builtins.max(x1.ndim, x2.ndim), "cosine_similarity")
    eps = checks.real(eps, "cosine_similarity", "eps", low=0)
    n = sqrt(sum(x1 * x1, axis=axis) * sum(x2 * x2, axis=axis))
    return sum(x1 * x2, axis=axis) / maximum(n, eps)


# --- non-differentiable -----------------------------------------------------------------------

def argmax(x, axis=None, keepdims=False):
    """Index of the largest x along `axis` (None: of the flattened array); no gradient."""
    return _arg_extreme("argmax", x, axis, keepdims)


def argmin(x, axis=None, keepdims=False):
    """Index of the smallest x along `axis` (None: of the flattened array); no gradient."""
    return _arg_extreme("argmin", x, axis, keepdims)


def _arg_extreme(name, x, axis, keepdims):
    xd = _tensor(x, name).data
    _refuse_complex(name, xd)
    keepdims = checks.boolean(keepdims, name, "keepdims")
    if xd.size == 0:
        raise ValueError(f"{name}: the tensor is empty")
    if axis is not None:
        axis = checks.axis(axis, xd.ndim, name)
    return make_tensor(_as_arr(getattr(xd, name)(axis=axis, keepdims=keepdims)))


def _as_arr(a):
    return a if hasattr(a, "ndim") and not isinstance(a, np.generic) else np.asarray(a)


def topk(x, k, axis=-1, largest=True):
    """The `k` largest (or smallest) entries along `axis`, sorted: (values, indices).

    The indices carry no gradient; values are gathered from `x`, so a gradient reaches them.
    """
    x = _tensor(x, "topk")
    xd = x.data
    _refuse_complex("topk", xd)
    axis = checks.axis(axis, xd.ndim, "topk")
    largest = checks.boolean(largest, "topk", "largest")
    n = xd.shape[axis]
    k = checks.integer(k, "topk", "k")
    if not 0 < k <= n:
        raise ValueError(f"topk: k={k} must be in [1, {n}] for axis {axis} of shape {x.shape}")
    xp = backend.get_array_module(xd)
    key = -xd if largest else xd
    idx = xp.argsort(key, axis=axis, kind="stable")
    idx = xp.take(idx, xp.arange(k), axis=axis)
    return gather(x, idx, axis), make_tensor(idx)


def one_hot(indices, num_classes, dtype=None):
    """One-hot float rows: out (*indices.shape, num_classes), out[..., c] = (indices == c).

    >>> mg.one_hot(np.array([2, 0]), 3)
    tensor([[0., 0., 1.],
            [1., 0., 0.]], dtype=float32)
    """
    num_classes = checks.integer(num_classes, "one_hot", "num_classes", low=1)
    dtype = checks.dtype(dtype, "one_hot") if dtype is not None else get_default_dtype()
    if indices is None or isinstance(indices, (str, bytes, dict, set, float)):
        raise checks.IndexTypeError(f"one_hot: indices must be integers, got "
                                    f"{type(indices).__name__}")
    a = indices.data if isinstance(indices, engine.Tensor) else indices
    if not hasattr(a, "dtype"):  # device arrays stay where they are; Python data goes to NumPy
        a = np.asarray(a)
    checks.index_array(a, "one_hot", "indices", num_classes)
    xp = backend.get_array_module(a)
    out = (a[..., None] == xp.arange(num_classes)).astype(dtype)
    return make_tensor(out)
