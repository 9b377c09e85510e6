"""Primitive ops: one small `Function` per op, then the functions users call (`mg.exp(x)`).

Each backward returns the gradient in the *broadcast* shape; the engine sums it back to the
input's shape (see `engine.unbroadcast`). `self.xp` is the array module of the inputs.
"""
from __future__ import annotations

import builtins
import numbers

import numpy as np

from minigrad.engine import Function
from minigrad.tensor import Tensor, _as_array, _default_dtype

# --- elementwise, binary ----------------------------------------------------------------------

class Add(Function):
    """out = x + y;  gx = gout, gy = gout"""
    def forward(self, x, y):
        return x + y

    def backward(self, gout):
        return gout, gout


class Sub(Function):
    """out = x - y;  gx = gout, gy = -gout"""
    def forward(self, x, y):
        return x - y

    def backward(self, gout):
        return gout, (-gout if self.needs_input_grad[1] else None)


class Mul(Function):
    """out = x * y;  gx = gout * y, gy = gout * x"""
    def forward(self, x, y):
        self.save_for_backward(x, y)
        return x * y

    def backward(self, gout):
        x, y = self.saved
        n = self.needs_input_grad
        return (gout * y if n[0] else None), (gout * x if n[1] else None)


class Div(Function):
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


class Pow(Function):
    """out = x ** y;  gx = gout * y * x**(y-1), gy = gout * out * log(x)"""
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


class Maximum(Function):
    """out = max(x, y);  the gradient goes to the larger input (split evenly on ties)"""
    def forward(self, x, y):
        self.save_for_backward(x, y)
        return self.xp.maximum(x, y)

    def backward(self, gout):
        x, y = self.saved
        wx = (x > y) + gout.dtype.type(0.5) * (x == y)  # a typed 0.5 keeps float32 float32
        return gout * wx, gout * (1 - wx)


class Minimum(Function):
    """out = min(x, y);  the gradient goes to the smaller input (split evenly on ties)"""
    def forward(self, x, y):
        self.save_for_backward(x, y)
        return self.xp.minimum(x, y)

    def backward(self, gout):
        x, y = self.saved
        wx = (x < y) + gout.dtype.type(0.5) * (x == y)
        return gout * wx, gout * (1 - wx)


class Where(Function):
    """out = cond ? x : y;  gx = gout * cond, gy = gout * !cond"""
    def forward(self, cond, x, y):
        self.save_for_backward(cond)
        return self.xp.where(cond, x, y)

    def backward(self, gout):
        (cond,) = self.saved
        z = self.xp.zeros((), gout.dtype)
        return None, self.xp.where(cond, gout, z), self.xp.where(cond, z, gout)


# --- elementwise, unary -----------------------------------------------------------------------

class Neg(Function):
    """out = -x;  gx = -gout"""
    def forward(self, x):
        return -x

    def backward(self, gout):
        return -gout


class Exp(Function):
    """out = exp(x);  gx = gout * out"""
    def forward(self, x):
        out = self.xp.exp(x)
        self.save_for_backward(out)
        return out

    def backward(self, gout):
        return gout * self.saved[0]


class Log(Function):
    """out = log(x);  gx = gout / x"""
    def forward(self, x):
        self.save_for_backward(x)
        return self.xp.log(x)

    def backward(self, gout):
        return gout / self.saved[0]


class Sqrt(Function):
    """out = sqrt(x);  gx = gout / (2 out)"""
    def forward(self, x):
        out = self.xp.sqrt(x)
        self.save_for_backward(out)
        return out

    def backward(self, gout):
        return gout / (2 * self.saved[0])


class Abs(Function):
    """out = |x|;  gx = gout * sign(x)"""
    def forward(self, x):
        self.save_for_backward(x)
        return self.xp.abs(x)

    def backward(self, gout):
        return gout * self.xp.sign(self.saved[0])


class Tanh(Function):
    """out = tanh(x);  gx = gout * (1 - out**2)"""
    def forward(self, x):
        out = self.xp.tanh(x)
        self.save_for_backward(out)
        return out

    def backward(self, gout):
        out = self.saved[0]
        return gout * (1 - out * out)


class Sigmoid(Function):
    """out = 1 / (1 + exp(-x)), computed as (1 + tanh(x/2)) / 2;  gx = gout * out * (1 - out)

    The tanh form never overflows and is several times faster than an exp-based one (it matters
    in RNN gates). Its error is absolute (about one ulp of 1), so tiny outputs for x << 0 lose
    relative precision (0 below x = -37 in float64, -17 in float32): for log-probabilities use
    `-softplus(-x)` or `binary_cross_entropy_with_logits`, which are exact there.
    """
    def forward(self, x):
        out = self.xp.tanh(x * 0.5)
        out *= 0.5
        out += 0.5
        self.save_for_backward(out)
        return out

    def backward(self, gout):
        out = self.saved[0]
        return gout * out * (1 - out)


