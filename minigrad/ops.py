"""Primitive ops: one small `Function` class per op, each with its backward formula.

Each backward is written once, against the array API that raw arrays and Tensors share
(operators, `.sum`, `.reshape`, ... and `self.xp`): the engine runs it on arrays, or under
`create_graph=True` on Tensors with `self.xp` as `TensorArrays`, which records it so it can be
differentiated again. A backward returns gradients in the *broadcast* shape; the engine sums them
back to each input's shape. `self.xp` is the array module of the inputs (NumPy, CuPy).

Complex inputs: the arithmetic, matmul, exp/log/sqrt/tanh/sigmoid, shape and indexing ops take
them (their formulas hold for complex numbers: the gradients are complex derivatives, not
conjugated). Every op that orders values or gives a real loss (relu, abs, clip, max, maximum,
softplus, logsumexp, the softmax family, the losses) refuses them with a TypeError.
"""
from __future__ import annotations

import builtins
import numbers

import numpy as np

from minigrad import backend, checks, engine
from minigrad.engine import Function, make_tensor


class TensorArrays:
    """The array API of the backward formulas, on Tensors (`self.xp` of a node whose backward
    runs under create_graph): each function applies a primitive, so the backward is recorded.
    Constants (zeros, indices, arange) are arrays of the node's own module `xp`."""

    def __init__(self, xp):
        self.module = xp
        self.zeros, self.indices, self.arange = xp.zeros, xp.indices, xp.arange

    def sign(self, x):  # piecewise constant: its derivative is zero
        return make_tensor(self.module.sign(x.data))

    @staticmethod
    def where(cond, x, y):
        return Where.apply(cond, x, y)

    @staticmethod
    def exp(x):
        return Exp.apply(x)

    @staticmethod
    def log(x):
        return Log.apply(x)

    @staticmethod
    def tanh(x):
        return Tanh.apply(x)

    @staticmethod
    def broadcast_to(x, shape):
        return BroadcastTo.apply(x, shape=tuple(shape))

    @staticmethod
    def split(x, sections, axis=0):
        return Split.apply(x, sections=sections, axis=axis)

    @staticmethod
    def concatenate(xs, axis=0):
        return Concat.apply(*xs, axis=axis)

    @staticmethod
    def stack(xs, axis=0):
        return Stack.apply(*xs, axis=axis)

    @staticmethod
    def roll(x, shift, axis=None):
        return Roll.apply(x, shift=shift, axis=axis)

    @staticmethod
    def flip(x, axis=None):
        return Flip.apply(x, axis=axis)


class Primitive(Function):
    """A built-in op: its backward speaks the shared array API, so it runs on Tensors too."""

    differentiable_backward = True
    tensor_xp = TensorArrays


def scatter_add(xp, shape, index, g):
    """zeros(shape) with `g` added at `index` (repeated indices add up): the gradient of
    indexing. On a Tensor `g` (create_graph) it is the `ScatterAdd` op, differentiable again."""
    if isinstance(g, engine.Tensor):
        return ScatterAdd.apply(g, index=index, shape=shape)
    gx = xp.zeros(shape, g.dtype)
    if _is_advanced(index):
        xp.add.at(gx, index, g)
    else:
        gx[index] = g
    return gx


def refuse_complex(*xs) -> None:
    """For the ops that order values or give a real result: complex inputs are refused."""
    for x in xs:
        if (getattr(x, "dtype", None) is not None and x.dtype.kind == "c") or type(x) is complex:
            raise TypeError(f"complex input ({getattr(x, 'dtype', 'complex')}) is not supported: "
                            "this op orders values or gives a real result")


# --- elementwise, binary ----------------------------------------------------------------------

class Add(Primitive):
    """out = x + y;  gx = gout, gy = gout"""
    def forward(self, x, y):
        return x + y

    def backward(self, gout):
        return gout, gout


class Sub(Primitive):
    """out = x - y;  gx = gout, gy = -gout"""
    def forward(self, x, y):
        return x - y

    def backward(self, gout):
        return gout, (-gout if self.needs_input_grad[1] else None)


