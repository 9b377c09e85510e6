"""`TensorMethods`: what a Tensor offers besides autodiff and its operators (they are in
`minigrad.tensor`): shape and conversions, the functions of `minigrad.functions` as methods
(`x.exp()`, `x.sum(axis=0)`), and in-place changes counted in `_version`.
"""
from __future__ import annotations

import numbers
import weakref

import numpy as np

from minigrad import backend, engine, functions as F
from minigrad.modes import state
from minigrad.ops import (Abs, Exp, Log, MatMul, Pow, Relu, Reshape, Sigmoid, Softplus, Sqrt, Tanh,
                          ToDevice, Transpose)


class TensorMethods:
    """The base of `Tensor` (which holds the fields: `data`, `grad`, `requires_grad`, ...)."""

    __slots__ = ()


    shape = property(lambda self: tuple(self.data.shape))
    ndim = property(lambda self: self.data.ndim)
    dtype = property(lambda self: self.data.dtype)
    size = property(lambda self: self.data.size)
    device = property(lambda self: backend.device_of(self.data).name)
    is_leaf = property(lambda self: self._node is None)
    grad_fn = property(lambda self: self._node)
    output_index = property(lambda self: self._idx)   # which output of grad_fn this tensor is

    def bump_version(self) -> None:
        """Count an in-place change made through `.data`: backward then refuses a graph that
        saved the old array instead of computing with the new one."""
        self._version += 1
        if self._node is not None:
            engine.note_inplace(self)

    def __len__(self):
        if self.data.ndim == 0:
            raise TypeError("len: a 0-d tensor has no length (use .item())")
        return len(self.data)

    def __repr__(self):
        extra = ", requires_grad=True" if self.requires_grad else ""
        if self._node is not None:
            extra += f", grad_fn={self._node.name}"
        if self.name:
            extra += f", name={self.name!r}"
        dev = self.device
        if dev != "cpu":
            extra += f", device='{dev}'"
        body = np.array2string(self.numpy(), separator=", ", prefix="tensor(")
        return f"tensor({body}, dtype={self.dtype}{extra})"

    def numpy(self) -> np.ndarray:
        """A host NumPy copy of the data."""
        return np.array(backend.to_host(self.data), copy=True)

    def item(self):
        if self.data.size != 1:
            raise ValueError(f"item: tensor of shape {self.shape} has {self.data.size} elements")
        return self.data.item()

    def tolist(self):
        return backend.to_host(self.data).tolist()

    def __float__(self):
        return float(self.item())

    def __int__(self):
        return int(self.item())

    def __bool__(self):
        if self.data.size != 1:
            raise ValueError(f"bool: the truth value of a tensor of shape {self.shape} is "
                             "ambiguous")
        return bool(self.item())
    def to(self, device) :
        """This tensor on `device` (a differentiable copy, or self when already there)."""
        dev = backend.get_device(device, "to")
        return self if dev is backend.device_of(self.data) else ToDevice.apply(self, device=dev)

    def cpu(self) :
        return self.to("cpu")

    # --- methods: the functions of minigrad.functions with this tensor first ----------------
    def exp(self):
        return Exp.apply(self)

    def log(self):
        return Log.apply(self)

    def sqrt(self):
        return Sqrt.apply(self)

    def tanh(self):
        return Tanh.apply(self)

    def sigmoid(self):
        return Sigmoid.apply(self)

    def relu(self):
        return Relu.apply(self)

    def softplus(self):
        return Softplus.apply(self)

    def abs(self):
        return Abs.apply(self)

    def pow(self, y):
        return Pow.apply(self, y)

    def matmul(self, y):
        return MatMul.apply(self, y)

    def reshape(self, *shape):
        return F.reshape(self, *shape)

    def transpose(self, *axes):
        return F.transpose(self, *axes)

    @property
    def T(self):
        """The transpose (all axes reversed). Of a leaf that requires grad (a parameter) it is
        kept and given again while the leaf is unchanged: `w.T` in a cell is then one graph
        node for all the steps, not one per step (see `transpose_of_leaf`)."""
        if self._node is None and self.requires_grad and state.grad_enabled:
            return transpose_of_leaf(self)
        return Transpose.apply(self, axes=None)

    def flatten(self):
        return Reshape.apply(self, shape=(-1,))

    def astype(self, dtype):
        return F.astype(self, dtype)

    sum = F.sum
    mean = F.mean
    max = F.max
    min = F.min
    var = F.var
    logsumexp = F.logsumexp
    softmax = F.softmax
    log_softmax = F.log_softmax
    swapaxes = F.swapaxes
    expand_dims = unsqueeze = F.expand_dims
    squeeze = F.squeeze
    broadcast_to = F.broadcast_to
    split = F.split
    flip = F.flip
    roll = F.roll
    clip = F.clip
    gather = F.gather
    take = F.take
    leaky_relu = F.leaky_relu
    elu = F.elu
    maximum = F.maximum
    minimum = F.minimum
    argmax = F.argmax
    argmin = F.argmin
    topk = F.topk

    # --- in place --------------------------------------------------------------------------
    # Allowed off the graph (tensors that need no gradient, or inside no_grad) and counted in
    # `_version`, so backward refuses an array that was saved and then changed. On a tensor that
    # requires grad under grad mode, `x += y` (and -=, *=, /=) rebinds x to the out-of-place
    # result, a new node; setitem, copy_, add_, ... raise. Writes to `.data` are not counted.
    def _inplace(self, opname, fn):
        if state.grad_enabled and self.requires_grad:
            raise RuntimeError(f"{opname}: in-place change of a tensor that requires grad; "
                               "wrap it in mg.no_grad() or use the out-of-place op")
        try:
            fn()
        except engine.FORWARD_ERRORS as e:
            raise engine.op_error(opname, e, (self.data,)) from e
        self._version += 1
        if self._node is not None:  # the op that made self may have saved its array
            engine.note_inplace(self)
        return self

    def __setitem__(self, index, value):
        value = value.data if isinstance(value, TensorMethods) else value
        index = F.raw_index(index)
        if isinstance(value, (str, bytes)) or value is None:
            raise TypeError(f"__setitem__: value must be a number, an array or a Tensor, got "
                            f"{type(value).__name__}")

        def do():
            self.data[index] = value
        self._inplace("__setitem__", do)

    def _iop(self, other, name, ufunc_name, out_of_place):
        if state.grad_enabled and self.requires_grad:
            return out_of_place(self, other)
        o = other.data if isinstance(other, TensorMethods) else other
        ufunc = getattr(backend.get_array_module(self.data), ufunc_name)
        return self._inplace(name, lambda: ufunc(self.data, o, out=self.data))

    def __iadd__(self, other):
        return self._iop(other, "__iadd__", "add", type(self).__add__)

    def __isub__(self, other):
        return self._iop(other, "__isub__", "subtract", type(self).__sub__)

    def __imul__(self, other):
        return self._iop(other, "__imul__", "multiply", type(self).__mul__)

    def __itruediv__(self, other):
        return self._iop(other, "__itruediv__", "divide", type(self).__truediv__)

    def zero_(self) :
        return self._inplace("zero_", lambda: self.data.fill(0))

    def fill_(self, value) :
        if isinstance(value, bool) or not isinstance(value, (numbers.Number, np.generic)):
            raise TypeError(f"fill_: value must be a number, got {type(value).__name__}")
        return self._inplace("fill_", lambda: self.data.fill(value))

    def copy_(self, src) :
        s = src.data if isinstance(src, TensorMethods) else src
        if not (backend.is_array(s) or isinstance(s, (numbers.Number, list, tuple))):
            raise TypeError(f"copy_: src must be a Tensor, an array or a number, got "
                            f"{type(src).__name__}")

        def do():
            self.data[...] = s
        return self._inplace("copy_", do)

    def add_(self, other, alpha=1.0) :
        o = other.data if isinstance(other, TensorMethods) else other

        def do():
            if alpha == 1.0:
                self.data += o
            else:
                self.data += alpha * o
        return self._inplace("add_", do)

    def mul_(self, other) :
        o = other.data if isinstance(other, TensorMethods) else other

        def do():
            self.data *= o
        return self._inplace("mul_", do)


