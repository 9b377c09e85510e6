"""The op table: one named row per op drives the forward, gradient, dtype and bad-input tests.

Every row names a minigrad function and an independent NumPy reference written from the maths.
Hypothesis draws the shapes (with broadcasting), axes, indices and values (kept away from kinks)
for each row; the tests below compare

  (a) forward values with the NumPy reference, in float64 and float32;
  (b) gradients with central finite differences (`gradcheck`, float64, non-contiguous inputs),
      and second derivatives (`gradgradcheck`: the backward recorded under create_graph,
      differentiated again, against finite differences of first-order gradients);
  (c) result dtype and shape with NumPy's (mixed float32/float64 inputs included), and gradient
      dtypes and shapes with the inputs';
  (d) bad input: ValueError/TypeError whose message names the op;
and the same table runs on every device present ("fake", the GPU stand-in that refuses NumPy, and
"cuda" with CuPy): results equal NumPy's and gradients equal the CPU's. Then come stability at
|x| = 1e4, dropout's statistics and mask, and Python/NumPy constants on both sides of operators.

Adding an op is adding a row. Rows are looked up by name, never by position.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import minigrad as mg
from minigrad import backend
from minigrad.testing import gradcheck, gradgradcheck
from minigrad.testing import strategies as mst

F64, F32 = np.dtype(np.float64), np.dtype(np.float32)


# --- NumPy references, written from the maths ------------------------------------------------

def np_logsumexp(x, axis=None, keepdims=False):
    m = np.max(x, axis=axis, keepdims=True)
    out = np.log(np.sum(np.exp(x - m), axis=axis, keepdims=True)) + m
    return out if keepdims else np.squeeze(out, axis=axis)


def np_softmax(x, axis=-1):
    e = np.exp(x - np.max(x, axis=axis, keepdims=True))
    return e / np.sum(e, axis=axis, keepdims=True)


def np_log_softmax(x, axis=-1):
    return x - np_logsumexp(x, axis=axis, keepdims=True)


def np_sigmoid(x):
    return 1 / (1 + np.exp(-x))


def np_reduce(loss, reduction):
    return {"none": loss, "sum": np.sum(loss), "mean": np.mean(loss)}[reduction]


def np_cross_entropy(x, t, ignore_index=-100, reduction="mean"):
    keep = t != ignore_index
    picked = np.take_along_axis(np_log_softmax(x), np.where(keep, t, 0)[..., None], -1)[..., 0]
    nll = np.where(keep, -picked, 0)
    if reduction == "mean":  # documented: over the kept targets, 0 when all are ignored
        return np.sum(nll) / max(int(np.sum(keep)), 1)
    return np_reduce(nll, reduction)


def np_bce_with_logits(x, y, reduction="mean"):
    p = np_sigmoid(x)
    return np_reduce(-(y * np.log(p) + (1 - y) * np.log(1 - p)), reduction)


def np_dropout(x, p, seed):
    # the documented contract of mg.dropout: keep = rng.random(x.shape) >= p
    keep = np.random.default_rng(seed).random(x.shape) >= p
    return x * keep / (1 - p)


def np_cosine_similarity(x1, x2, axis=-1, eps=1e-8):
    n = np.linalg.norm(x1, axis=axis) * np.linalg.norm(x2, axis=axis)
    return np.sum(x1 * x2, axis=axis) / np.maximum(n, eps)


def np_normalize(x, axis=-1, eps=1e-12):
    return x / np.maximum(np.linalg.norm(x, axis=axis, keepdims=True), eps)


def np_topk(x, k, axis=-1, largest=True):
    order = np.argsort(x, axis=axis)  # values are distinct: the order is unique
    if largest:
        order = np.flip(order, axis=axis)
    idx = np.take(order, np.arange(k), axis=axis)
    return np.take_along_axis(x, idx, axis=axis), idx


def np_split(x, sections, axis=0):
    return tuple(np.split(x, sections, axis=axis))


# --- the table ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class In:
    """One float input: values in `domain`, `margin` away from the `avoid` kinks, optionally
    pairwise well apart (`distinct`: no ties for max/min/argmax)."""

    domain: tuple[float, float] = (-3.0, 3.0)
    avoid: tuple[float, ...] = ()
    margin: float = 0.1
    distinct: bool = False


X = In()


@dataclass(frozen=True)
class Case:
    """One drawn call: `args` (float arrays at positions `diff`, constants elsewhere), `kwargs`."""

    args: tuple
    kwargs: dict
    diff: tuple[int, ...]


@dataclass(frozen=True)
class Row:
    """An op: `fn(*args, **kwargs)` on Tensors must equal `ref(*args, **kwargs)` on arrays."""

    name: str
    fn: Callable
    ref: Callable
    inputs: tuple[In, ...] = (X,)      # the float inputs, in order
    broadcast: bool = False            # inputs drawn with mutually broadcastable shapes
    axis: str = ""                     # "reduce": axis None/int/tuple + keepdims; "one": int axis
    min_dims: int = 0
    kwargs: dict = field(default_factory=dict)   # fixed keyword arguments
    grad: bool = True                  # differentiable: gradcheck it
    prepare: Callable | None = None    # maps the drawn float arrays (e.g. to keep x != y)
    case: Callable | None = None       # custom drawing: case(draw, dtype, small) -> Case
    tol64: tuple[float, float] = (1e-10, 1e-12)  # (rtol, atol)
    tol32: tuple[float, float] = (1e-5, 1e-5)


def _apart(x, y):
    """x near integers, y near half-integers: |x - y| >= 0.2 everywhere (no maximum/minimum tie)."""
    return np.round(x) + 0.3 * (x - np.round(x)), np.round(y) + 0.5 + 0.3 * (y - np.round(y))


def _shape(draw, small, min_dims=0, max_dims=3):
    return draw(mst.shapes(min_dims=min_dims, max_dims=2 if small else max_dims,
                           max_side=3 if small else 4))


def _x(draw, shape, dtype, spec=X):
    return draw(mst.arrays(shape, dtype, domain=spec.domain, avoid=spec.avoid, margin=spec.margin,
                           distinct=spec.distinct))


def default_case(row, draw, dtype, small):
    n = len(row.inputs)
    if row.broadcast:
        shapes = draw(mst.broadcastable_shapes(n, min_dims=row.min_dims, max_dims=2 if small else 3,
                                               max_side=3 if small else 4))
    else:
        shapes = (_shape(draw, small, row.min_dims),) * n
    args = tuple(_x(draw, s, dtype, spec) for s, spec in zip(shapes, row.inputs))
    if row.prepare is not None:
        args = tuple(a.astype(dtype) for a in row.prepare(*args))
    kwargs = dict(row.kwargs)
    ndim = max(a.ndim for a in args)
    if row.axis == "reduce":
        kwargs["axis"] = draw(mst.axes(ndim))
        kwargs["keepdims"] = draw(st.booleans())
    elif row.axis == "one":
        kwargs["axis"] = draw(st.integers(-ndim, ndim - 1))
    return Case(args, kwargs, tuple(range(n)))


# custom drawing for ops whose arguments are more than float arrays and an axis

def where_case(draw, dtype, small):
    sc, sx, sy = draw(mst.broadcastable_shapes(3, max_dims=2 if small else 3))
    cond = draw(hnp.arrays(np.bool_, sc))
    return Case((cond, _x(draw, sx, dtype), _x(draw, sy, dtype)), {}, (1, 2))


def matmul_case(draw, dtype, small):
    n, k, m = (draw(st.integers(1, 4)) for _ in range(3))
    kind = draw(st.sampled_from(("1d@1d", "1d@2d", "2d@1d", "2d@2d", "batched", "1d@batched")))
    bx, by = draw(mst.broadcastable_shapes(2, min_dims=1, max_dims=2, max_side=3))
    xs = {"1d@1d": (k,), "1d@2d": (k,), "2d@1d": (n, k), "2d@2d": (n, k),
          "batched": bx + (n, k), "1d@batched": (k,)}[kind]
    ys = {"1d@1d": (k,), "1d@2d": (k, m), "2d@1d": (k,), "2d@2d": (k, m),
          "batched": by + (k, m), "1d@batched": by + (k, m)}[kind]
    return Case((_x(draw, xs, dtype), _x(draw, ys, dtype)), {}, (0, 1))


def reshape_case(draw, dtype, small):
    x = _x(draw, _shape(draw, small), dtype)
    options = [(x.size,), (1, x.size), (x.size, 1), x.shape[::-1], (-1,)]
    if x.ndim:
        spot = draw(st.integers(0, x.ndim - 1))
        options.append(x.shape[:spot] + (-1,) + x.shape[spot + 1:])
    return Case((x,), {"shape": draw(st.sampled_from(options))}, (0,))


def transpose_case(draw, dtype, small):
    x = _x(draw, _shape(draw, small), dtype)
    perm = draw(st.permutations(range(x.ndim)))
    axes = tuple(draw(st.sampled_from((a, a - x.ndim))) for a in perm)
    return Case((x,), {"axes": axes}, (0,))


def swapaxes_case(draw, dtype, small):
    x = _x(draw, _shape(draw, small, min_dims=1), dtype)
    a, b = (draw(st.integers(-x.ndim, x.ndim - 1)) for _ in range(2))
    return Case((x,), {"a": a, "b": b}, (0,))


def expand_dims_case(draw, dtype, small):
    x = _x(draw, _shape(draw, small), dtype)
    return Case((x,), {"axis": draw(st.integers(-x.ndim - 1, x.ndim))}, (0,))


def squeeze_case(draw, dtype, small):
    shape = draw(mst.shapes(max_dims=2 if small else 4, max_side=3))
    x = _x(draw, shape, dtype)
    ones = [i for i, n in enumerate(shape) if n == 1]
    picked = draw(st.lists(st.sampled_from(ones), unique=True)) if ones else []
    axis = draw(st.sampled_from([None, tuple(picked)] + ([picked[0] - x.ndim] if picked else [])))
    return Case((x,), {"axis": axis}, (0,))


def broadcast_to_case(draw, dtype, small):
    s1, s2 = draw(mst.broadcastable_shapes(2, max_dims=2 if small else 3))
    return Case((_x(draw, s1, dtype),), {"shape": np.broadcast_shapes(s1, s2)}, (0,))


def _shape_and_axis(draw, small, extra=0):
    """A shape of >= 1 dims and an axis of it (or of the result, which has `extra` more dims)."""
    shape = _shape(draw, small, min_dims=1)
    return shape, draw(st.integers(-len(shape) - extra, len(shape) - 1 + extra))


def concat_case(draw, dtype, small):
    shape, axis = _shape_and_axis(draw, small)
    k = draw(st.integers(1, 3))
    xs = []
    for _ in range(k):
        s = list(shape)
        s[axis] = draw(st.integers(1, 3))
        xs.append(_x(draw, tuple(s), dtype))
    return Case(tuple(xs), {"axis": axis}, tuple(range(k)))


def stack_case(draw, dtype, small):
    shape, axis = _shape_and_axis(draw, small, extra=1)
    k = draw(st.integers(1, 3))
    return Case(tuple(_x(draw, shape, dtype) for _ in range(k)), {"axis": axis}, tuple(range(k)))


def unstack_case(draw, dtype, small):
    shape, axis = _shape_and_axis(draw, small)
    return Case((_x(draw, shape, dtype),), {"axis": axis}, (0,))


def split_case(draw, dtype, small):
    shape, axis = _shape_and_axis(draw, small)
    n = shape[axis]
    divisors = [d for d in range(1, n + 1) if n % d == 0]
    cuts = draw(st.lists(st.integers(0, n), max_size=3).map(sorted))
    sections = draw(st.sampled_from(divisors + [cuts]))
    return Case((_x(draw, shape, dtype),), {"sections": sections, "axis": axis}, (0,))


def pad_case(draw, dtype, small):
    x = _x(draw, _shape(draw, small, min_dims=1), dtype)
    pw = tuple((draw(st.integers(0, 2)), draw(st.integers(0, 2))) for _ in range(x.ndim))
    return Case((x,), {"pad_width": pw, "value": draw(st.sampled_from((0.0, -1.5)))}, (0,))


def roll_case(draw, dtype, small):
    x = _x(draw, _shape(draw, small), dtype)
    axis = draw(mst.axes(x.ndim, allow_tuple=x.ndim > 0))
    if isinstance(axis, tuple):
        shift = tuple(draw(st.integers(-5, 5)) for _ in axis)
    else:
        shift = draw(st.integers(-5, 5))
    return Case((x,), {"shift": shift, "axis": axis}, (0,))


def flip_case(draw, dtype, small):
    x = _x(draw, _shape(draw, small), dtype)
    return Case((x,), {"axis": draw(mst.axes(x.ndim))}, (0,))


def getitem_case(draw, dtype, small):
    shape = _shape(draw, small)
    x = _x(draw, shape, dtype)
    kinds = ["basic"] + (["int arrays", "bool mask", "mixed"] if x.ndim else [])
    kind = draw(st.sampled_from(kinds))
    if kind == "basic":    # ints (negative too), slices with any step, None, Ellipsis
        index = draw(hnp.basic_indices(shape, allow_newaxis=True, allow_ellipsis=True))
    elif kind == "int arrays":   # one integer array per leading axis, repeats included
        index = draw(hnp.integer_array_indices(shape[:draw(st.integers(1, x.ndim))],
                                               result_shape=mst.shapes(0, 2, max_side=4)))
    elif kind == "bool mask":
        index = draw(hnp.arrays(np.bool_, shape[:draw(st.integers(1, x.ndim))]))
    else:                  # a slice with a negative step, then an integer array with repeats
        rows = draw(mst.indices(shape[-1], shape=(draw(st.integers(1, 4)),), negative=True))
        index = (Ellipsis, rows) if x.ndim == 1 else (slice(None, None, -1), Ellipsis, rows)
    return Case((x,), {"index": index}, (0,))


def gather_case(draw, dtype, small):
    shape = _shape(draw, small, min_dims=1)
    axis = draw(st.integers(-len(shape), len(shape) - 1))
    # index and x broadcast against each other on the other axes
    ishape = [draw(st.sampled_from((1, n) if n > 1 else (1, 2))) for n in shape]
    ishape[axis] = draw(st.integers(1, 4))
    index = draw(mst.indices(shape[axis], shape=tuple(ishape)))
    return Case((_x(draw, shape, dtype), index), {"axis": axis}, (0,))


def take_case(draw, dtype, small):
    shape = _shape(draw, small, min_dims=1)
    axis = draw(st.integers(-len(shape), len(shape) - 1))
    index = draw(mst.indices(shape[axis % len(shape)], negative=True))
    return Case((_x(draw, shape, dtype), index), {"axis": axis}, (0,))


def embedding_case(draw, dtype, small):
    V, D = draw(st.integers(1, 5)), draw(st.integers(1, 4))
    return Case((_x(draw, (V, D), dtype), draw(mst.indices(V))), {}, (0,))


def cross_entropy_case(draw, dtype, small):
    shape = _shape(draw, small, min_dims=1, max_dims=3)
    C = shape[-1]
    ignore = draw(st.sampled_from((-100, -1, 0)))
    targets = draw(mst.indices(C, shape=shape[:-1]))
    dropped = draw(hnp.arrays(np.bool_, shape[:-1]))
    targets = np.where(dropped, ignore, targets)
    kwargs = {"ignore_index": ignore, "reduction": draw(st.sampled_from(("mean", "sum", "none")))}
    return Case((_x(draw, shape, dtype), targets), kwargs, (0,))


def bce_case(draw, dtype, small):
    shape = _shape(draw, small)
    x, y = _x(draw, shape, dtype), _x(draw, shape, dtype, In(domain=(0.0, 1.0)))
    return Case((x, y), {"reduction": draw(st.sampled_from(("mean", "sum", "none")))}, (0, 1))


def mse_case(draw, dtype, small):
    shape = _shape(draw, small)
    x, y = _x(draw, shape, dtype), _x(draw, shape, dtype)
    return Case((x, y), {"reduction": draw(st.sampled_from(("mean", "sum", "none")))}, (0, 1))


def dropout_case(draw, dtype, small):
    x = _x(draw, _shape(draw, small), dtype)
    return Case((x,), {"p": draw(st.sampled_from((0.1, 0.5, 0.9))),
                       "seed": draw(st.integers(0, 2**16))}, (0,))


def argmax_case(draw, dtype, small):
    x = _x(draw, _shape(draw, small), dtype, In(distinct=True))
    axis = draw(st.none() | st.integers(-x.ndim, x.ndim - 1)) if x.ndim else None
    return Case((x,), {"axis": axis, "keepdims": draw(st.booleans())}, (0,))


def topk_case(draw, dtype, small):
    x = _x(draw, _shape(draw, small, min_dims=1), dtype, In(distinct=True))
    axis = draw(st.integers(-x.ndim, x.ndim - 1))
    k = draw(st.integers(1, x.shape[axis]))
    return Case((x,), {"k": k, "axis": axis, "largest": draw(st.booleans())}, (0,))


def one_hot_case(draw, dtype, small):
    C = draw(st.integers(1, 5))
    return Case((draw(mst.indices(C)),), {"num_classes": C, "dtype": dtype}, ())


POS = In(domain=(0.2, 3.0))          # log, sqrt, pow base: keep away from 0
NONZERO = In(avoid=(0.0,))           # abs, relu, ... kinks at 0
DISTINCT = In(distinct=True)         # max, min: no ties

TABLE = [
    # elementwise, binary (broadcasting)
    Row("add", mg.add, np.add, (X, X), broadcast=True),
    Row("sub", mg.sub, np.subtract, (X, X), broadcast=True),
    Row("mul", mg.mul, np.multiply, (X, X), broadcast=True),
    Row("div", mg.div, np.divide, (X, In(avoid=(0.0,), margin=0.5)), broadcast=True),
    Row("pow", mg.pow, np.power, (POS, In(domain=(-2.0, 2.0))), broadcast=True),
    Row("pow_scalar", lambda x: x ** 3, lambda x: x ** 3),
    Row("maximum", mg.maximum, np.maximum, (X, X), broadcast=True, prepare=_apart),
    Row("minimum", mg.minimum, np.minimum, (X, X), broadcast=True, prepare=_apart),
    Row("where", mg.where, np.where, case=where_case),
    # elementwise, unary
    Row("neg", mg.neg, np.negative),
    Row("exp", mg.exp, np.exp),
    Row("log", mg.log, np.log, (POS,)),
    Row("sqrt", mg.sqrt, np.sqrt, (POS,)),
    Row("abs", mg.abs, np.abs, (NONZERO,)),
    Row("tanh", mg.tanh, np.tanh),
    Row("sigmoid", mg.sigmoid, np_sigmoid, (In(domain=(-8.0, 8.0)),)),
    Row("relu", mg.relu, lambda x: np.maximum(x, 0), (NONZERO,)),
    Row("leaky_relu", mg.leaky_relu, lambda x, slope: np.where(x > 0, x, slope * x), (NONZERO,),
        kwargs={"slope": 0.1}),
    Row("elu", mg.elu, lambda x, alpha: np.where(x > 0, x, alpha * (np.exp(x) - 1)), (NONZERO,),
        kwargs={"alpha": 0.7}),
    Row("softplus", mg.softplus, lambda x: np.log1p(np.exp(x)), (In(domain=(-8.0, 8.0)),)),
    Row("clip", mg.clip, lambda x, lo, hi: np.clip(x, lo, hi), (In(avoid=(-1.0, 0.5)),),
        kwargs={"lo": -1.0, "hi": 0.5}),
    # reductions: axis None, int, negative int, tuple; keepdims
    Row("sum", mg.sum, np.sum, axis="reduce"),
    Row("mean", mg.mean, np.mean, axis="reduce"),
    Row("max", mg.max, np.max, (DISTINCT,), axis="reduce"),
    Row("min", mg.min, np.min, (DISTINCT,), axis="reduce"),
    Row("logsumexp", mg.logsumexp, np_logsumexp, axis="reduce"),
    Row("var", mg.var, np.var, axis="reduce", tol32=(1e-4, 1e-5)),
    # matrix product: 1-D, 2-D, batched with broadcasting batch axes
    Row("matmul", mg.matmul, np.matmul, case=matmul_case),
    # shape ops
    Row("reshape", lambda x, shape: x.reshape(shape), np.reshape, case=reshape_case),
    Row("transpose", lambda x, axes: x.transpose(*axes), np.transpose, case=transpose_case),
    Row("T", lambda x: x.T, lambda x: x.T, (X,)),
    Row("swapaxes", mg.swapaxes, lambda x, a, b: np.swapaxes(x, a, b), case=swapaxes_case),
    Row("expand_dims", mg.expand_dims, np.expand_dims, case=expand_dims_case),
    Row("squeeze", mg.squeeze, np.squeeze, case=squeeze_case),
    Row("broadcast_to", mg.broadcast_to, np.broadcast_to, case=broadcast_to_case),
    Row("concat", lambda *xs, axis: mg.concat(xs, axis=axis),
        lambda *xs, axis: np.concatenate(xs, axis=axis), case=concat_case),
    Row("stack", lambda *xs, axis: mg.stack(xs, axis=axis),
        lambda *xs, axis: np.stack(xs, axis=axis), case=stack_case),
    Row("split", mg.split, np_split, case=split_case),
    Row("unstack", mg.unstack, lambda x, axis: tuple(np.moveaxis(x, axis, 0)), case=unstack_case),
    Row("pad", mg.pad, lambda x, pad_width, value: np.pad(x, pad_width, constant_values=value),
        case=pad_case),
    Row("roll", mg.roll, np.roll, case=roll_case),
    Row("flip", mg.flip, np.flip, case=flip_case),
    Row("getitem", lambda x, index: x[index], lambda x, index: x[index], case=getitem_case),
    # gathering (repeated indices accumulate)
    Row("gather", mg.gather, np.take_along_axis, case=gather_case),
    Row("take", mg.take, np.take, case=take_case),
    Row("embedding", mg.embedding, lambda w, i: w[i], case=embedding_case),
    # nn
    Row("softmax", mg.softmax, np_softmax, axis="one", min_dims=1),
    Row("log_softmax", mg.log_softmax, np_log_softmax, axis="one", min_dims=1),
    Row("cross_entropy", mg.cross_entropy, np_cross_entropy, case=cross_entropy_case),
    Row("binary_cross_entropy_with_logits", mg.binary_cross_entropy_with_logits,
        np_bce_with_logits, case=bce_case),
    Row("mse_loss", mg.mse_loss, lambda x, y, reduction: np_reduce((x - y) ** 2, reduction),
        case=mse_case),
    Row("dropout", lambda x, p, seed: mg.dropout(x, p, rng=np.random.default_rng(seed)),
        np_dropout, case=dropout_case),
    Row("cosine_similarity", mg.cosine_similarity, np_cosine_similarity, (NONZERO, NONZERO),
        axis="one", min_dims=1),
    Row("normalize", mg.normalize, np_normalize, (NONZERO,), axis="one", min_dims=1),
    # not differentiable (topk's values are: they are gathered from x)
    Row("argmax", mg.argmax, np.argmax, grad=False, case=argmax_case),
    Row("argmin", mg.argmin, np.argmin, grad=False, case=argmax_case),
    Row("topk", mg.topk, np_topk, case=topk_case),
    Row("one_hot", mg.one_hot, lambda i, num_classes, dtype: np.eye(num_classes, dtype=dtype)[i],
        grad=False, case=one_hot_case),
]
ROWS = {row.name: row for row in TABLE}
NAMES = sorted(ROWS)
GRAD_NAMES = sorted(n for n in NAMES if ROWS[n].grad)

REQUIRED = """add sub mul div neg pow exp log sqrt abs tanh sigmoid relu leaky_relu elu softplus
clip maximum minimum where sum mean max min logsumexp var matmul reshape transpose T swapaxes
expand_dims squeeze broadcast_to concat stack split pad roll flip getitem gather take embedding
softmax
log_softmax cross_entropy binary_cross_entropy_with_logits mse_loss dropout cosine_similarity
normalize argmax argmin topk one_hot""".split()


@st.composite
def cases(draw, row: Row, dtype, small: bool = False) -> Case:
    if row.case is not None:
        return row.case(draw, np.dtype(dtype), small)
    return default_case(row, draw, np.dtype(dtype), small)


def as_tensors(case: Case, requires_grad=True, views=None) -> list:
    """The case's args with its float inputs as Tensors (through `views` when given)."""
    args = list(case.args)
    for i in case.diff:
        a = args[i] if views is None else views(args[i])
        args[i] = mg.tensor(a, requires_grad=requires_grad)
    return args