class Mul(Primitive):
    """out = x * y;  gx = gout * y, gy = gout * x"""
    def forward(self, x, y):
        self.save_for_backward(x, y)
        return x * y

    def backward(self, gout):
        x, y = self.saved
        n = self.needs_input_grad
        return (gout * y if n[0] else None), (gout * x if n[1] else None)


class Div(Primitive):
    """out = x / y;  gx = gout / y, gy = -gout * x / y**2"""
    def forward(self, x, y):
        self.save_for_backward(x, y)
        return x / y

    def backward(self, gout):
        x, y = self.saved
        n = self.needs_input_grad
        gx = gout / y if n[0] else None
        gy = -gout * x / (y * y) if n[1] else None
        return gx, gy


class Pow(Primitive):
    """out = x ** y;  gx = gout * y * x**(y-1), gy = gout * out * log(x)"""
    saved_outputs = ((2, 0),)  # saved[2] is output 0 (a live tensor under create_graph)

    def forward(self, x, y):
        out = x ** y
        self.save_for_backward(x, y, out)
        return out

    def backward(self, gout):
        x, y, out = self.saved
        n = self.needs_input_grad
        gx = gout * y * x ** (y - 1) if n[0] else None
        gy = None
        if n[1]:
            xp = self.xp
            with np.errstate(divide="ignore", invalid="ignore"):
                logx = xp.where(x > 0, xp.log(xp.where(x > 0, x, 1)), 0)
            gy = gout * out * logx
        return gx, gy


class Maximum(Primitive):
    """out = max(x, y);  the gradient goes to the larger input (split evenly on ties)"""
    def forward(self, x, y):
        refuse_complex(x, y)
        self.save_for_backward(x, y)
        return self.xp.maximum(x, y)

    def backward(self, gout):
        x, y = self.saved
        wx = (x > y) + (x == y) * gout.dtype.type(0.5)  # a typed 0.5 keeps float32 float32
        return gout * wx, gout * (1 - wx)


class Minimum(Primitive):
    """out = min(x, y);  the gradient goes to the smaller input (split evenly on ties)"""
    def forward(self, x, y):
        refuse_complex(x, y)
        self.save_for_backward(x, y)
        return self.xp.minimum(x, y)

    def backward(self, gout):
        x, y = self.saved
        wx = (x < y) + (x == y) * gout.dtype.type(0.5)
        return gout * wx, gout * (1 - wx)


class Where(Primitive):
    """out = cond ? x : y;  gx = gout * cond, gy = gout * !cond"""
    def forward(self, cond, x, y):
        self.save_for_backward(cond)
        return self.xp.where(cond, x, y)

    def backward(self, gout):
        (cond,) = self.saved
        z = self.xp.zeros((), gout.dtype)
        return None, self.xp.where(cond, gout, z), self.xp.where(cond, z, gout)


# --- elementwise, unary -----------------------------------------------------------------------

class Neg(Primitive):
    """out = -x;  gx = -gout"""
    def forward(self, x):
        return -x

    def backward(self, gout):
        return -gout


class Exp(Primitive):
    """out = exp(x);  gx = gout * out"""
    saved_outputs = ((0, 0),)  # saved[0] is output 0 (a live tensor under create_graph)

    def forward(self, x):
        out = self.xp.exp(x)
        self.save_for_backward(out)
        return out

    def backward(self, gout):
        return gout * self.saved[0]


class Log(Primitive):
    """out = log(x);  gx = gout / x"""
    def forward(self, x):
        self.save_for_backward(x)
        return self.xp.log(x)

    def backward(self, gout):
        return gout / self.saved[0]


class Sqrt(Primitive):
    """out = sqrt(x);  gx = gout / (2 out)"""
    saved_outputs = ((0, 0),)  # saved[0] is output 0 (a live tensor under create_graph)

    def forward(self, x):
        out = self.xp.sqrt(x)
        self.save_for_backward(out)
        return out

    def backward(self, gout):
        return gout / (2 * self.saved[0])