class Relu(Function):
    """out = max(x, 0);  gx = gout * (x > 0)"""
    def forward(self, x):
        out = self.xp.maximum(x, 0)
        self.save_for_backward(out)
        return out

    def backward(self, gout):
        return gout * (self.saved[0] > 0)


class LeakyRelu(Function):
    """out = x if x > 0 else slope * x;  gx = gout * (1 if x > 0 else slope)"""
    def forward(self, x, *, slope):
        self.slope = slope
        self.save_for_backward(x)
        return self.xp.where(x > 0, x, x * slope)

    def backward(self, gout):
        x = self.saved[0]
        return self.xp.where(x > 0, gout, gout * self.slope)


class Elu(Function):
    """out = x if x > 0 else alpha * (exp(x) - 1);  gx = gout * (1 if x > 0 else out + alpha)"""
    def forward(self, x, *, alpha):
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


class Softplus(Function):
    """out = log(1 + exp(x)) = max(x, 0) + log1p(exp(-|x|));  gx = gout * sigmoid(x)"""
    def forward(self, x):
        xp = self.xp
        self.save_for_backward(x)
        return xp.maximum(x, 0) + xp.log1p(_exp_neg(xp, -xp.abs(x)))

    def backward(self, gout):
        x = self.saved[0]
        return gout * (0.5 * self.xp.tanh(0.5 * x) + 0.5)


class Clip(Function):
    """out = min(max(x, lo), hi);  gx = gout where lo <= x <= hi, else 0"""
    def forward(self, x, *, lo, hi):
        self.save_for_backward(x)
        self.lo, self.hi = lo, hi
        return self.xp.clip(x, lo, hi)

    def backward(self, gout):
        x = self.saved[0]
        mask = True
        if self.lo is not None:
            mask = mask & (x >= self.lo)
        if self.hi is not None:
            mask = mask & (x <= self.hi)
        return gout * mask


class AsType(Function):
    """out = x cast to dtype;  gx = gout cast back"""
    def forward(self, x, *, dtype):
        self.src = x.dtype
        return x.astype(dtype)

    def backward(self, gout):
        return gout.astype(self.src)


class ToDevice(Function):
    """out = x copied to another device;  gx = gout copied back"""
    def forward(self, x, *, device):
        from minigrad import backend
        self.src = backend.device_of(x)
        return backend.to_device(x, device)

    def backward(self, gout):
        from minigrad import backend
        return backend.to_device(gout, self.src)


# --- reductions -------------------------------------------------------------------------------

def _norm_axis(axis, ndim, op=None):
    """`axis` (None, int or tuple, negatives allowed) as a sorted tuple of distinct axes.

    `op` names the caller in errors; forward methods leave it out, as `apply` adds the op name.
    """
    where = f"{op}: " if op else ""
    if axis is None:
        return tuple(range(ndim))
    axes = (axis,) if isinstance(axis, numbers.Integral) else tuple(axis)
    out = []
    for a in axes:
        if not isinstance(a, numbers.Integral) or not -ndim <= a < ndim:
            raise ValueError(f"{where}axis {axis} is out of range for an array of {ndim} dims")
        out.append(int(a) % ndim)
    if len(set(out)) != len(out):
        raise ValueError(f"{where}repeated axis in {axis}")
    return tuple(sorted(out))


def _expand(g, shape, axes, keepdims):
    """Reshape a reduced gradient so it broadcasts against the input shape."""
    if keepdims or not axes:
        return g
    kept = [1 if i in axes else n for i, n in enumerate(shape)]
    return g.reshape(kept)


class Sum(Function):
    """out = sum(x, axis);  gx = gout broadcast to x's shape"""
    def forward(self, x, *, axis=None, keepdims=False):
        self.axes = _norm_axis(axis, x.ndim)
        self.shape, self.keepdims = x.shape, keepdims
        return x.sum(axis=self.axes, keepdims=keepdims)

    def backward(self, gout):
        g = _expand(gout, self.shape, self.axes, self.keepdims)
        return self.xp.broadcast_to(g, self.shape)


class Mean(Function):
    """out = mean(x, axis);  gx = gout / n broadcast to x's shape"""
    def forward(self, x, *, axis=None, keepdims=False):
        self.axes = _norm_axis(axis, x.ndim)
        self.shape, self.keepdims = x.shape, keepdims
        self.n = int(np.prod([x.shape[a] for a in self.axes])) if self.axes else 1
        return x.mean(axis=self.axes, keepdims=keepdims)

    def backward(self, gout):
        g = _expand(gout, self.shape, self.axes, self.keepdims) / self.n
        return self.xp.broadcast_to(g, self.shape)