def outputs(result) -> tuple:
    return result if isinstance(result, tuple) else (result,)


def check_against_numpy(row: Row, out, ref, dtype):
    outs, refs = outputs(out), outputs(ref)
    assert len(outs) == len(refs), f"{row.name}: {len(outs)} outputs, NumPy has {len(refs)}"
    rtol, atol = row.tol64 if dtype == F64 else row.tol32
    for o, r in zip(outs, refs):
        r = np.asarray(r)
        assert isinstance(o, mg.Tensor), f"{row.name} returned {type(o).__name__}"
        assert o.shape == r.shape, f"{row.name}: shape {o.shape}, NumPy gives {r.shape}"
        assert o.dtype == r.dtype, f"{row.name}: dtype {o.dtype}, NumPy gives {r.dtype}"
        np.testing.assert_allclose(o.numpy(), r, rtol=rtol, atol=atol, err_msg=row.name)


def test_every_op_of_the_issue_has_one_row():
    assert len(ROWS) == len(TABLE), "two rows share a name"
    assert sorted(set(REQUIRED) - set(ROWS)) == []


# (a) forward == NumPy, and (c) its dtype and shape --------------------------------------------

@pytest.mark.parametrize("dtype", [F64, F32], ids=["float64", "float32"])
@pytest.mark.parametrize("name", NAMES)
@given(data=st.data())
def test_forward_matches_numpy(name, dtype, data):
    row = ROWS[name]
    case = data.draw(cases(row, dtype), label="case")
    out = row.fn(*as_tensors(case), **case.kwargs)
    check_against_numpy(row, out, row.ref(*case.args, **case.kwargs), dtype)