class Abs(Primitive):
    """out = |x|;  gx = gout * sign(x)"""
    def forward(self, x):
        refuse_complex(x)
        self.save_for_backward(x)
        return self.xp.abs(x)

    def backward(self, gout):
        return gout * self.xp.sign(self.saved[0])


class Tanh(Primitive):
    """out = tanh(x);  gx = gout * (1 - out**2)"""
    saved_outputs = ((0, 0),)  # saved[0] is output 0 (a live tensor under create_graph)

    def forward(self, x):
        out = self.xp.tanh(x)
        self.save_for_backward(out)
        return out

    def backward(self, gout):
        out = self.saved[0]
        return gout * (1 - out * out)


class Sigmoid(Primitive):
    """out = 1 / (1 + exp(-x)), computed as (1 + tanh(x/2)) / 2;  gx = gout * out * (1 - out)

    The tanh form never overflows and is several times faster than an exp-based one (it matters
    in RNN gates). Its error is absolute (about one ulp of 1), so tiny outputs for x << 0 lose
    relative precision (0 below x = -37 in float64, -17 in float32): for log-probabilities use
    `-softplus(-x)` or `binary_cross_entropy_with_logits`, which are exact there.
    """
    saved_outputs = ((0, 0),)  # saved[0] is output 0 (a live tensor under create_graph)

    def forward(self, x):
        out = self.xp.tanh(x * 0.5)
        out *= 0.5
        out += 0.5
        self.save_for_backward(out)
        return out

    def backward(self, gout):
        out = self.saved[0]
        return gout * out * (1 - out)


class Relu(Primitive):
    """out = max(x, 0);  gx = gout * (x > 0)"""
    saved_outputs = ((0, 0),)  # saved[0] is output 0 (a live tensor under create_graph)

    def forward(self, x):
        refuse_complex(x)
        out = self.xp.maximum(x, 0)
        self.save_for_backward(out)
        return out

    def backward(self, gout):
        return gout * (self.saved[0] > 0)


class LeakyRelu(Primitive):
    """out = x if x > 0 else slope * x;  gx = gout * (1 if x > 0 else slope)"""
    def forward(self, x, *, slope):
        refuse_complex(x)
        self.slope = slope
        self.save_for_backward(x)
        return self.xp.where(x > 0, x, x * slope)

    def backward(self, gout):
        x = self.saved[0]
        return self.xp.where(x > 0, gout, gout * self.slope)


class Elu(Primitive):
    """out = x if x > 0 else alpha * (exp(x) - 1);  gx = gout * (1 if x > 0 else out + alpha)"""
    saved_outputs = ((1, 0),)  # saved[1] is output 0 (a live tensor under create_graph)

    def forward(self, x, *, alpha):
        refuse_complex(x)
        self.alpha = alpha
        xp = self.xp
        out = xp.where(x > 0, x, alpha * xp.expm1(xp.minimum(x, 0)))
        self.save_for_backward(x, out)
        return out

    def backward(self, gout):
        x, out = self.saved
        return self.xp.where(x > 0, gout, gout * (out + self.alpha))


def _exp_neg(xp, a):
    """exp(a) for a <= 0 (an input shifted by its max): an underflow to 0 is then the exact
    rounded result, so its flag is silenced even under `np.errstate(all="raise")`."""
    with np.errstate(under="ignore"):
        return xp.exp(a)


class Softplus(Primitive):
    """out = log(1 + exp(x)) = max(x, 0) + log1p(exp(-|x|));  gx = gout * sigmoid(x)"""
    def forward(self, x):
        refuse_complex(x)
        xp = self.xp
        self.save_for_backward(x)
        return xp.maximum(x, 0) + xp.log1p(_exp_neg(xp, -xp.abs(x)))

    def backward(self, gout):
        x = self.saved[0]
        return gout * (0.5 * self.xp.tanh(0.5 * x) + 0.5)