class Max(Function):
    """out = max(x, axis);  the gradient goes to the maxima (split evenly on ties)"""
    fn = "max"  # the array method used, so Min only changes this

    def forward(self, x, *, axis=None, keepdims=False):
        self.axes = _norm_axis(axis, x.ndim)
        self.keepdims = keepdims
        if x.size == 0:
            raise ValueError("cannot reduce an empty array")
        out = getattr(x, self.fn)(axis=self.axes, keepdims=True)
        self.save_for_backward(x, out)
        return out if keepdims else out.reshape(
            [n for i, n in enumerate(x.shape) if i not in self.axes])

    def backward(self, gout):
        x, out = self.saved
        mask = x == out
        g = _expand(gout, x.shape, self.axes, self.keepdims)
        return g * mask / mask.sum(axis=self.axes, keepdims=True, dtype=g.dtype)


class Min(Max):
    """out = min(x, axis);  the gradient goes to the minima (split evenly on ties)"""
    fn = "min"


class LogSumExp(Function):
    """out = log(sum(exp(x), axis)), shifted by the max so it never overflows;
    gx = gout * exp(x - out)"""
    def forward(self, x, *, axis=None, keepdims=False):
        xp = self.xp
        self.axes = _norm_axis(axis, x.ndim)
        self.keepdims = keepdims
        m = x.max(axis=self.axes, keepdims=True)
        m = xp.where(xp.isfinite(m), m, 0)
        out = xp.log(_exp_neg(xp, x - m).sum(axis=self.axes, keepdims=True)) + m
        self.save_for_backward(x, out)
        return out if keepdims else out.reshape(
            [n for i, n in enumerate(x.shape) if i not in self.axes])

    def backward(self, gout):
        x, out = self.saved
        g = _expand(gout, x.shape, self.axes, self.keepdims)
        return g * _exp_neg(self.xp, x - out)


# --- matrix product ---------------------------------------------------------------------------

def array_matmul(a, b):
    """a @ b on raw arrays of 2 or more dims, for ops and kernels. A product over a length-1
    axis is an outer product, which NumPy's matmul computes about 4x slower than the broadcast
    multiply (exactly equal: one product per element); it is every weight gradient of a batch
    of 1."""
    if a.shape[-1] == 1 and b.shape[-2] == 1:
        return a * b
    return a @ b


class MatMul(Function):
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

class Reshape(Function):
    """out = x viewed with a new shape;  gx = gout reshaped back"""
    def forward(self, x, *, shape):
        self.shape = x.shape
        return x.reshape(shape)

    def backward(self, gout):
        return gout.reshape(self.shape)


class Transpose(Function):
    """out = x with axes permuted;  gx = gout with the inverse permutation"""
    def forward(self, x, *, axes=None):
        if axes is None:
            axes = tuple(range(x.ndim))[::-1]
        given = tuple(axes)
        axes = tuple(int(a) % x.ndim if -x.ndim <= a < x.ndim else -1 for a in given)
        if sorted(axes) != list(range(x.ndim)):
            raise ValueError(f"axes {given} are not a permutation of {x.ndim} dims")
        self.axes = axes
        return x.transpose(axes)

    def backward(self, gout):
        return gout.transpose(tuple(np.argsort(self.axes)))


class BroadcastTo(Function):
    """out = x broadcast to shape;  gx = gout (the engine sums it back to x's shape)"""
    def forward(self, x, *, shape):
        return self.xp.broadcast_to(x, shape)

    def backward(self, gout):
        return gout


class GetItem(Function):
    """out = x[index];  gx = zeros with gout scattered back (repeated indices accumulate)"""
    def forward(self, x, *, index):
        self.index, self.shape = index, x.shape
        return x[index]

    def backward(self, gout):
        gx = self.xp.zeros(self.shape, gout.dtype)
        if _is_advanced(self.index):
            self.xp.add.at(gx, self.index, gout)
        else:
            gx[self.index] = gout
        return gx


def _is_advanced(index):
    items = index if isinstance(index, tuple) else (index,)
    return any(not isinstance(i, (numbers.Integral, slice, type(None), type(Ellipsis)))
               for i in items)


class Concat(Function):
    """out = concatenate(xs, axis);  gx_i = the slice of gout that x_i filled"""
    def forward(self, *xs, axis=0):
        if not xs:
            raise ValueError("no tensors given")
        self.axis = _norm_axis(axis, xs[0].ndim)[0]
        self.sizes = [x.shape[self.axis] if x.ndim else 1 for x in xs]
        return self.xp.concatenate(xs, axis=self.axis)

    def backward(self, gout):
        splits = np.cumsum(self.sizes)[:-1].tolist()  # host ints: a device xp refuses ndarrays
        return tuple(self.xp.split(gout, splits, axis=self.axis))