# (b) gradients == central finite differences (float64, non-contiguous inputs) -----------------

def _checked(row: Row, case: Case):
    def f(*args):
        return row.fn(*args, **case.kwargs)
    f.__qualname__ = f"ops table row {row.name!r} with {case.kwargs}"
    return f


@pytest.mark.parametrize("name", GRAD_NAMES)
@given(data=st.data())
def test_gradcheck(name, data):
    row = ROWS[name]
    case = data.draw(cases(row, F64), label="case")
    args = as_tensors(case, views=lambda a: data.draw(mst.views(a), label="view"))
    assert gradcheck(_checked(row, case), args)


# (b2) second derivatives: the backward recorded under create_graph, differentiated again, against
# finite differences of first-order gradients (gradgradcheck), every differentiable row --------

@pytest.mark.parametrize("name", GRAD_NAMES)
@settings(max_examples=8)
@given(data=st.data())
def test_gradgradcheck(name, data):
    row = ROWS[name]
    case = data.draw(cases(row, F64, small=True), label="case")
    assert gradgradcheck(_checked(row, case), as_tensors(case))


@pytest.mark.parametrize("name", ["div", "pow", "max", "logsumexp", "var", "matmul", "getitem",
                                  "gather", "take", "cross_entropy", "log_softmax", "topk"])