class Clip(Primitive):
    """out = min(max(x, lo), hi);  gx = gout where lo <= x <= hi, else 0"""
    def forward(self, x, *, lo, hi):
        refuse_complex(x, lo, hi)
        inside = True  # the mask is saved, not x: it is constant (its derivative is zero)
        if lo is not None:
            inside = inside & (x >= lo)
        if hi is not None:
            inside = inside & (x <= hi)
        self.save_for_backward(inside)
        return self.xp.clip(x, lo, hi)

    def backward(self, gout):
        return gout * self.saved[0]


class AsType(Primitive):
    """out = x cast to dtype;  gx = gout cast back"""
    def forward(self, x, *, dtype):
        self.src = x.dtype
        return x.astype(dtype)

    def backward(self, gout):
        return gout.astype(self.src)


class ToDevice(Primitive):
    """out = x copied to another device;  gx = gout copied back"""
    def forward(self, x, *, device):
        self.src = backend.device_of(x)
        return backend.to_device(x, device)

    def backward(self, gout):
        if isinstance(gout, engine.Tensor):
            return gout.to(self.src)
        return backend.to_device(gout, self.src)


# --- reductions -------------------------------------------------------------------------------

def _expand(g, shape, axes, keepdims):
    """Reshape a reduced gradient so it broadcasts against the input shape."""
    if keepdims or not axes:
        return g
    kept = [1 if i in axes else n for i, n in enumerate(shape)]
    return g.reshape(kept)


class Sum(Primitive):
    """out = sum(x, axis);  gx = gout broadcast to x's shape"""
    def forward(self, x, *, axis=None, keepdims=False):
        self.axes = checks.axes(axis, x.ndim, None)
        self.shape, self.keepdims = x.shape, keepdims
        return x.sum(axis=self.axes, keepdims=keepdims)

    def backward(self, gout):
        g = _expand(gout, self.shape, self.axes, self.keepdims)
        return self.xp.broadcast_to(g, self.shape)


class Mean(Primitive):
    """out = mean(x, axis);  gx = gout / n broadcast to x's shape"""
    def forward(self, x, *, axis=None, keepdims=False):
        self.axes = checks.axes(axis, x.ndim, None)
        self.shape, self.keepdims = x.shape, keepdims
        self.n = int(np.prod([x.shape[a] for a in self.axes])) if self.axes else 1
        return x.mean(axis=self.axes, keepdims=keepdims)

    def backward(self, gout):
        g = _expand(gout, self.shape, self.axes, self.keepdims) / self.n
        return self.xp.broadcast_to(g, self.shape)


class Max(Primitive):
    """out = max(x, axis);  the gradient goes to the maxima (split evenly on ties)"""
    fn = "max"  # the array method used, so Min only changes this

    def forward(self, x, *, axis=None, keepdims=False):
        refuse_complex(x)
        self.axes = checks.axes(axis, x.ndim, None)
        self.keepdims = keepdims
        if x.size == 0:
            raise ValueError("cannot reduce an empty array")
        out = getattr(x, self.fn)(axis=self.axes, keepdims=True)
        self.save_for_backward(x, out)
        return out if keepdims else out.reshape(
            [n for i, n in enumerate(x.shape) if i not in self.axes])

    def backward(self, gout):
        x, out = self.saved
        g = _expand(gout, x.shape, self.axes, self.keepdims)
        w = (x == out).astype(g.dtype)
        return g * w / w.sum(axis=self.axes, keepdims=True)


class Min(Max):
    """out = min(x, axis);  the gradient goes to the minima (split evenly on ties)"""
    fn = "min"