class Stack(Function):
    """out = stack(xs, axis);  gx_i = gout taken at position i along axis"""
    def forward(self, *xs, axis=0):
        if not xs:
            raise ValueError("no tensors given")
        self.axis = axis
        return self.xp.stack(xs, axis=axis)

    def backward(self, gout):
        return tuple(self.xp.moveaxis(gout, self.axis, 0))


class Split(Function):
    """outs = split(x, sections, axis);  gx = the gouts concatenated"""
    def forward(self, x, *, sections, axis=0):
        self.axis = axis
        if type(sections) is int and sections > 0 and -x.ndim <= axis < x.ndim:
            n = x.shape[axis]
            if n % sections == 0 and n > 0:  # equal parts: plain slices (xp.split is slow Python)
                k, lead = n // sections, (slice(None),) * (axis % x.ndim)
                return tuple([x[lead + (slice(j, j + k),)] for j in range(0, n, k)])
        return tuple(self.xp.split(x, sections, axis=axis))

    def backward(self, *gouts):
        return self.xp.concatenate(gouts, axis=self.axis)


class Pad(Function):
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


class Roll(Function):
    """out = roll(x, shift, axis);  gx = roll(gout, -shift, axis)"""
    def forward(self, x, *, shift, axis=None):
        self.shift, self.axis = shift, axis
        return self.xp.roll(x, shift, axis=axis)

    def backward(self, gout):
        shift = self.shift
        neg = -shift if isinstance(shift, numbers.Integral) else tuple(-s for s in shift)
        return self.xp.roll(gout, neg, axis=self.axis)


class Flip(Function):
    """out = flip(x, axis);  gx = flip(gout, axis)"""
    def forward(self, x, *, axis=None):
        self.axis = axis
        return self.xp.flip(x, axis=axis)

    def backward(self, gout):
        return self.xp.flip(gout, axis=self.axis)


# --- gathering --------------------------------------------------------------------------------

def _check_index_array(idx):
    if getattr(idx, "dtype", np.dtype(np.int64)).kind not in "iu":
        raise TypeError(f"indices must be integers, got dtype {idx.dtype}")


class Take(Function):
    """out = take(x, indices, axis);  gx = zeros with gout added at the indices (repeats add)"""
    def forward(self, x, indices, *, axis=0):
        _check_index_array(indices)
        self.axis = _norm_axis(axis, x.ndim)[0]
        n = x.shape[self.axis]
        if indices.size and (indices.max() >= n or indices.min() < -n):
            raise IndexError(f"indices out of range for axis {axis} of size {n}")
        self.save_for_backward(indices)
        self.shape = x.shape
        return self.xp.take(x, indices, axis=self.axis)

    def backward(self, gout):
        (indices,) = self.saved
        xp = self.xp
        gx = xp.zeros(self.shape, gout.dtype)
        gx_m = xp.moveaxis(gx, self.axis, 0)
        k = indices.ndim
        g_m = xp.moveaxis(gout.reshape(gout.shape[:self.axis] + (-1,) + gout.shape[self.axis + k:]),
                          self.axis, 0)
        xp.add.at(gx_m, indices.reshape(-1), g_m)
        return gx, None


class Embedding(Take):
    """out = weight[indices] (rows of an embedding table);  gweight: rows of gout added back"""


class Gather(Function):
    """out = take_along_axis(x, index, axis);  gx = zeros with gout added at index"""
    def forward(self, x, index, *, axis):
        _check_index_array(index)
        a = self.axis = _norm_axis(axis, x.ndim)[0]
        out = self.xp.take_along_axis(x, index, axis=a)
        # index and x may broadcast against each other: scatter into the broadcast shape and
        # let the engine sum the gradient back to x's shape
        self.gshape = out.shape[:a] + x.shape[a:a + 1] + out.shape[a + 1:]
        self.save_for_backward(self.xp.broadcast_to(index, out.shape))
        return out

    def backward(self, gout):
        (index,) = self.saved
        xp = self.xp
        gx = xp.zeros(self.gshape, gout.dtype)
        grid = list(xp.indices(index.shape, sparse=True))
        grid[self.axis] = index
        xp.add.at(gx, tuple(grid), gout)
        return gx, None


# --- nn primitives ----------------------------------------------------------------------------