@given(data=st.data())
def test_gradcheck_elementwise_small(name, data):
    row = ROWS[name]
    case = data.draw(cases(row, F64, small=True), label="case")
    assert gradcheck(_checked(row, case), as_tensors(case), mode="elementwise")


# (c) dtypes and shapes: results follow NumPy's promotion; gradients match their inputs ---------

@pytest.mark.parametrize("name", NAMES)
@given(data=st.data())
def test_dtypes_and_shapes(name, data):
    row = ROWS[name]
    case = data.draw(cases(row, F32), label="case")
    if len(case.diff) > 1 and data.draw(st.booleans(), label="mixed"):
        # one float64 input among float32 ones: NumPy promotes the result to float64
        args = list(case.args)
        args[case.diff[-1]] = args[case.diff[-1]].astype(F64)
        case = Case(tuple(args), case.kwargs, case.diff)
    args = as_tensors(case, requires_grad=row.grad)
    out = row.fn(*args, **case.kwargs)
    check_against_numpy(row, out, row.ref(*case.args, **case.kwargs), F32)
    if not row.grad:
        assert not any(o.requires_grad for o in outputs(out))
        return
    live = [o for o in outputs(out) if o.requires_grad]
    grads = mg.grad(live, [args[i] for i in case.diff],
                    grad_outputs=[mg.ones_like(o) for o in live], allow_unused=True)
    for i, g in zip(case.diff, grads):
        assert g is not None, f"{name}: input {i} got no gradient"
        assert (g.dtype, g.shape) == (args[i].dtype, args[i].shape), (
            f"{name}: gradient {g.dtype} {g.shape} for input {args[i].dtype} {args[i].shape}")