class LogSumExp(Primitive):
    """out = log(sum(exp(x), axis)), shifted by the max so it never overflows;
    gx = gout * exp(x - out)"""
    saved_outputs = ((1, 0),)  # saved[1] is output 0 (a live tensor under create_graph)

    def forward(self, x, *, axis=None, keepdims=False):
        refuse_complex(x)
        xp = self.xp
        self.axes = checks.axes(axis, x.ndim, None)
        self.keepdims = keepdims
        m = x.max(axis=self.axes, keepdims=True)
        m = xp.where(xp.isfinite(m), m, 0)
        out = xp.log(_exp_neg(xp, x - m).sum(axis=self.axes, keepdims=True)) + m
        if not keepdims:
            out = out.reshape([n for i, n in enumerate(x.shape) if i not in self.axes])
        self.save_for_backward(x, out)
        return out

    def backward(self, gout):
        x, out = self.saved
        g = _expand(gout, x.shape, self.axes, self.keepdims)
        return g * _exp_neg(self.xp, x - _expand(out, x.shape, self.axes, self.keepdims))


# --- matrix product ---------------------------------------------------------------------------

def array_matmul(a, b):
    """a @ b on raw arrays of 2 or more dims, for ops and kernels. A product over a length-1
    axis is an outer product, which NumPy's matmul computes about 4x slower than the broadcast
    multiply (exactly equal: one product per element); it is every weight gradient of a batch
    of 1."""
    if a.shape[-1] == 1 and b.shape[-2] == 1:
        return a * b
    return a @ b


class MatMul(Primitive):
    """out = x @ y (batched, broadcasting like NumPy);  gx = gout @ y^T, gy = x^T @ gout"""
    def forward(self, x, y):
        if x.ndim == 0 or y.ndim == 0:
            raise ValueError("inputs must have at least 1 dimension (use * for scalars)")
        self.save_for_backward(x, y)
        return array_matmul(x, y) if x.ndim > 1 and y.ndim > 1 else x @ y

    def backward(self, gout):
        x, y = self.saved
        n = self.needs_input_grad
        # NumPy treats a 1-D x as a (1, k) row and a 1-D y as a (k, 1) column: do the same to
        # gout, then drop the added axis; the engine sums broadcast batch axes back
        x2 = x[None, :] if x.ndim == 1 else x
        y2 = y[:, None] if y.ndim == 1 else y
        g2 = gout[..., None] if y.ndim == 1 else gout
        g2 = g2[..., None, :] if x.ndim == 1 else g2
        gx = gy = None
        if n[0]:
            gx = array_matmul(g2, y2.swapaxes(-1, -2))
            if x.ndim == 1:
                gx = gx[..., 0, :]
        if n[1]:
            gy = array_matmul(x2.swapaxes(-1, -2), g2)
            if y.ndim == 1:
                gy = gy[..., 0]
        return gx, gy


# --- shape ops --------------------------------------------------------------------------------

class Reshape(Primitive):
    """out = x viewed with a new shape;  gx = gout reshaped back"""
    def forward(self, x, *, shape):
        self.shape = x.shape
        return x.reshape(shape)

    def backward(self, gout):
        return gout.reshape(self.shape)


class Transpose(Primitive):
    """out = x with axes permuted;  gx = gout with the inverse permutation

    The inverse is found in forward (a reversal, `x.T`, is its own inverse), so backward is one
    view."""
    def forward(self, x, *, axes=None):
        n = x.ndim
        if axes is None:
            self.axes = self.inverse = tuple(range(n - 1, -1, -1))
            return x.transpose()
        given = tuple(axes)
        axes = tuple([int(a) % n if -n <= a < n else -1 for a in given])
        if sorted(axes) != list(range(n)):
            raise ValueError(f"axes {given} are not a permutation of {n} dims")
        inverse = [0] * n
        for i, a in enumerate(axes):
            inverse[a] = i
        self.axes, self.inverse = axes, tuple(inverse)
        return x.transpose(axes)

    def backward(self, gout):
        return gout.transpose(self.inverse)


class BroadcastTo(Primitive):
    """out = x broadcast to shape;  gx = gout (the engine sums it back to x's shape)"""
    def forward(self, x, *, shape):
        return self.xp.broadcast_to(x, shape)

    def backward(self, gout):
        return gout