class Softmax(Function):
    """out = exp(x - logsumexp(x));  gx = out * (gout - sum(gout * out))"""
    def forward(self, x, *, axis=-1):
        self.axis = axis
        e = _exp_neg(self.xp, x - x.max(axis=axis, keepdims=True))
        out = e / e.sum(axis=axis, keepdims=True)
        self.save_for_backward(out)
        return out

    def backward(self, gout):
        out = self.saved[0]
        return out * (gout - (gout * out).sum(axis=self.axis, keepdims=True))


class LogSoftmax(Function):
    """out = x - logsumexp(x);  gx = gout - exp(out) * sum(gout)"""
    def forward(self, x, *, axis=-1):
        xp = self.xp
        self.axis = axis
        z = x - x.max(axis=axis, keepdims=True)
        out = z - xp.log(_exp_neg(xp, z).sum(axis=axis, keepdims=True))
        self.save_for_backward(out)
        return out

    def backward(self, gout):
        out = self.saved[0]
        return gout - _exp_neg(self.xp, out) * gout.sum(axis=self.axis, keepdims=True)


class CrossEntropy(Function):
    """loss_i = logsumexp(x_i) - x_i[t_i] over the class axis (last), computed stably;
    gx = (softmax(x) - onehot(t)) * gout, zero for ignored targets"""
    def forward(self, x, target, *, ignore_index, reduction):
        xp = self.xp
        z = x - x.max(axis=-1, keepdims=True)
        logp = z - xp.log(_exp_neg(xp, z).sum(axis=-1, keepdims=True))
        keep = target != ignore_index
        safe = xp.where(keep, target, 0)
        nll = -xp.take_along_axis(logp, safe[..., None], axis=-1)[..., 0] * keep
        self.reduction = reduction
        self.count = builtins.max(int(keep.sum()), 1)
        self.save_for_backward(logp, safe, keep)
        if reduction == "none":
            return nll
        total = nll.sum()
        return total / self.count if reduction == "mean" else total

    def backward(self, gout):
        logp, safe, keep = self.saved
        xp = self.xp
        g = _exp_neg(xp, logp)
        grid = list(xp.indices(safe.shape, sparse=True)) + [safe]
        g[tuple(grid)] -= 1
        scale = gout[..., None] if self.reduction == "none" else (
            gout / self.count if self.reduction == "mean" else gout)
        return g * (keep[..., None] * scale), None


class BCEWithLogits(Function):
    """loss = max(x, 0) - x*y + log1p(exp(-|x|));  gx = (sigmoid(x) - y), gy = -x"""
    def forward(self, x, y):
        xp = self.xp
        self.save_for_backward(x, y)
        return xp.maximum(x, 0) - x * y + xp.log1p(_exp_neg(xp, -xp.abs(x)))

    def backward(self, gout):
        x, y = self.saved
        n = self.needs_input_grad
        gx = gout * (0.5 * self.xp.tanh(0.5 * x) + 0.5 - y) if n[0] else None
        gy = -gout * x if n[1] else None
        return gx, gy


class Dropout(Function):
    """out = x * mask / (1 - p), mask ~ Bernoulli(1 - p) from the default generator;
    gx = gout * mask / (1 - p)"""
    def forward(self, x, *, p, rng):
        keep = rng.random(x.shape) >= p
        scale = np.asarray(1.0 / (1.0 - p), dtype=x.dtype)
        mask = keep * scale
        if self.xp is not np:
            from minigrad import backend
            mask = backend.to_device(mask.astype(x.dtype), backend.device_of(x))
        else:
            mask = mask.astype(x.dtype, copy=False)
        self.save_for_backward(mask)
        return x * mask

    def backward(self, gout):
        return gout * self.saved[0]


# --- the functions users call -----------------------------------------------------------------

def _t(x):
    """Tensors pass; arrays and lists become constant tensors (NumPy dtypes kept)."""
    return x if isinstance(x, Tensor) else Tensor(x)


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
    return LeakyRelu.apply(x, slope=slope)


def elu(x, alpha=1.0):
    """out = x where x > 0, else alpha * (exp(x) - 1)."""
    return Elu.apply(x, alpha=alpha)


def softplus(x):
    """out = log(1 + exp(x)), exact and overflow-free at any |x|;  d out/dx = sigmoid(x)."""
    return Softplus.apply(x)


def clip(x, lo=None, hi=None):
    """out = min(max(x, lo), hi) (either bound may be None); the gradient is 1 inside [lo, hi]."""
    if lo is None and hi is None:
        raise ValueError("clip: give lo, hi or both")
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
    c = cond.data if isinstance(cond, Tensor) else cond
    if getattr(c, "dtype", None) is None or c.dtype != np.bool_:
        c = _as_array(c, bool) if not hasattr(c, "astype") else c.astype(bool)
    return Where.apply(c, x, y)