# the same table on every device present: "fake" (a GPU stand-in that refuses NumPy), "cuda" ------

DEVICES = ["fake", pytest.param("cuda", marks=pytest.mark.gpu)]


def _to(obj, device):
    """Host arrays, also inside an index tuple, copied to `device`; anything else unchanged."""
    if isinstance(obj, np.ndarray):
        return backend.to_device(obj, device)
    if isinstance(obj, tuple):
        return tuple(_to(o, device) for o in obj)
    return obj


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", NAMES)
@given(data=st.data())
def test_table_on_device(name, device, data):
    row = ROWS[name]
    case = data.draw(cases(row, F64), label="case")
    args = [mg.tensor(a, requires_grad=row.grad, device=device) if i in case.diff
            else _to(a, device) for i, a in enumerate(case.args)]
    out = outputs(row.fn(*args, **{k: _to(v, device) for k, v in case.kwargs.items()}))
    assert all(o.device == device for o in out)
    check_against_numpy(row, out, outputs(row.ref(*case.args, **case.kwargs)), F64)
    if not row.grad:
        return
    # gradients on the device equal those on the CPU
    host = as_tensors(case)
    host_out = outputs(row.fn(*host, **case.kwargs))
    live = [k for k, o in enumerate(host_out) if o.requires_grad]
    gouts = [np.cos(np.arange(host_out[k].size)).reshape(host_out[k].shape) for k in live]
    want = mg.grad([host_out[k] for k in live], [host[i] for i in case.diff], grad_outputs=gouts)
    got = mg.grad([out[k] for k in live], [args[i] for i in case.diff],
                  grad_outputs=[_to(g, device) for g in gouts])
    for g, w in zip(got, want):
        assert g.device == device
        np.testing.assert_allclose(g.numpy(), w.numpy(), rtol=1e-12, atol=1e-14)