class GetItem(Primitive):
    """out = x[index];  gx = zeros with gout scattered back (repeated indices accumulate)

    Saves the index's items (an index array is memory the graph holds until backward)."""
    def forward(self, x, *, index):
        try:
            out = x[index]
        except IndexError as e:
            kind = checks.IndexTypeError if _wrong_index_kind(index) else checks.IndexRangeError
            raise kind(str(e)) from None
        self.shape, self.many = x.shape, type(index) is tuple
        self.save_for_backward(*(index if self.many else (index,)))
        return out

    def backward(self, gout):
        index = self.saved if self.many else self.saved[0]
        return scatter_add(self.xp, self.shape, index, gout)


class ScatterAdd(Primitive):
    """out = zeros(shape) with x added at index (repeats add up);  gx = gout[index]"""
    def forward(self, x, *, index, shape):
        self.many = type(index) is tuple
        self.save_for_backward(*(index if self.many else (index,)))
        return scatter_add(self.xp, shape, index, x)

    def backward(self, gout):
        return gout[self.saved if self.many else self.saved[0]]


def _wrong_index_kind(index) -> bool:
    """Whether an index NumPy refused holds an item of the wrong kind (a float, a string), as
    opposed to one out of range."""
    for i in index if isinstance(index, tuple) else (index,):
        if isinstance(i, (numbers.Integral, slice, type(None), type(Ellipsis))):
            continue
        kind = getattr(getattr(i, "dtype", None), "kind", None)
        if kind is None and isinstance(i, list):
            kind = np.asarray(i).dtype.kind if i else "i"
        if kind is None or kind not in "iub":
            return True
    return False


def _is_advanced(index):
    items = index if isinstance(index, tuple) else (index,)
    return any(not isinstance(i, (numbers.Integral, slice, type(None), type(Ellipsis)))
               for i in items)


class Concat(Primitive):
    """out = concatenate(xs, axis);  gx_i = the slice of gout that x_i filled"""
    def forward(self, *xs, axis=0):
        if not xs:
            raise ValueError("no tensors given")
        self.axis = checks.axis(axis, xs[0].ndim, None)
        self.sizes = [x.shape[self.axis] if x.ndim else 1 for x in xs]
        return self.xp.concatenate(xs, axis=self.axis)

    def backward(self, gout):
        splits = np.cumsum(self.sizes)[:-1].tolist()  # host ints: a device xp refuses ndarrays
        return tuple(self.xp.split(gout, splits, axis=self.axis))


class Stack(Primitive):
    """out = stack(xs, axis);  gx_i = gout taken at position i along axis"""
    def forward(self, *xs, axis=0):
        if not xs:
            raise ValueError("no tensors given")
        out = self.xp.stack(xs, axis=checks.axis(axis, xs[0].ndim + 1, None))
        self.lead = (slice(None),) * checks.axis(axis, out.ndim, None)
        return out

    def backward(self, gout):
        return tuple([gout[self.lead + (i,)] for i in range(gout.shape[len(self.lead)])])


class Unstack(Primitive):
    """outs = the slices of x along axis;  gx = stack(gouts, axis)"""
    def forward(self, x, *, axis=0):
        self.axis = checks.axis(axis, x.ndim, None)
        lead = (slice(None),) * self.axis
        return tuple([x[lead + (i,)] for i in range(x.shape[self.axis])])

    def backward(self, *gouts):
        return self.xp.stack(gouts, axis=self.axis)


class Split(Primitive):
    """outs = split(x, sections, axis);  gx = the gouts concatenated"""
    def forward(self, x, *, sections, axis=0):
        self.axis = axis = checks.axis(axis, x.ndim, None)
        if type(sections) is int and sections > 0:
            n = x.shape[axis]
            if n % sections == 0 and n > 0:  # equal parts: plain slices (xp.split is slow Python)
                k, lead = n // sections, (slice(None),) * axis
                return tuple([x[lead + (slice(j, j + k),)] for j in range(0, n, k)])
        return tuple(self.xp.split(x, sections, axis=axis))

    def backward(self, *gouts):
        return self.xp.concatenate(gouts, axis=self.axis)