def astype(x, dtype):
    """x cast to `dtype`; the gradient is cast back to x's dtype."""
    return AsType.apply(x, dtype=np.dtype(dtype))


def sum(x, axis=None, keepdims=False):
    """out = sum of x over `axis` (None: all; an int or a tuple; negatives count from the end).

    >>> mg.sum(mg.tensor([[1.0, 2.0], [3.0, 4.0]]), axis=0)
    tensor([4., 6.], dtype=float32)
    """
    return Sum.apply(x, axis=axis, keepdims=keepdims)


def mean(x, axis=None, keepdims=False):
    """out = sum(x, axis) / n, with n the number of elements reduced."""
    return Mean.apply(x, axis=axis, keepdims=keepdims)


def max(x, axis=None, keepdims=False):
    """out = the largest x over `axis`; ties share the gradient evenly."""
    return Max.apply(x, axis=axis, keepdims=keepdims)


def min(x, axis=None, keepdims=False):
    """out = the smallest x over `axis`; ties share the gradient evenly."""
    return Min.apply(x, axis=axis, keepdims=keepdims)


def logsumexp(x, axis=None, keepdims=False):
    """out = log(sum(exp(x), axis)), computed as m + log(sum(exp(x - m))) with m = max(x):
    no overflow at any |x|;  d out/dx = softmax(x).
    """
    return LogSumExp.apply(x, axis=axis, keepdims=keepdims)


def var(x, axis=None, keepdims=False, ddof=0):
    """Variance (NumPy's `ddof`), composed: mean of squared deviations."""
    x = _t(x)
    axes = _norm_axis(axis, x.ndim, "var")
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
    return Reshape.apply(x, shape=shape)


def transpose(x, *axes):
    """x with its axes permuted (`transpose(x, 1, 0, 2)`); reversed when no axes are given."""
    if len(axes) == 1 and isinstance(axes[0], (tuple, list)):
        axes = tuple(axes[0])
    return Transpose.apply(x, axes=axes or None)


def swapaxes(x, a, b):
    """x with axes `a` and `b` exchanged."""
    nd = x.ndim
    axes = list(range(nd))
    a, b = _norm_axis(a, nd, "swapaxes")[0], _norm_axis(b, nd, "swapaxes")[0]
    axes[a], axes[b] = axes[b], axes[a]
    return Transpose.apply(x, axes=tuple(axes))


def expand_dims(x, axis):
    """x with a new size-1 axis at position `axis` of the result (negatives count from the end)."""
    shape = list(x.shape)
    nd = len(shape) + 1
    if not isinstance(axis, numbers.Integral) or not -nd <= axis < nd:
        raise ValueError(f"expand_dims: axis {axis} out of range for {nd - 1} dims")
    shape.insert(axis % nd, 1)
    return Reshape.apply(x, shape=tuple(shape))


def squeeze(x, axis=None):
    """x without its size-1 axes (all of them, or those in `axis`, which must have size 1)."""
    if axis is None:
        shape = tuple(n for n in x.shape if n != 1)
    else:
        axes = _norm_axis(axis, x.ndim, "squeeze")
        for a in axes:
            if x.shape[a] != 1:
                raise ValueError(f"squeeze: axis {a} has size {x.shape[a]}, not 1 "
                                 f"(shape {x.shape})")
        shape = tuple(n for i, n in enumerate(x.shape) if i not in axes)
    return Reshape.apply(x, shape=shape)


def broadcast_to(x, shape):
    """x broadcast to `shape` (NumPy rules); the gradient is summed back to x's shape."""
    return BroadcastTo.apply(x, shape=tuple(shape))


def concat(tensors, axis=0):
    """The tensors joined along an existing `axis`."""
    return Concat.apply(*tensors, axis=axis)


def stack(tensors, axis=0):
    """The tensors (all of one shape) joined along a new `axis`."""
    return Stack.apply(*tensors, axis=axis)


def split(x, sections, axis=0):
    """Split into equal parts (`sections` an int) or at the given indices; returns a tuple."""
    out = Split.apply(x, sections=sections, axis=axis)
    return out if isinstance(out, tuple) else (out,)


def pad(x, pad_width, value=0.0):
    """Constant padding; `pad_width` as in NumPy: ((before, after), ...) per axis."""
    return Pad.apply(x, pad_width=pad_width, value=value)


def roll(x, shift, axis=None):
    """x with its elements shifted by `shift` along `axis` (None: the flattened array), wrapping."""
    return Roll.apply(x, shift=shift, axis=axis)


def flip(x, axis=None):
    """x with the order of elements reversed along `axis` (None: all axes)."""
    return Flip.apply(x, axis=axis)