# (d) bad input: ValueError/TypeError naming the op ----------------------------------------------

def t(*shape, dtype=F64):
    return mg.tensor(np.ones(shape, dtype), requires_grad=True)


@dataclass(frozen=True)
class Bad:
    row: str                 # the table row it belongs to
    call: Callable
    error: type
    says: tuple[str, ...]    # the message names the op and the offending values


BAD = [
    Bad("add", lambda: t(2, 3) + t(4), ValueError, ("Add", "(2, 3)", "(4,)")),
    Bad("sub", lambda: mg.sub(t(2, 3), t(3, 2)), ValueError, ("Sub", "(3, 2)")),
    Bad("mul", lambda: t(2) * t(3), ValueError, ("Mul", "(2,)", "(3,)")),
    Bad("div", lambda: t(5) / np.ones(4), ValueError, ("Div", "(5,)", "(4,)")),
    Bad("pow", lambda: t(2) ** t(3), ValueError, ("Pow",)),
    Bad("maximum", lambda: mg.maximum(t(2), t(3)), ValueError, ("Maximum",)),
    Bad("minimum", lambda: mg.minimum(t(2), t(3)), ValueError, ("Minimum",)),
    Bad("where", lambda: mg.where(np.ones(3, bool), t(2), t(2)), ValueError, ("Where", "(3,)")),
    Bad("exp", lambda: mg.exp("x"), TypeError, ("Exp", "str")),
    Bad("clip", lambda: mg.clip(t(2)), ValueError, ("clip",)),
    Bad("sum", lambda: mg.sum(t(2, 3), axis=2), ValueError, ("Sum", "axis 2", "2 dims")),
    Bad("mean", lambda: mg.mean(t(2, 3), axis=(0, -2)), ValueError, ("Mean", "repeated")),
    Bad("max", lambda: mg.max(t(2, 3), axis=-3), ValueError, ("Max", "axis -3")),
    Bad("min", lambda: mg.min(t(0, 3)), ValueError, ("Min", "empty")),
    Bad("logsumexp", lambda: mg.logsumexp(t(2), axis=1), ValueError, ("LogSumExp", "axis 1")),
    Bad("var", lambda: mg.var(t(2, 3), axis=5), ValueError, ("var", "axis 5")),
    Bad("var", lambda: mg.var(t(1, 3), axis=0, ddof=1), ValueError, ("var", "ddof=1")),
    Bad("matmul", lambda: t(2, 3) @ t(2, 3), ValueError, ("MatMul", "(2, 3)")),
    Bad("matmul", lambda: mg.matmul(t(), t(2)), ValueError, ("MatMul", "dimension")),
    Bad("reshape", lambda: mg.reshape(t(2, 3), (4,)), ValueError, ("Reshape", "(4,)")),
    Bad("transpose", lambda: t(2, 3).transpose(0, 2), ValueError, ("Transpose", "(0, 2)")),
    Bad("swapaxes", lambda: mg.swapaxes(t(2, 3), 0, 2), ValueError, ("swapaxes", "axis 2")),
    Bad("expand_dims", lambda: mg.expand_dims(t(2), 3), ValueError, ("expand_dims", "axis 3")),
    Bad("squeeze", lambda: mg.squeeze(t(2, 3), 0), ValueError, ("squeeze", "size 2")),
    Bad("broadcast_to", lambda: mg.broadcast_to(t(2, 3), (3, 3)), ValueError, ("BroadcastTo",)),
    Bad("concat", lambda: mg.concat([t(2, 3), t(3, 2)]), ValueError, ("Concat", "(3, 2)")),
    Bad("concat", lambda: mg.concat([t(2, 3), t(2, 3)], axis=2), ValueError, ("Concat", "axis 2")),
    Bad("stack", lambda: mg.stack([t(2), t(3)]), ValueError, ("Stack", "(3,)")),
    Bad("split", lambda: mg.split(t(5), 2), ValueError, ("Split", "(5,)")),
    Bad("unstack", lambda: mg.unstack(t(2, 3), axis=2), ValueError, ("Unstack", "axis 2")),
    Bad("pad", lambda: mg.pad(t(2, 3), ((1, 1), (1, 1), (1, 1))), ValueError, ("Pad", "2 dims")),
    Bad("pad", lambda: mg.pad(t(2), -1), ValueError, ("Pad", "non-negative")),
    Bad("roll", lambda: mg.roll(t(2, 3), 1, axis=2), ValueError, ("Roll", "axis 2")),
    Bad("flip", lambda: mg.flip(t(2, 3), axis=2), ValueError, ("Flip", "axis 2")),
    Bad("getitem", lambda: t(2, 3)[0.5], IndexError, ("GetItem",)),
    Bad("take", lambda: mg.take(t(3), np.array([0.0, 1.0])), TypeError, ("Take", "float64")),
    Bad("take", lambda: mg.take(t(3), np.array([0]), axis=1), ValueError, ("Take", "axis 1")),
    Bad("take", lambda: mg.take(t(3), np.array([3])), IndexError, ("Take", "size 3")),
    Bad("embedding", lambda: mg.embedding(t(4, 2), np.array([4])), IndexError,
        ("Embedding", "size 4")),
    Bad("gather", lambda: mg.gather(t(2, 3), np.zeros((2, 1)), axis=1), TypeError,
        ("Gather", "float64")),
    Bad("embedding", lambda: mg.embedding(t(4, 2), np.array([1.0])), TypeError,
        ("Embedding", "float64")),
    Bad("softmax", lambda: mg.softmax(t(2, 3), axis=2), ValueError, ("Softmax", "axis 2")),
    Bad("log_softmax", lambda: mg.log_softmax(t(3), axis=-2), ValueError, ("LogSoftmax",)),
    Bad("cross_entropy", lambda: mg.cross_entropy(t(2, 3), np.array([0, 3])), ValueError,
        ("cross_entropy", "[0, 3)", "max 3")),
    Bad("cross_entropy", lambda: mg.cross_entropy(t(2, 3), np.array([-2, 1])), ValueError,
        ("cross_entropy", "min -2")),
    Bad("cross_entropy", lambda: mg.cross_entropy(t(2, 3), np.array([0, 1, 1])), ValueError,
        ("cross_entropy", "(3,)", "(2, 3)")),
    Bad("cross_entropy", lambda: mg.cross_entropy(t(2, 3), np.array([0.0, 1.0])), TypeError,
        ("cross_entropy", "float64")),
    Bad("cross_entropy", lambda: mg.cross_entropy(t(2, 3), np.array([0, 1]), reduction="avg"),
        ValueError, ("cross_entropy", "avg")),
    Bad("binary_cross_entropy_with_logits",
        lambda: mg.binary_cross_entropy_with_logits(t(4, 1), np.ones(4)), ValueError,
        ("binary_cross_entropy_with_logits", "(4, 1)", "(4,)")),
    Bad("mse_loss", lambda: mg.mse_loss(t(4, 1), t(4)), ValueError, ("mse_loss", "(4, 1)")),
    Bad("mse_loss", lambda: mg.mse_loss(t(4), t(4), reduction="max"), ValueError,
        ("mse_loss", "max")),
    Bad("dropout", lambda: mg.dropout(t(3), p=1.0), ValueError, ("dropout", "p")),
    Bad("cosine_similarity", lambda: mg.cosine_similarity(t(2, 3), t(2, 3), axis=2), ValueError,
        ("cosine_similarity", "axis 2")),
    Bad("normalize", lambda: mg.normalize(t(2, 3), axis=-3), ValueError, ("normalize", "-3")),
    Bad("argmax", lambda: mg.argmax(t(2, 3), axis=2), ValueError, ("argmax", "axis 2")),
    Bad("argmin", lambda: mg.argmin(t(2, 3), axis=-3), ValueError, ("argmin", "axis -3")),
    Bad("topk", lambda: mg.topk(t(2, 3), k=4), ValueError, ("topk", "k=4")),
    Bad("topk", lambda: mg.topk(t(2, 3), k=1, axis=2), ValueError, ("topk", "axis 2")),
    Bad("one_hot", lambda: mg.one_hot(np.array([0, 3]), 3), ValueError, ("one_hot", "[0, 3)")),
    Bad("one_hot", lambda: mg.one_hot(np.array([0.0]), 3), TypeError, ("one_hot", "float64")),
]