class Pad(Primitive):
    """out = x padded with a constant;  gx = the inner slice of gout"""
    def forward(self, x, *, pad_width, value=0.0):
        pw = np.asarray(pad_width) if np.size(pad_width) else np.zeros((0, 2), np.int64)
        if pw.dtype.kind not in "iu" or pw.ndim > 2 or (pw < 0).any():
            raise ValueError(f"pad_width {pad_width} must be non-negative integers")
        try:
            pw = np.broadcast_to(pw, (x.ndim, 2))
        except ValueError:
            raise ValueError(f"pad_width {pad_width} does not fit {x.ndim} dims") from None
        self.slices = tuple(slice(int(a), int(a) + n) for (a, _), n in zip(pw, x.shape))
        return self.xp.pad(x, [tuple(int(v) for v in p) for p in pw], constant_values=value)

    def backward(self, gout):
        return gout[self.slices]


class Roll(Primitive):
    """out = roll(x, shift, axis);  gx = roll(gout, -shift, axis)"""
    def forward(self, x, *, shift, axis=None):
        self.shift, self.axis = shift, axis
        return self.xp.roll(x, shift, axis=axis)

    def backward(self, gout):
        shift = self.shift
        neg = -shift if isinstance(shift, numbers.Integral) else tuple(-s for s in shift)
        return self.xp.roll(gout, neg, axis=self.axis)


class Flip(Primitive):
    """out = flip(x, axis);  gx = flip(gout, axis)"""
    def forward(self, x, *, axis=None):
        self.axis = axis
        return self.xp.flip(x, axis=axis)

    def backward(self, gout):
        return self.xp.flip(gout, axis=self.axis)


# --- gathering --------------------------------------------------------------------------------

class Take(Primitive):
    """out = take(x, indices, axis);  gx = zeros with gout added at the indices (repeats add)"""
    negative = True  # NumPy's take counts negative indices from the end

    def forward(self, x, indices, *, axis=0):
        self.axis = checks.axis(axis, x.ndim, None)
        checks.index_array(indices, None, "indices", x.shape[self.axis],
                           negative=self.negative)
        self.save_for_backward(indices)
        self.shape = x.shape
        return self.xp.take(x, indices, axis=self.axis)

    def backward(self, gout):
        (indices,) = self.saved
        index = (slice(None),) * self.axis + (indices,)  # take(x, i, axis) == x[:, ..., i]
        return scatter_add(self.xp, self.shape, index, gout), None


class Embedding(Take):
    """out = weight[indices] (rows of an embedding table);  gweight: rows of gout added back"""
    negative = False  # an id is a row number in [0, num_embeddings): -1 is a bug, not the last


class Gather(Primitive):
    """out = take_along_axis(x, index, axis);  gx = zeros with gout added at index"""
    def forward(self, x, index, *, axis):
        a = self.axis = checks.axis(axis, x.ndim, None)
        checks.index_array(index, None, "index", x.shape[a], negative=True)
        out = self.xp.take_along_axis(x, index, axis=a)
        # index and x may broadcast against each other: scatter into the broadcast shape and
        # let the engine sum the gradient back to x's shape
        self.gshape = out.shape[:a] + x.shape[a:a + 1] + out.shape[a + 1:]
        self.save_for_backward(self.xp.broadcast_to(index, out.shape))
        return out

    def backward(self, gout):
        (index,) = self.saved
        grid = list(self.xp.indices(index.shape, sparse=True))
        grid[self.axis] = index
        return scatter_add(self.xp, self.gshape, tuple(grid), gout), None


# --- nn primitives ----------------------------------------------------------------------------