def getitem(x, index):
    """x[index], NumPy indexing: ints, slices (any step), None, Ellipsis, integer arrays and
    boolean masks. Repeated integer indices accumulate their gradients.

    >>> x = mg.tensor([1.0, 2.0, 3.0], requires_grad=True)
    >>> x[[0, 0, 2]].sum().backward()
    >>> x.grad
    tensor([2., 0., 1.], dtype=float32)
    """
    from minigrad.tensor import _raw_index
    index = _raw_index(index)
    if type(getattr(x, "data", x)) is not np.ndarray:  # host index arrays follow x to its device
        items = index if isinstance(index, tuple) else (index,)
        moved = tuple(_index_array(i, x) if isinstance(i, np.ndarray) else i for i in items)
        index = moved if isinstance(index, tuple) else moved[0]
    return GetItem.apply(x, index=index)


def _index_array(idx, device_of):
    a = idx.data if isinstance(idx, Tensor) else idx
    if not hasattr(a, "dtype"):
        a = np.asarray(a)
        if a.dtype.kind == "f" and a.size == 0:
            a = a.astype(np.int64)
    from minigrad import backend
    return backend.to_device(a, backend.device_of(device_of.data)) if not isinstance(
        a, backend.device_of(device_of.data).array_type) and a.size else a


def take(x, indices, axis=0):
    """Elements of `x` at `indices` along `axis` (NumPy's `take`)."""
    return Take.apply(x, _index_array(indices, x), axis=axis)


def embedding(weight, indices):
    """Rows of `weight` (V, D) at integer `indices` of any shape: out (*indices.shape, D)."""
    return Embedding.apply(weight, _index_array(indices, weight), axis=0)


def gather(x, index, axis):
    """`x` taken at `index` along `axis` (NumPy's `take_along_axis`)."""
    return Gather.apply(x, _index_array(index, x), axis=axis)


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
    t = _index_array(targets, logits)
    if t.dtype.kind not in "iu":
        raise TypeError(f"cross_entropy: targets must be integers, got dtype {t.dtype}")
    if tuple(t.shape) != tuple(logits.shape[:-1]):
        raise ValueError(f"cross_entropy: targets of shape {tuple(t.shape)} do not match logits "
                         f"of shape {logits.shape} (expected {logits.shape[:-1]})")
    C = logits.shape[-1]
    valid = t[t != ignore_index]
    if valid.size and (int(valid.max()) >= C or int(valid.min()) < 0):
        raise ValueError(f"cross_entropy: targets must lie in [0, {C}), got "
                         f"min {int(valid.min())} max {int(valid.max())}")
    return CrossEntropy.apply(logits, t, ignore_index=ignore_index, reduction=reduction)


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
    _same_shape(logits, targets, "binary_cross_entropy_with_logits")
    return _reduce(BCEWithLogits.apply(logits, targets), reduction,
                   "binary_cross_entropy_with_logits")


def mse_loss(pred, target, reduction="mean"):
    """mean((pred - target)**2) (or "sum", or "none": per element); shapes must be equal."""
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
    if not 0 <= p < 1:
        raise ValueError(f"dropout: p must be in [0, 1), got {p}")
    if not training or p == 0:
        return x
    from minigrad import random
    return Dropout.apply(x, p=p, rng=rng if rng is not None else random.default_generator())


def normalize(x, p=2, axis=-1, eps=1e-12):
    """x / max(||x||_p, eps) along `axis`."""
    _norm_axis(axis, len(_shape(x)), "normalize")
    if p == 2:
        norm = sqrt(sum(x * x, axis=axis, keepdims=True))
    else:
        norm = sum(abs(x) ** p, axis=axis, keepdims=True) ** (1.0 / p)
    return x / maximum(norm, eps)


def cosine_similarity(x1, x2, axis=-1, eps=1e-8):
    """sum(x1 * x2) / max(||x1|| ||x2||, eps) along `axis`."""
    ndim = builtins.max(len(_shape(x1)), len(_shape(x2)))
    _norm_axis(axis, ndim, "cosine_similarity")
    n = sqrt(sum(x1 * x1, axis=axis) * sum(x2 * x2, axis=axis))
    return sum(x1 * x2, axis=axis) / maximum(n, eps)


# --- non-differentiable -----------------------------------------------------------------------

def argmax(x, axis=None, keepdims=False):
    """Index of the largest x along `axis` (None: of the flattened array); no gradient."""
    xd = x.data if isinstance(x, Tensor) else x
    if axis is not None:
        _norm_axis(axis, xd.ndim, "argmax")
    return Tensor._wrap(_as_arr(xd.argmax(axis=axis, keepdims=keepdims)))