@pytest.mark.parametrize("bad", BAD, ids=[f"{b.row}-{k}" for k, b in enumerate(BAD)])
def test_bad_input_names_the_op(bad):
    assert bad.row in ROWS
    with pytest.raises(bad.error) as info:
        bad.call()
    for word in bad.says:
        assert word in str(info.value), f"{word!r} missing from: {info.value}"


# --- stability at |x| = 1e4: exact, no warnings, finite gradients --------------------------------

BIG = [-1e4, 1e4, 0.0]
STABLE = {
    # name: (function of x, exact value at x = BIG, exact gradient of out.sum())
    "sigmoid": (mg.sigmoid, [0.0, 1.0, 0.5], [0.0, 0.0, 0.25]),
    "softplus": (mg.softplus, [0.0, 1e4, np.log(2)], [0.0, 1.0, 0.5]),
    # logsumexp = 1e4 + log(1 + e^-1e4 + e^-2e4) = 1e4; its gradient is softmax(x)
    "logsumexp": (mg.logsumexp, 1e4, [0.0, 1.0, 0.0]),
    # log_softmax = x - 1e4; gradient of its sum: 1 - 3 softmax(x)
    "log_softmax": (mg.log_softmax, [-2e4, 0.0, -1e4], [1.0, -2.0, 1.0]),
    # target 0 (x = -1e4): loss 1e4 - (-1e4); gradient softmax - onehot
    "cross_entropy": (lambda x: mg.cross_entropy(x[None], np.array([0])), 2e4, [-1.0, 1.0, 0.0]),
}


@pytest.mark.parametrize("dtype", [F64, F32], ids=["float64", "float32"])
@pytest.mark.parametrize("name", sorted(STABLE))
def test_stable_and_exact_at_large_inputs(name, dtype):
    fn, value, gradient = STABLE[name]
    x = mg.tensor(np.array(BIG, dtype), requires_grad=True)
    with warnings.catch_warnings(), np.errstate(all="raise"):
        warnings.simplefilter("error")
        out = fn(x)
        out.sum().backward()
    np.testing.assert_array_equal(out.numpy(), np.asarray(value, dtype))
    assert np.isfinite(x.grad.numpy()).all()
    np.testing.assert_allclose(x.grad.numpy(), gradient, atol=1e-7)


def test_binary_cross_entropy_stable_at_large_logits():
    x = mg.tensor([-1e4, 1e4, -1e4, 1e4], dtype=F64, requires_grad=True)
    y = np.array([0.0, 1.0, 1.0, 0.0])
    with warnings.catch_warnings(), np.errstate(all="raise"):
        warnings.simplefilter("error")
        loss = mg.binary_cross_entropy_with_logits(x, y, reduction="none")
        loss.sum().backward()
    # right answers cost nothing; wrong ones cost |x|; gradient sigmoid(x) - y
    np.testing.assert_array_equal(loss.numpy(), [0.0, 0.0, 1e4, 1e4])
    np.testing.assert_array_equal(x.grad.numpy(), [0.0, 0.0, -1.0, 1.0])


# --- dropout: statistics, and the gradient goes through the same mask ---------------------------

def test_dropout_statistics():
    p, n = 0.3, 40_000
    x = mg.tensor(np.full(n, 2.0), requires_grad=True)
    out = mg.dropout(x, p, rng=np.random.default_rng(1)).numpy()
    kept = out != 0
    # every kept element is scaled by 1/(1-p); the dropped fraction is p within 5 sigma
    np.testing.assert_allclose(out[kept], 2.0 / (1 - p))
    assert abs((~kept).mean() - p) < 5 * np.sqrt(p * (1 - p) / n)
    assert abs(out.mean() - 2.0) < 5 * 2.0 / (1 - p) * np.sqrt(p * (1 - p) / n)