class Softmax(Primitive):
    """out = exp(x - logsumexp(x));  gx = out * (gout - sum(gout * out))"""
    saved_outputs = ((0, 0),)  # saved[0] is output 0 (a live tensor under create_graph)

    def forward(self, x, *, axis=-1):
        refuse_complex(x)
        self.axis = axis
        e = _exp_neg(self.xp, x - x.max(axis=axis, keepdims=True))
        out = e / e.sum(axis=axis, keepdims=True)
        self.save_for_backward(out)
        return out

    def backward(self, gout):
        out = self.saved[0]
        return out * (gout - (gout * out).sum(axis=self.axis, keepdims=True))


class LogSoftmax(Primitive):
    """out = x - logsumexp(x);  gx = gout - exp(out) * sum(gout)"""
    saved_outputs = ((0, 0),)  # saved[0] is output 0 (a live tensor under create_graph)

    def forward(self, x, *, axis=-1):
        refuse_complex(x)
        xp = self.xp
        self.axis = axis
        z = x - x.max(axis=axis, keepdims=True)
        out = z - xp.log(_exp_neg(xp, z).sum(axis=axis, keepdims=True))
        self.save_for_backward(out)
        return out

    def backward(self, gout):
        out = self.saved[0]
        return gout - _exp_neg(self.xp, out) * gout.sum(axis=self.axis, keepdims=True)


class CrossEntropy(Primitive):
    """loss_i = logsumexp(x_i) - x_i[t_i] over the class axis (last), computed stably;
    gx = (softmax(x) - onehot(t)) * gout, zero for ignored targets"""
    def forward(self, x, target, *, ignore_index, reduction):
        refuse_complex(x)
        xp = self.xp
        z = x - x.max(axis=-1, keepdims=True)
        logp = z - xp.log(_exp_neg(xp, z).sum(axis=-1, keepdims=True))
        keep = target != ignore_index
        safe = xp.where(keep, target, 0)
        nll = -xp.take_along_axis(logp, safe[..., None], axis=-1)[..., 0] * keep
        self.reduction = reduction
        self.count = builtins.max(int(keep.sum()), 1)
        self.save_for_backward(x, safe, keep)  # x, not logp: backward is then a function of x
        if reduction == "none":
            return nll
        total = nll.sum()
        return total / self.count if reduction == "mean" else total

    def backward(self, gout):
        x, safe, keep = self.saved
        xp = self.xp
        e = _exp_neg(xp, x - x.max(axis=-1, keepdims=True))
        p = e / e.sum(axis=-1, keepdims=True)
        onehot = safe[..., None] == xp.arange(x.shape[-1])
        scale = gout[..., None] if self.reduction == "none" else (
            gout / self.count if self.reduction == "mean" else gout)
        return (p - onehot) * (keep[..., None] * scale), None


class BCEWithLogits(Primitive):
    """loss = max(x, 0) - x*y + log1p(exp(-|x|));  gx = (sigmoid(x) - y), gy = -x"""
    def forward(self, x, y):
        refuse_complex(x, y)
        xp = self.xp
        self.save_for_backward(x, y)
        return xp.maximum(x, 0) - x * y + xp.log1p(_exp_neg(xp, -xp.abs(x)))

    def backward(self, gout):
        x, y = self.saved
        n = self.needs_input_grad
        gx = gout * (0.5 * self.xp.tanh(0.5 * x) + 0.5 - y) if n[0] else None
        gy = -gout * x if n[1] else None
        return gx, gy


class Dropout(Primitive):
    """out = x * mask / (1 - p), mask ~ Bernoulli(1 - p) from the default generator;
    gx = gout * mask / (1 - p)"""
    def forward(self, x, *, p, rng):
        keep = rng.random(x.shape) >= p
        scale = np.asarray(1.0 / (1.0 - p), dtype=x.dtype)
        mask = keep * scale
        if self.xp is not np:
            mask = backend.to_device(mask.astype(x.dtype), backend.device_of(x))
        else:
            mask = mask.astype(x.dtype, copy=False)
        self.save_for_backward(mask)
        return x * mask

    def backward(self, gout):
        return gout * self.saved[0]