def argmin(x, axis=None, keepdims=False):
    """Index of the smallest x along `axis` (None: of the flattened array); no gradient."""
    xd = x.data if isinstance(x, Tensor) else x
    if axis is not None:
        _norm_axis(axis, xd.ndim, "argmin")
    return Tensor._wrap(_as_arr(xd.argmin(axis=axis, keepdims=keepdims)))


def _as_arr(a):
    return a if hasattr(a, "ndim") and not isinstance(a, np.generic) else np.asarray(a)


def topk(x, k, axis=-1, largest=True):
    """The `k` largest (or smallest) entries along `axis`, sorted: (values, indices).

    The indices carry no gradient; values are gathered from `x`, so a gradient reaches them.
    """
    from minigrad.backend import get_array_module
    xd = x.data
    axis = _norm_axis(axis, xd.ndim, "topk")[0]
    n = xd.shape[axis]
    if not isinstance(k, numbers.Integral) or not 0 < k <= n:
        raise ValueError(f"topk: k={k} must be in [1, {n}] for axis {axis} of shape {x.shape}")
    xp = get_array_module(xd)
    key = -xd if largest else xd
    idx = xp.argsort(key, axis=axis, kind="stable")
    idx = xp.take(idx, xp.arange(k), axis=axis)
    return gather(x, idx, axis), Tensor._wrap(idx)


def one_hot(indices, num_classes, dtype=None):
    """One-hot float rows: out (*indices.shape, num_classes), out[..., c] = (indices == c).

    >>> mg.one_hot(np.array([2, 0]), 3)
    tensor([[0., 0., 1.],
            [1., 0., 0.]], dtype=float32)
    """
    from minigrad.backend import get_array_module
    a = indices.data if isinstance(indices, Tensor) else indices
    if not hasattr(a, "dtype"):  # device arrays stay where they are; Python data goes to NumPy
        a = np.asarray(a)
    if a.dtype.kind not in "iu":
        raise TypeError(f"one_hot: indices must be integers, got dtype {a.dtype}")
    if a.size and (int(a.max()) >= num_classes or int(a.min()) < 0):
        raise ValueError(f"one_hot: indices must lie in [0, {num_classes})")
    xp = get_array_module(a)
    out = (a[..., None] == xp.arange(num_classes)).astype(dtype or _default_dtype[0])
    return Tensor._wrap(out)


# --- Tensor operators and methods -------------------------------------------------------------

def _cmp(ufunc_name):
    def op(self, other):
        o = other.data if isinstance(other, Tensor) else other
        from minigrad.backend import get_array_module
        return Tensor._wrap(_as_arr(getattr(get_array_module(self.data), ufunc_name)(self.data, o)))
    return op


def _install():
    T = Tensor
    T.__add__ = lambda self, o: Add.apply(self, o)
    T.__radd__ = lambda self, o: Add.apply(o, self)
    T.__sub__ = lambda self, o: Sub.apply(self, o)
    T.__rsub__ = lambda self, o: Sub.apply(o, self)
    T.__mul__ = lambda self, o: Mul.apply(self, o)
    T.__rmul__ = lambda self, o: Mul.apply(o, self)
    T.__truediv__ = lambda self, o: Div.apply(self, o)
    T.__rtruediv__ = lambda self, o: Div.apply(o, self)
    T.__pow__ = lambda self, o: Pow.apply(self, o)
    T.__rpow__ = lambda self, o: Pow.apply(o, self)
    T.__matmul__ = lambda self, o: MatMul.apply(self, o)
    T.__rmatmul__ = lambda self, o: MatMul.apply(o, self)
    T.__neg__ = lambda self: Neg.apply(self)
    T.__pos__ = lambda self: self
    T.__abs__ = lambda self: Abs.apply(self)
    T.__getitem__ = getitem
    for name, uf in (("__lt__", "less"), ("__le__", "less_equal"), ("__gt__", "greater"),
                     ("__ge__", "greater_equal"), ("__eq__", "equal"), ("__ne__", "not_equal")):
        setattr(T, name, _cmp(uf))
    T.__hash__ = lambda self: id(self)
    for f in (exp, log, sqrt, tanh, sigmoid, relu, softplus, sum, mean, max, min, logsumexp, var,
              matmul, reshape, transpose, swapaxes, expand_dims, squeeze, broadcast_to, split,
              flip, roll, softmax, log_softmax, argmax, argmin, clip, gather, take, leaky_relu, elu,
              abs, pow, maximum, minimum, topk):
        setattr(T, f.__name__, f)
    T.T = property(lambda self: Transpose.apply(self, axes=None))
    T.flatten = lambda self: Reshape.apply(self, shape=(-1,))
    T.unsqueeze = expand_dims


_install()