@given(x=mst.tensors(shape=mst.shapes(1, 3), avoid=(0.0,)), p=st.sampled_from((0.2, 0.5, 0.8)))
def test_dropout_gradient_uses_the_forward_mask(x, p):
    out = mg.dropout(x, p)
    gout = np.random.default_rng(0).standard_normal(x.shape)
    out.backward(gout)
    mask = out.numpy() != 0                # x has no zeros: a zero output was dropped
    np.testing.assert_allclose(x.grad.numpy(), gout * mask / (1 - p), rtol=1e-12)


def test_dropout_is_identity_when_not_training():
    x = t(3, 4)
    assert mg.dropout(x, 0.5, training=False) is x
    assert mg.dropout(x, 0.0) is x


# --- Python scalars and NumPy arrays on either side of every operator ---------------------------

OPERATORS = {
    "+": (lambda a, b: a + b), "-": (lambda a, b: a - b), "*": (lambda a, b: a * b),
    "/": (lambda a, b: a / b), "**": (lambda a, b: a ** b), "@": (lambda a, b: a @ b),
}


@pytest.mark.parametrize("side", ["left", "right"])
@pytest.mark.parametrize("kind", ["python scalar", "numpy scalar", "ndarray"])
@pytest.mark.parametrize("op", sorted(OPERATORS))
def test_operators_mix_tensors_with_constants(op, kind, side):
    f = OPERATORS[op]
    rng = np.random.default_rng(0)
    x_np = rng.uniform(0.5, 2.0, (3, 3))
    if op == "@" and kind != "ndarray":
        pytest.skip("matmul takes no scalars (NumPy refuses them too)")
    c = {"python scalar": 1.5, "numpy scalar": np.float64(1.5),
         "ndarray": rng.uniform(0.5, 2.0, (3, 3))}[kind]
    x = mg.tensor(x_np, requires_grad=True)
    out = f(x, c) if side == "left" else f(c, x)
    ref = f(x_np, c) if side == "left" else f(c, x_np)
    assert isinstance(out, mg.Tensor)
    np.testing.assert_allclose(out.numpy(), ref, rtol=1e-12)
    assert gradcheck(lambda x: f(x, c) if side == "left" else f(c, x), [x])


def test_unary_operators():
    x_np = np.array([[-1.5, 2.0], [0.5, -3.0]])
    x = mg.tensor(x_np, requires_grad=True)
    np.testing.assert_array_equal((-x).numpy(), -x_np)
    np.testing.assert_array_equal((+x).numpy(), x_np)
    np.testing.assert_array_equal(abs(x).numpy(), np.abs(x_np))
    assert gradcheck(lambda x: -x + abs(x), [x])


@pytest.mark.parametrize("op", ["<", "<=", ">", ">=", "==", "!="])
def test_comparisons_give_bool_tensors_without_gradient(op):
    import operator
    f = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge,
         "==": operator.eq, "!=": operator.ne}[op]
    a_np, b_np = np.array([1.0, 2.0, 3.0]), np.array([2.0, 2.0, 2.0])
    a = mg.tensor(a_np, requires_grad=True)
    for other, other_np in ((mg.tensor(b_np), b_np), (b_np, b_np), (2.0, 2.0)):
        out = f(a, other)
        assert isinstance(out, mg.Tensor) and out.dtype == np.bool_ and not out.requires_grad
        np.testing.assert_array_equal(out.numpy(), f(a_np, other_np))


def test_integer_array_index_gradient_accumulates():
    x = mg.tensor(np.arange(12.0).reshape(4, 3), requires_grad=True)
    x[np.array([0, 2, 0, 0])].sum().backward()
    expected = np.zeros((4, 3))
    expected[0] = 3  # row 0 taken three times
    expected[2] = 1
    np.testing.assert_array_equal(x.grad.numpy(), expected)


def test_boolean_mask_index_gradient():
    x = mg.tensor(np.arange(6.0).reshape(2, 3), requires_grad=True)
    mask = np.array([[True, False, True], [False, False, True]])
    out = x[mask]
    np.testing.assert_array_equal(out.numpy(), [0.0, 2.0, 5.0])
    (out * mg.tensor([1.0, 2.0, 3.0], dtype=F64)).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [[1.0, 0.0, 2.0], [0.0, 0.0, 3.0]])


def test_embedding_repeated_indices_accumulate():
    w = mg.tensor(np.ones((3, 2)), requires_grad=True)
    mg.embedding(w, np.array([[2, 2], [0, 2]])).sum().backward()
    np.testing.assert_array_equal(w.grad.numpy(), [[1.0, 1.0], [0.0, 0.0], [3.0, 3.0]])


def test_docstring_examples_of_the_functions_run():
    import doctest

    from minigrad import functions
    result = doctest.testmod(functions, extraglobs={"mg": mg, "np": np},
                             optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted >= 10 and result.failed == 0


@pytest.mark.parametrize("xs,ys", [((5, 1), (1, 7)), ((3, 5, 1), (1, 1, 7)), ((1, 4), (4, 6)),
                                   ((2, 1, 3), (3, 1))])
def test_matmul_over_a_length_1_axis_equals_numpy_exactly(xs, ys):
    # products over a length-1 axis (every weight gradient of a batch of 1) take the broadcast
    # multiply path: values and gradients must be NumPy's matmul, bit for bit
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal(xs), rng.standard_normal(ys)
    x, y = mg.tensor(a, requires_grad=True), mg.tensor(b, requires_grad=True)
    out = x @ y
    np.testing.assert_array_equal(out.numpy(), a @ b)
    g = rng.standard_normal(out.shape)
    out.backward(g)
    gx, gy = g @ np.swapaxes(b, -1, -2), np.swapaxes(a, -1, -2) @ g

    def sum_to(v, shape):  # undo broadcasting: sum the added and the stretched axes
        v = v.sum(axis=tuple(range(v.ndim - len(shape))))
        return v.sum(axis=tuple(i for i, n in enumerate(shape) if n == 1), keepdims=True)

    np.testing.assert_allclose(x.grad.numpy(), sum_to(gx, a.shape), rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(y.grad.numpy(), sum_to(gy, b.shape), rtol=1e-13, atol=1e-15)