def transpose_of_leaf(leaf):
    """`leaf.T` for a leaf that requires grad, with grad mode on: the node of an earlier call is
    given again (in a new Tensor, the same transposed view) while that node is alive (a graph
    still uses it), nobody hooked its output and the leaf holds the same array at the same
    version (an in-place change, such as an optimizer step, makes a new node). The node is
    `reusable`: it saves nothing, so backward may run through it again after freeing it (two
    graphs built before either backward share it). The leaf refers to it weakly, so no cycle
    keeps either alive.

    Bypassed, so every use is its own Transpose node, while something watches each op: a
    recorder (the graph viewer, tracing), a checkpoint's collector (which must see the leaf),
    anomaly mode (which checks every op's output); and during a backward walk (a checkpoint
    re-running its segment, a hook): the walk may be counting gradients in the kept node.
    """
    if (state.recorder is not None or state.collector is not None or state.anomaly
            or state.walks):
        return Transpose.apply(leaf, axes=None)
    kept = getattr(leaf, "_transposed", None)  # the slot is unset until the first call
    if kept is not None:
        ref, data, view, version = kept
        node = ref()
        if (node is not None and data is leaf.data and version == leaf._version
                and node.out_hooks is None):
            return engine.make_tensor(view, True, node)
    out = Transpose.apply(leaf, axes=None)
    node = out._node
    node.reusable = True
    leaf._transposed = (weakref.ref(node), leaf.data, out.data, leaf._version)
    return out
